"""Every hand-written density must equal its Pyro model's trace: the closed-form log joint
(EM, VB, the item posteriors), the log prior and the NUTS potential, for every model in
the registry, with gold items too; and each support's log-Jacobian equals autograd's."""
import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.posterior import MODELS, as_label_matrix, slot_table
from bayes_w2s.posterior.engine import compress_rows, make_potential, to_constrained, to_unconstrained
from bayes_w2s.posterior.models import VoteCounts, get_model
from bayes_w2s.posterior.models.one_coin import one_coin_log_theta, one_coin_theta

from .conftest import simulate_soft, simulate_votes

CLASS_MODELS = sorted(n for n, m in MODELS.items() if m.observes != "words")
WORD_MODELS = sorted(n for n, m in MODELS.items() if m.observes == "words")


def _data(name, gold=False, n=120, priors=None, blank=False, soft_votes=None):
    model = get_model(name)
    p = model.priors(priors or ({"num_subtypes": 3} if name == "ebcc" else {}))
    if model.observes == "words":
        from .test_words import simulate_hypotheses
        _, hyps = simulate_hypotheses(n=40)
        return model, model.prepare(slot_table(hyps), p), p
    if model.observes == "probs" or soft_votes:
        _, labels = simulate_soft(n=n)
        if blank:                                                      # every output uniform: missing items
            labels.probs[::9] = 1.0 / labels.num_classes
            labels.probs[1::4, 1] = 1.0 / labels.num_classes             # one output uniform: a missing model
    else:
        _, labels = simulate_votes(n=n, k=3, accs=(0.6, 0.7, 0.8))
        labels[::7, 1] = -1                                            # abstentions
    lm = as_label_matrix(labels, num_classes=3)
    gold_arr = None
    if gold:
        gold_arr = np.full(n, -1)
        gold_arr[::5] = np.arange(0, n, 5) % 3
    settings = {"soft_votes": soft_votes} if soft_votes else {}
    return model, model.prepare(lm, p, gold=gold_arr, **settings), p


def _random_point(model, data, p, seed=0):
    """A point away from the MAP: the start, perturbed in unconstrained space."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s, v in model.init(data, p).items():
        if s not in model.sites:
            continue
        u = to_unconstrained(model.sites[s].support, v)
        out[s] = to_constrained(model.sites[s].support, u + 0.3 * torch.randn(u.shape, generator=gen, dtype=u.dtype))[0]
    return out


def _pyro_log_joint(model, data, p, g):
    """log p(globals, y) of the Pyro model conditioned on ``g``, local latents enumerated."""
    call = model.fn_call(data, p)
    return -TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting).loss(poutine.condition(call, data=g),
                                                                           lambda: None)


def _closed_form(model, data, p, g):
    log_g = model.logs(g)
    lj = model.log_joint(data.obs, g, log_g, p)
    if data.mask is not None:
        lj = lj + data.mask
    coef = model.row_log_coef(data.obs)
    return model.log_prior(g, log_g, p) + (data.weight * (torch.logsumexp(lj, -1) + coef)).sum()


@pytest.mark.parametrize("name", CLASS_MODELS + WORD_MODELS)
@pytest.mark.parametrize("variant", ["plain", "gold", "blank", "soft_votes"])   # blank: uniform items, some gold
def test_closed_form_log_joint_matches_pyro_trace(name, variant):
    if variant == "gold" and get_model(name).observes == "words":
        pytest.skip("gold words are not supported")
    if variant == "blank" and get_model(name).observes != "probs":
        pytest.skip("uniform outputs are missing items for the soft-label models (votes: abstentions, above)")
    if variant == "soft_votes" and get_model(name).observes != "votes":
        pytest.skip("soft votes are the vote models' reading of probability vectors")
    model, data, p = _data(name, gold=variant in ("gold", "blank"), blank=variant == "blank",
                           soft_votes=2.5 if variant == "soft_votes" else None)
    assert variant != "soft_votes" or not torch.equal(data.obs["counts"], data.obs["counts"].round())
    assert variant != "blank" or (~data.fn_kwargs["informative"]).reshape(120, -1).all(-1).sum() == 14
    g = _random_point(model, data, p)
    ours = float(_closed_form(model, data, p, g))
    assert ours == pytest.approx(float(_pyro_log_joint(model, data, p, g)), rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("support,shape", [("simplex", (3, 4)), ("positive", (5,)), ("unit", (5,)),
                                           ("real", (5,)), ("corr_cholesky", (6,))])
def test_each_supports_log_jacobian_is_autograds(support, shape):
    """The potential's Jacobian terms, checked against the log-determinant of autograd's
    Jacobian of the map from unconstrained coordinates (row by row for a batched simplex)."""
    u = 0.7 * torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    value, _, log_jac = to_constrained(support, u)

    def free(x):   # the map onto free coordinates (a simplex's last entry and a unit-norm row are implied)
        v = to_constrained(support, x)[0]
        if support == "simplex":
            return v[..., :-1]
        if support == "corr_cholesky":
            return v[torch.tril_indices(4, 4, -1).unbind()]
        return v
    if support == "simplex":
        expected = sum(torch.linalg.slogdet(torch.autograd.functional.jacobian(
            lambda r: to_constrained(support, r)[0][:-1], row))[1] for row in u)
    elif support == "corr_cholesky":
        expected = torch.linalg.slogdet(torch.autograd.functional.jacobian(free, u))[1]
    else:
        expected = torch.log(torch.autograd.functional.jacobian(free, u).diagonal().abs()).sum()
    assert float(log_jac) == pytest.approx(float(expected), rel=1e-8, abs=1e-9)


@pytest.mark.parametrize("name", CLASS_MODELS + WORD_MODELS)
def test_nuts_potential_is_the_density_in_unconstrained_coordinates(name):
    model, data, p = _data(name)
    g = _random_point(model, data, p, seed=1)
    u = {s: to_unconstrained(model.sites[s].support, v) for s, v in g.items()}
    log_jac = sum(to_constrained(model.sites[s].support, u[s])[2] for s in u)
    potential = make_potential(model, data, p)
    assert float(-potential(u)) == pytest.approx(float(_closed_form(model, data, p, g) + log_jac
                                                       - (data.weight * model.row_log_coef(data.obs)).sum()),
                                                 rel=1e-9, abs=1e-6)


def test_pattern_compression_preserves_the_density():
    _, votes = simulate_votes(n=500, k=4)
    model = get_model("dawid_skene")
    p = model.priors()
    lm = as_label_matrix(votes)
    data = model.prepare(lm, p)
    assert data.num_rows < 500 and data.weight.sum() == 500
    counts = torch.as_tensor(lm.counts)
    assert torch.equal(data.obs["counts"][data.inverse], counts)
    first, inverse, freq = compress_rows(counts.reshape(500, -1))
    assert torch.equal(counts[first][inverse], counts) and freq.sum() == 500


def test_vote_counts_log_prob_is_the_multinomial():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64)
    counts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = VoteCounts(probs.log()).log_prob(counts)
    expected0 = float(torch.distributions.Multinomial(3, probs=probs[0]).log_prob(counts[0]))
    assert got[0].item() == pytest.approx(expected0) and got[1].item() == 0.0   # abstention adds nothing


def test_one_coin_layout():
    acc = torch.tensor([0.9, 0.6], dtype=torch.float64)
    theta = one_coin_theta(acc, 3)                                   # [K, M, K]
    assert theta[0, 0].tolist() == pytest.approx([0.9, 0.05, 0.05]) and theta[2, 1, 2].item() == pytest.approx(0.6)
    log_acc = torch.stack([acc.log(), torch.log1p(-acc)], -1)
    assert torch.allclose(one_coin_log_theta(log_acc, 3).exp(), theta)


def test_unknown_and_out_of_range_priors_are_reported():
    ds = get_model("dawid_skene")
    with pytest.raises(InvalidInputError, match="unknown prior setting"):
        ds.priors({"beta_diagonal": 3.0})
    with pytest.raises(InvalidInputError, match="beta_diag = -1.0 is out of range"):
        ds.priors({"beta_diag": -1.0})
    with pytest.raises(InvalidInputError, match="must be a number"):
        ds.priors({"beta_off": "1"})
    with pytest.raises(InvalidInputError, match="posterior mode does not exist"):
        ds.priors({"beta_off": 0.5}, point_estimate=True)
    assert ds.priors({"beta_off": 0.5})["beta_off"] == 0.5                  # fine for VB / NUTS
    with pytest.raises(InvalidInputError, match="must be an integer"):
        get_model("ebcc").priors({"num_subtypes": 2.5})
    pyro.clear_param_store()


@pytest.mark.parametrize("name", ["dawid_skene", "soft", "logistic_t", "logistic_t_hetero", "logistic_t_pooled",
                                  "logistic_t_anchored"])
def test_items_whose_weak_outputs_are_all_uniform_get_the_class_prior_and_leave_the_fit_alone(name):
    """Before: a vote model read each uniform output as a vote for the first class, and the
    logistic-t models put ~0.99 on whichever class centred nearest log-odds 0, which moved
    the other items' posteriors too."""
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.weak import WeakLabels

    truth, clean = simulate_soft(n=300, seed=3)
    probs = np.concatenate([np.full((12, 3, 3), 1 / 3), clean.probs])
    with pytest.warns(RuntimeWarning, match="12 item.* get no vote: every weak model's output is tied"):
        post = fit_posterior(WeakLabels(probs, clean.model_names, clean.label_names), name)
    np.testing.assert_allclose(post.item_probs[:12], np.broadcast_to(post.class_prior, (12, 3)), atol=1e-6)
    alone = fit_posterior(clean, name)
    np.testing.assert_allclose(post.item_probs[12:], alone.item_probs, atol=0.02)
    np.testing.assert_allclose(post.predict_proba(WeakLabels(probs[:14], clean.model_names, clean.label_names))[:12],
                               post.item_probs[:12], atol=1e-6)
    with pytest.warns(RuntimeWarning, match="get no vote"):   # gold on a uniform item: its class is still known
        gold = fit_posterior(WeakLabels(probs, clean.model_names, clean.label_names), name, gold={0: 2, 1: 0})
    np.testing.assert_allclose(gold.item_probs[:2], np.eye(3)[[2, 0]], atol=1e-6)


def test_soft_models_refuse_data_whose_outputs_are_all_uniform():
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.weak import WeakLabels
    with pytest.raises(InvalidInputError, match="every item's weak outputs are uniform"):
        fit_posterior(WeakLabels(np.full((20, 3, 3), 1 / 3), ["a", "b", "c"], ["x", "y", "z"]), "logistic_t")


def test_the_dirichlet_model_drops_a_single_uniform_output_and_keeps_the_others():
    """Its terms factorise over weak models, so a uniform output is one missing term: the item
    posterior is π_k Π_m Dir(p_m | λ_k,m) over the other models (it used to read the uniform
    vector as strong evidence for whichever class's λ fits 1/K best)."""
    import torch

    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.weak import WeakLabels
    _, clean = simulate_soft(n=200, seed=4)
    post = fit_posterior(clean, "soft")
    new = np.array([[[0.6, 0.25, 0.15], [1 / 3] * 3, [1 / 3] * 3]])
    got = post.predict_proba(WeakLabels(new, clean.model_names, clean.label_names))[0]
    lam = torch.as_tensor(post.draws["concentration"][0, 0][:, 0])                   # [K, L] of model 0
    p = torch.as_tensor(new[0, 0]).clamp_min(1e-4)
    own = torch.distributions.Dirichlet(lam).log_prob(p / p.sum()) + torch.as_tensor(post.class_prior).log()
    np.testing.assert_allclose(got, own.softmax(-1).numpy(), atol=1e-6)
