"""The generic inference engine: VB, gold items, tempering, inductive prediction, NUTS
plumbing, and the models that issue 12 added (EBCC, hierarchical on sparse crowds)."""
import math

import numpy as np
import pandas as pd
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import infer_discrete

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.errors import InvalidInputError, LabelSetMismatchError
from bayes_w2s.posterior import as_label_matrix
from bayes_w2s.posterior.engine import draw_local_latents, fit_em
from bayes_w2s.posterior.models import get_model

from .conftest import simulate_soft, simulate_votes


def sparse_crowd(n=400, workers=60, k=3, per_item=4, seed=0):
    """Many annotators, few labels each: most (item, annotator) cells are abstentions."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    acc = rng.uniform(0.55, 0.9, workers)
    votes = np.full((n, workers), -1)
    for i in range(n):
        for w in rng.choice(workers, per_item, replace=False):
            votes[i, w] = truth[i] if rng.random() < acc[w] else (truth[i] + rng.integers(1, k)) % k
    return truth, votes


def copied_errors(n=3000, seed=0):
    """Binary; weak model B copies model A (98%), A is right 70% of the time, and the
    independent model C 80%. Where A and B agree against C, C is right ≈ 63% of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.7, truth, 1 - truth)
    b = np.where(rng.random(n) < 0.98, a, 1 - a)
    c = np.where(rng.random(n) < 0.8, truth, 1 - truth)
    return truth, np.stack([a, b, c], 1)


def nll(probs, truth):
    return float(-np.log(np.clip(probs[np.arange(len(truth)), truth], 1e-12, 1)).mean())


@pytest.mark.parametrize("model", ["dawid_skene", "one_coin", "ebcc"])
def test_vb_elbo_never_decreases_and_agrees_with_em_on_much_data(model):
    truth, votes = simulate_votes(n=3000, k=3, accs=(0.6, 0.7, 0.8))
    kw = {"num_subtypes": 2} if model == "ebcc" else {}
    vb = fit_posterior(votes, model=model, method="vb", **kw)
    assert np.all(np.diff(vb.history) > -1e-6 * np.abs(vb.history[-1]))
    assert (vb.labels == truth).mean() > 0.8          # majority vote: 0.78 when written
    assert vb.draws["pi"].shape[:2] == (1, 200) and vb.num_draws == 200
    if model != "ebcc":
        em = fit_posterior(votes, model=model, method="em")
        assert np.abs(vb.item_probs - em.item_probs).max() < 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_ebcc_does_not_let_two_copying_models_outvote_an_independent_one(seed):
    """The planted case. Without labels, "A and B are right and C is noisy" and "C is right
    and B copies A's errors" fit the vote patterns equally well (both saturate them), so
    no unsupervised model can tell them apart; with 20% gold items, EBCC's subtypes
    represent the copying and C wins where A and B agree against it, while Dawid–Skene,
    which must count A and B as independent evidence, still follows them."""
    truth, votes = copied_errors(seed=seed)
    gold = np.full(len(truth), -1)
    gold[:600] = truth[:600]
    ds = fit_posterior(votes, model="dawid_skene", method="vb", gold=gold)
    eb = fit_posterior(votes, model="ebcc", method="vb", gold=gold)
    disagree = (votes[:, 0] == votes[:, 1]) & (votes[:, 2] != votes[:, 0])
    disagree[:600] = False
    assert 0.55 < (truth[disagree] == votes[disagree, 2]).mean() < 0.7
    assert (ds.labels[disagree] == votes[disagree, 0]).mean() > 0.9          # DS follows the two copiers
    assert (eb.labels[disagree] == votes[disagree, 2]).mean() > 0.9          # EBCC follows the independent one
    rest = slice(600, None)
    assert (eb.labels[rest] == truth[rest]).mean() > (ds.labels[rest] == truth[rest]).mean() + 0.03
    assert nll(eb.item_probs[rest], truth[rest]) < nll(ds.item_probs[rest], truth[rest])


def _spread_classes(spreads, seed=0, n=1500):
    """Three weak models' binary log-odds, N(±1.5, spread_c²) around the true class c."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.5).astype(int)
    spread = np.asarray(spreads)[truth][:, None]
    z = np.where(truth == 0, 1.5, -1.5)[:, None] + spread * rng.standard_normal((n, 3))
    p0 = 1 / (1 + np.exp(-z))                                   # z = log p(class 0) − log p(class 1)
    return truth, WeakLabels(np.stack([p0, 1 - p0], -1), ["a", "b", "c"], ["neg", "pos"])


@pytest.mark.parametrize("seed", [0, 1])
def test_a_scale_per_class_keeps_a_wide_class_from_losing_its_edge(seed):
    """The planted case: log-odds 2.5× as spread in one class as in the other. One shared
    scale explains the wide class's edge items as the tight class; a scale per class
    classifies them by the class they came from — above the vote and the shared model. With
    equal spreads the extra scale matrix costs nothing."""
    truth, labels = _spread_classes((0.8, 2.0), seed=seed)
    vote = (labels.probs.argmax(-1).mean(1) > 0.5).astype(int)
    shared = fit_posterior(labels, model="logistic_t", method="em")
    hetero = fit_posterior(labels, model="logistic_t_hetero", method="em")
    assert (hetero.labels == truth).mean() >= (vote == truth).mean()
    assert (hetero.labels == truth).mean() > (shared.labels == truth).mean() + 0.01
    assert nll(hetero.item_probs, truth) < nll(shared.item_probs, truth)
    truth, labels = _spread_classes((1.2, 1.2), seed=seed)
    shared = fit_posterior(labels, model="logistic_t", method="em")
    hetero = fit_posterior(labels, model="logistic_t_hetero", method="em")
    assert (hetero.labels == truth).mean() >= (shared.labels == truth).mean() - 0.005


def test_the_pooling_factor_is_a_scale_free_kl_from_the_shared_matrix():
    from bayes_w2s.posterior.models.logistic_t_pooled import pooling_log_factor
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    tril = torch.linalg.cholesky(a @ a.transpose(-1, -2) + 0.5 * torch.eye(4, dtype=torch.float64))
    centre = tril[0]
    kl = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), scale_tril=centre),
        torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), scale_tril=tril))
    factor = pooling_log_factor(tril, centre, 7.0)
    torch.testing.assert_close(factor, -7.0 * kl)
    assert float(factor[0]) == pytest.approx(0.0, abs=1e-12) and (factor[1:] < 0).all()
    torch.testing.assert_close(pooling_log_factor(3.0 * tril, 3.0 * centre, 7.0), factor)


def _head_and_small_classes(k=6, head=0.7, n=1200, seed=0, absent=0):
    """Three weak models' soft outputs on k classes, the first holding ``head`` of the items:
    each model is right with probability 0.85 / 0.8 / 0.75 and otherwise names the head class
    (60%) or a random one; its logits are N(0, 1) plus a bump of 3 ± 1 on the class it names.
    ``absent`` more classes are in the label set, with no item and N(0, 1) logits."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, n, p=np.r_[head, np.full(k - 1, (1 - head) / (k - 1))])
    probs = np.zeros((n, 3, k + absent))
    for m, acc in enumerate((0.85, 0.8, 0.75)):
        pick = np.where(rng.random(n) < acc, truth, np.where(rng.random(n) < 0.6, 0, rng.integers(0, k, n)))
        logits = rng.normal(0, 1, (n, k + absent))
        logits[np.arange(n), pick] += 3 + rng.normal(0, 1, n)
        probs[:, m] = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return truth, WeakLabels(probs, ["a", "b", "c"], [f"c{i}" for i in range(k + absent)])


def test_pooled_scales_keep_small_classes_from_absorbing_a_large_ones_items():
    """The planted failure of a scale matrix per class: six small classes (D = 18 log-odds
    coordinates, ~75 items each) get matrices wide enough to take the head class's atypical
    items (74% right, Dawid–Skene 92%). Pooled towards a shared matrix they do not."""
    truth, labels = _head_and_small_classes(k=7, n=1500)
    hetero = fit_posterior(labels, model="logistic_t_hetero", method="em")
    pooled = fit_posterior(labels, model="logistic_t_pooled", method="em")
    ds = fit_posterior(labels, model="dawid_skene", method="em")
    assert np.all(np.diff(pooled.history) > -1e-6)                     # MAP-EM never decreases its objective
    assert (pooled.labels == truth).mean() > (hetero.labels == truth).mean() + 0.1
    assert (pooled.labels == truth).mean() > (ds.labels == truth).mean() - 0.03


def test_anchored_means_keep_classes_no_item_belongs_to_empty():
    """A label set with classes no item belongs to (as 5 of ATIS's 26 intents on its 2,000-item
    sample): the pooled model gives those components sub-clusters of the head class; anchored to
    "the weak models name k" they stay empty and the fit is as accurate as the vote."""
    truth, labels = _head_and_small_classes(k=4, n=1200, absent=2)
    vote = labels.probs.argmax(-1)
    vote = np.eye(6)[vote].sum(1).argmax(-1)
    pooled = fit_posterior(labels, model="logistic_t_pooled", method="em")
    anchored = fit_posterior(labels, model="logistic_t_anchored", method="em")
    assert np.all(np.diff(anchored.history) > -1e-6)                   # ECM never decreases its objective
    assert (pooled.labels >= 4).mean() > 0.1
    assert (anchored.labels >= 4).sum() == 0
    assert (anchored.labels == truth).mean() > (pooled.labels == truth).mean() + 0.1
    assert (anchored.labels == truth).mean() >= (vote == truth).mean() - 0.02


@pytest.mark.parametrize("seed", [0, 1])
def test_pooled_scales_keep_most_of_the_per_class_models_gain_on_large_classes(seed):
    """Two classes of 750 items whose spreads differ 2.5×: pooling costs part of the per-class
    model's gain over one shared scale (93.9 / 93.8% per class, 90.9 / 91.7% shared), not most."""
    truth, labels = _spread_classes((0.8, 2.0), seed=seed)
    hetero = fit_posterior(labels, model="logistic_t_hetero", method="em")
    pooled = fit_posterior(labels, model="logistic_t_pooled", method="em")
    shared = fit_posterior(labels, model="logistic_t", method="em")
    assert (pooled.labels == truth).mean() > (shared.labels == truth).mean() + 0.01
    assert (pooled.labels == truth).mean() >= (hetero.labels == truth).mean() - 0.015


def test_pooling_and_anchoring_at_their_limits_are_the_simpler_models():
    """Fit for fit (30 EM steps each, on a label set with an absent class): anchoring 0 is the
    pooled model, pooling 0 the per-class one, and a huge pooling weight one scale matrix for all."""
    _, labels = _head_and_small_classes(k=3, n=300, absent=1)
    em = dict(method="em", max_iter=30)
    pooled = fit_posterior(labels, model="logistic_t_pooled", **em)
    unanchored = fit_posterior(labels, model="logistic_t_anchored", anchoring=0, **em)
    np.testing.assert_allclose(unanchored.item_probs, pooled.item_probs, atol=1e-6)
    hetero = fit_posterior(labels, model="logistic_t_hetero", **em)
    unpooled = fit_posterior(labels, model="logistic_t_pooled", pooling=0, **em)
    np.testing.assert_allclose(unpooled.item_probs, hetero.item_probs, atol=1e-6)
    sigma = fit_posterior(labels, model="logistic_t_pooled", pooling=1e4, **em).draws["sigma"][0, 0]
    np.testing.assert_allclose(sigma, np.broadcast_to(sigma[0], sigma.shape), rtol=0.02)


def test_hierarchical_svi_stays_finite_on_sparse_many_annotators():
    truth, votes = sparse_crowd()
    post = fit_posterior(votes, model="hierarchical", method="svi", steps=400, progress=False)
    assert np.isfinite(post.item_probs).all() and np.isfinite(post.history).all()
    assert (post.labels == truth).mean() > 0.8
    with pytest.raises(InvalidInputError, match="no posterior mode"):
        fit_posterior(votes, model="hierarchical", method="svi", guide="delta")


def test_hierarchical_svi_stays_finite_when_classes_get_no_vote():
    """26 classes, 20 with items (70% in one), 6 no weak model names — ATIS intent's shape.
    Dawid–Skene's MAP, the start, puts π and unseen confusion entries at 0, −∞ for the guide;
    started there, SVI's parameters became NaN (a raw torch ValueError at step ~250)."""
    rng = np.random.default_rng(0)
    truth = rng.choice(20, 1000, p=np.r_[0.7, np.full(19, 0.3 / 19)])
    right = rng.random((1000, 3)) < 0.8
    votes = np.where(right, truth[:, None], (truth[:, None] + rng.integers(1, 20, (1000, 3))) % 20)
    post = fit_posterior(votes, model="hierarchical", method="svi", num_classes=26, steps=600, progress=False)
    assert np.isfinite(post.item_probs).all() and np.isfinite(post.history).all()
    assert (post.labels == truth).mean() > 0.9


def test_svi_parameters_turning_nan_is_a_clear_error(monkeypatch):
    """Pyro rejects a NaN guide parameter with a torch ValueError before any loss is returned."""
    def nan_step(self, *args, **kwargs):
        raise ValueError("Expected parameter loc ... to satisfy the constraint Real(), but found invalid values")
    monkeypatch.setattr(pyro.infer.SVI, "step", nan_step)
    _, votes = simulate_votes(n=40, k=2, seed=0)
    with pytest.raises(InvalidInputError, match=r"hierarchical/svi: the ELBO became nan at step 0; lower "
                                                r"learning_rate$"):
        fit_posterior(votes, model="hierarchical", method="svi", steps=5, progress=False)


@pytest.mark.parametrize("model,method", [("dawid_skene", "em"), ("dawid_skene", "vb"), ("one_coin", "em"),
                                          ("ebcc", "vb")])
def test_default_and_flat_priors_give_finite_probabilities_on_sparse_crowds(model, method):
    _, votes = sparse_crowd(seed=1)
    for priors in ({}, {"beta_diag": 1.0, "beta_off": 1.0} if model != "one_coin"
                   else {"accuracy_a": 1.0, "accuracy_b": 1.0}):
        post = fit_posterior(votes, model=model, method=method, **priors)
        assert np.isfinite(post.item_probs).all() and np.allclose(post.item_probs.sum(1), 1)


def test_out_of_range_priors_are_clear_errors():
    _, votes = simulate_votes(n=100, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match="out of range"):
        fit_posterior(votes, beta_off=-1.0)
    with pytest.raises(InvalidInputError, match="posterior mode does not exist"):
        fit_posterior(votes, method="em", beta_off=0.5)
    assert np.isfinite(fit_posterior(votes, method="vb", beta_off=0.5).item_probs).all()


def test_semi_supervised_gold_fixes_gold_items_and_improves_a_planted_case():
    """Weak models whose errors are all towards class 0: unsupervised DS reads the biased
    model as accurate; gold items show what its votes mean."""
    rng = np.random.default_rng(3)
    n = 1500
    truth = rng.integers(0, 3, n)
    biased = np.where(rng.random(n) < 0.5, 0, truth)           # says 0 half the time
    ok = np.where(rng.random(n) < 0.75, truth, rng.integers(0, 3, n))
    votes = np.stack([biased, biased.copy(), ok], 1)
    gold = np.full(n, -1)
    gold[:150] = truth[:150]
    plain = fit_posterior(votes, model="dawid_skene")
    semi = fit_posterior(votes, model="dawid_skene", gold=gold)
    assert (semi.labels[:150] == truth[:150]).all() and np.allclose(semi.item_probs[:150].max(1), 1)
    rest = slice(150, None)
    assert nll(semi.item_probs[rest], truth[rest]) < nll(plain.item_probs[rest], truth[rest])
    as_dict = fit_posterior(votes, model="dawid_skene", gold={i: int(truth[i]) for i in range(150)})
    np.testing.assert_allclose(as_dict.item_probs, semi.item_probs)


def test_gold_and_temperature_errors_name_the_problem():
    _, votes = simulate_votes(n=50, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match="gold item 50 is not among the 50 items"):
        fit_posterior(votes, gold={50: 1})
    df = pd.DataFrame({"task": [10, 10, 20, 20], "worker": ["a", "b", "a", "b"], "label": [0, 1, 1, 1]})
    with pytest.raises(InvalidInputError, match="items' ids"):
        fit_posterior(df, gold={1: 1})                     # tasks are named 10 and 20: never a position
    post = fit_posterior(votes)
    with pytest.raises(LabelSetMismatchError, match="not a class index"):
        post.predict_proba(votes[:5], gold={0: 9})
    with pytest.raises(LabelSetMismatchError, match="gold label 'maybe'"):
        fit_posterior(votes, gold={0: "maybe"})
    with pytest.raises(LabelSetMismatchError, match="not a class index"):
        fit_posterior(votes, gold={0: 7})
    for bad in (0, -1.0, float("nan"), "hot"):
        with pytest.raises(InvalidInputError, match="temperature must be"):
            fit_posterior(votes, temperature=bad)
    column = np.full(50, np.nan)                           # a float gold column: NaN (or −1) is unknown
    column[[0, 3]] = [1.0, 2.0]
    np.testing.assert_array_equal(fit_posterior(votes, gold=column).labels[[0, 3]], [1, 2])
    column[5] = 0.5
    with pytest.raises(LabelSetMismatchError, match="gold label 0.5 of item 5 is not a class index"):
        fit_posterior(votes, gold=column)


def test_gold_is_read_by_item_id_and_in_the_labels_own_terms():
    """A pandas Series names its items by index (a shuffled one was read by position), and an
    integer gold label is read as the labels are: a class index for votes, a name in a long
    frame (where class names may be ratings 1..5)."""
    truth, votes = simulate_votes(n=60, k=3, accs=(0.6, 0.7, 0.8))
    names = np.array(["neg", "neu", "pos"])
    df = pd.DataFrame([(f"t{i:02d}", f"w{j}", names[v]) for i, row in enumerate(votes) for j, v in enumerate(row)],
                      columns=["task", "worker", "label"])
    gold = pd.Series({f"t{i:02d}": names[truth[i]] for i in range(0, 60, 3)}).sample(frac=1, random_state=0)
    by_series = fit_posterior(df, gold=gold)
    by_dict = fit_posterior(df, gold=gold.to_dict())
    np.testing.assert_allclose(by_series.item_probs, by_dict.item_probs)
    assert (by_series.labels[::3] == truth[::3]).all()
    with_gaps = pd.Series([truth[0], np.nan, truth[2]], index=["t00", "t01", "t02"])   # NaN: unknown
    assert fit_posterior(df, gold=with_gaps.map(lambda v: v if pd.isna(v) else names[int(v)])).labels[0] == truth[0]
    as_votes = fit_posterior(votes, label_names=[1, 2, 3], gold={1: 1})             # vote 1 = index 1 = class "2"
    assert as_votes.labels[1] == 1
    ratings = df.assign(label=df["label"].map({"neg": 1, "neu": 2, "pos": 3}))
    assert fit_posterior(ratings, label_names=[1, 2, 3], gold={"t01": 1}).labels[1] == 0   # rating 1 = index 0
    for not_a_rating in ({"t01": 0}, pd.Series({"t01": 0})):    # was read as index 0, i.e. rating 1
        with pytest.raises(LabelSetMismatchError, match=r"gold label 0 of item 't01' is not in the class set"):
            fit_posterior(ratings, label_names=[1, 2, 3], gold=not_a_rating)
    with pytest.raises(InvalidInputError, match="ordered"):
        fit_posterior(votes, label_names={"a", "b", "c"})


@pytest.mark.parametrize("method,budget", [("em", dict(max_iter=2)), ("vb", dict(max_iter=2)),
                                           ("svi", dict(steps=2))])
def test_an_optimiser_that_stops_before_converging_says_so(method, budget):
    _, votes = simulate_votes(n=200, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        post = fit_posterior(votes, method=method, **budget)
    assert not post.converged


def test_friendly_label_layouts():
    """None in a list of lists abstains; −1 in a gold dict is unknown, as in a gold array; a
    categorical label column declares its class set, unused classes included."""
    listed = [[0, 0, None], [1, 1, 1], [0, None, 0], [1, 0, 1]]
    post = fit_posterior(listed, num_classes=2, gold={0: 0, 1: -1})
    np.testing.assert_array_equal(post.labels, [0, 1, 0, 1])
    df = pd.DataFrame({"task": [1, 1, 2, 2, 3, 3], "worker": ["a", "b"] * 3, "label": ["x", "x", "y", "y", "x", "y"]})
    df["label"] = pd.Categorical(df["label"], categories=["x", "y", "z"])
    assert fit_posterior(df).label_names == ["x", "y", "z"]


def test_hashed_row_compression_finds_the_exact_patterns_and_falls_back_on_a_collision(monkeypatch):
    """Many-column inputs (crowds) are factorised by hashing above ``HASH_ROWS_ABOVE`` cells;
    each group must hold identical rows, as many groups as np.unique finds, and a hash that
    merges different rows must fall back to the exact sort."""
    import bayes_w2s.posterior.engine as engine
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 2, (60, 200)) * (rng.random((60, 200)) < 0.02)
    key = torch.as_tensor(np.vstack([rows, rows[:25]]), dtype=torch.float64)      # 25 repeated rows
    exact = np.unique(key.numpy(), axis=0).shape[0]
    monkeypatch.setattr(engine, "HASH_ROWS_ABOVE", 0)
    for collide in (False, True):
        if collide:                                     # every row hashes alike: the check must catch it
            monkeypatch.setattr(engine.np.random, "default_rng", lambda seed: type("R", (), {
                "standard_normal": lambda self, shape: np.zeros(shape)})())
        first, inverse, freq = engine.compress_rows(key)
        np.testing.assert_array_equal(key.numpy()[first.numpy()][inverse.numpy()], key.numpy())
        assert len(first) == exact and int(freq.sum()) == len(key)


def test_tuple_task_ids_stay_one_index_level():
    df = pd.DataFrame({"task": [(1, "a"), (1, "a"), (2, "b"), (2, "b")], "worker": ["x", "y", "x", "y"],
                       "label": [0, 0, 1, 1]})
    frame = fit_posterior(df).to_frame()
    assert list(frame.index) == [(1, "a"), (2, "b")] and frame.index.nlevels == 1


@pytest.mark.parametrize("model,method", [("dawid_skene", "em"), ("dawid_skene", "vb"), ("logistic_t", "em"),
                                          ("logistic_t_hetero", "em"), ("logistic_t_pooled", "em"),
                                          ("logistic_t_anchored", "em")])
def test_temperature_maps_the_evidence_and_leaves_the_fitted_reliabilities_alone(model, method):
    """T only scales log p(y | c, θ) in the item posterior: at T = 1 it is the plain model,
    the globals do not move with T (tempering inside the fit would drive them to chance),
    and the item posterior is softmax(log π + log-lik / T) computed by hand."""
    labels = (simulate_soft(n=400)[1] if model.startswith("logistic_t")
              else simulate_votes(n=500, k=3, accs=(0.6, 0.7, 0.8))[1])
    plain = fit_posterior(labels, model=model, method=method)
    np.testing.assert_allclose(fit_posterior(labels, model=model, method=method, temperature=1.0).item_probs,
                               plain.item_probs)
    hot = fit_posterior(labels, model=model, method=method, temperature=2.0)
    for site, value in plain.draws.items():
        np.testing.assert_allclose(hot.draws[site], value, atol=1e-8)
    np.testing.assert_allclose(hot.confusion, plain.confusion, atol=1e-8)   # logistic-t's moved with T
    assert hot.confidence.mean() < plain.confidence.mean() - 0.02
    np.testing.assert_allclose(plain.predict_proba(labels, temperature=2.0), hot.item_probs, atol=1e-10)
    if method == "em" and model == "dawid_skene":
        m = get_model(model)
        lm = as_label_matrix(labels)
        data = m.prepare(lm, plain.priors)
        g = {s: torch.as_tensor(v[0, 0]) for s, v in plain.draws.items() if s in m.sites}
        lik = m.log_joint(data.obs, g, m.logs(g), plain.priors) - m.logs(g)["pi"]
        by_hand = (m.logs(g)["pi"] + lik / 2.0).softmax(-1)[data.inverse].numpy()
        np.testing.assert_allclose(hot.item_probs, by_hand, atol=1e-10)


@pytest.mark.parametrize("model,method", [("dawid_skene", "em"), ("dawid_skene", "vb"), ("one_coin", "em"),
                                          ("ebcc", "vb"), ("logistic_t", "em"), ("logistic_t_hetero", "em"),
                                          ("logistic_t_pooled", "em"), ("logistic_t_anchored", "em"), ("soft", "em")])
def test_predict_proba_equals_a_refit_with_the_globals_fixed(model, method):
    """Applying the fitted globals to items equals their item posterior in a fit that
    contains them (the E-step of a refit whose globals do not move), and to new items
    equals the Pyro model's exact conditional given the same globals."""
    if get_model(model).observes == "probs":
        _, labels = simulate_soft(n=400)
        post = fit_posterior(labels, model=model, method=method)
        np.testing.assert_allclose(post.predict_proba(labels), post.item_probs, atol=1e-10)
        return
    _, votes = simulate_votes(n=600, k=3, accs=(0.6, 0.7, 0.8))
    kw = {"num_subtypes": 2} if model == "ebcc" else {}
    post = fit_posterior(votes[:500], model=model, method=method, **kw)
    np.testing.assert_allclose(post.predict_proba(votes[:500]), post.item_probs, atol=1e-10)
    if method != "em":
        return
    m = get_model(model)
    lm = as_label_matrix(votes[500:], num_classes=3)
    data = m.prepare(lm, post.priors)
    g = {s: torch.as_tensor(v[0, 0]) for s, v in post.draws.items() if s in m.sites}
    exact = (m.log_joint(data.obs, g, m.logs(g), post.priors)).softmax(-1)[data.inverse].numpy()
    np.testing.assert_allclose(post.predict_proba(votes[500:]), exact, atol=1e-10)


def test_items_sharing_a_vote_pattern_are_drawn_independently():
    votes = np.array([[0, 0, 1]] * 40 + [[1, 1, 0]] * 40)
    post = fit_posterior(votes, model="dawid_skene", method="nuts", num_chains=1, num_samples=200, warmup_steps=100,
                         num_workers=1, progress=False, temperature=8.0)     # soft item posteriors
    same = (post.true_class[0, :, 0] == post.true_class[0, :, 1]).mean()
    p0 = post.item_probs[0]
    assert p0.max() < 0.9 and abs(same - (p0 ** 2).sum()) < 0.15     # ~0.69 here; 1.0 if drawn per pattern


def test_latent_draws_follow_what_pyro_infer_discrete_samples():
    _, votes = simulate_votes(n=60, k=3, accs=(0.55, 0.6, 0.65))
    m = get_model("dawid_skene")
    p = m.priors()
    data = m.prepare(as_label_matrix(votes, num_classes=3), p)
    g = m.init(data, p)
    draws = {s: v.reshape(1, 1, *v.shape).expand(1, 4000, *v.shape) for s, v in g.items()}
    ours = draw_local_latents(m, data, p, draws, seed=0)[0]                               # [4000, N]
    conditioned = poutine.condition(m.fn_call(data, p), data={s: v for s, v in g.items() if s in m.sites})
    pyro.set_rng_seed(0)
    sampler = infer_discrete(conditioned, first_available_dim=-3, temperature=1)
    theirs = np.stack([sampler().reshape(-1).numpy() for _ in range(1000)])
    for k in range(3):
        assert np.abs((ours == k).mean(0) - (theirs == k).mean(0)).max() < 0.08


def test_nuts_runs_in_one_process_with_a_warning_when_workers_cannot_start(monkeypatch):
    import bayes_w2s.posterior.engine as engine

    class Broken:
        def __init__(self, *a, **k):
            raise OSError("[Errno 38] Function not implemented")    # a sandbox without semaphores
    monkeypatch.setattr(engine, "Parallel", Broken)
    _, votes = simulate_votes(n=150, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.warns(RuntimeWarning, match="could not start.*one after another in this process"):
        post = fit_posterior(votes, method="nuts", num_chains=2, num_samples=30, warmup_steps=30, num_workers=2,
                             progress=False)
    assert post.draws["theta"].shape[:2] == (2, 30) and post.info["preconditioned"]


def test_em_start_points_keep_the_best():
    _, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    m = get_model("dawid_skene")
    p = m.priors()
    data = m.prepare(as_label_matrix(votes), p)
    fit = fit_em(m, data, p)
    assert fit.converged and fit.info["rows"] == data.num_rows
    with pytest.raises(InvalidInputError, match="max_iter"):
        fit_em(m, data, p, max_iter=0)


@pytest.mark.parametrize("method", ["nuts", "hmc"])
@pytest.mark.parametrize("name", ["dawid_skene", "one_coin", "hierarchical", "ebcc", "soft", "logistic_t",
                                  "logistic_t_hetero", "logistic_t_pooled", "logistic_t_anchored"])
def test_every_model_samples_by_mcmc_in_a_worker(name, method):
    """A few NUTS / HMC draws of every class model through the worker code path (flattening
    and unflattening each site, scalars included), in one process: finite, normalised labels."""
    labels = simulate_soft(n=60)[1] if get_model(name).observes == "probs" else simulate_votes(n=80, k=3)[1]
    post = fit_posterior(labels, model=name, method=method, num_chains=1, num_samples=5, warmup_steps=5,
                         num_workers=1, progress=False)
    assert np.isfinite(post.item_probs).all()
    np.testing.assert_allclose(post.item_probs.sum(-1), 1.0, atol=1e-9)


def test_log_likelihood_is_kept_per_vote_pattern_and_expanded_on_access():
    """Items that share a vote pattern share its log-likelihood: kept once per pattern (VB's
    200 draws × a million items would be 1.6 GB), expanded to ``[chains, draws, N]`` on access."""
    truth, votes = simulate_votes(n=300, k=3)
    post = fit_posterior(votes, model="dawid_skene", method="vb", num_draws=50)
    assert post.log_lik_rows.shape[-1] < 300 and post.log_lik.shape == (1, 50, 300)
    np.testing.assert_array_equal(post.log_lik, post.log_lik_rows[..., post.row_of_item])
    part = post.select(np.arange(10, 20))
    np.testing.assert_array_equal(part.log_lik, post.log_lik[..., 10:20])


def test_laplace_whitening_is_a_square_root_of_the_floored_inverse_hessian():
    from bayes_w2s.posterior.engine import laplace_hessian, laplace_whitening

    def potential(params):   # a correlated Gaussian with one direction flatter than the floor
        u = params["u"]
        return 0.5 * u @ torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.01]], dtype=u.dtype) @ u
    start = {"u": torch.zeros(3, dtype=torch.float64)}
    root = laplace_whitening(potential, start)
    evals, evecs = torch.linalg.eigh(laplace_hessian(potential, start))
    torch.testing.assert_close(root @ root.T, torch.linalg.inv((evecs * evals.clamp_min(1.0)) @ evecs.T))
    with pytest.raises(InvalidInputError, match="floor must be > 0"):
        laplace_whitening(potential, start, floor=0.0)


def test_nuts_reports_divergent_draws():
    """A step size far too large for the target (target_accept near 0) makes trajectories
    diverge; each draw's flag comes from the kernel's own record."""
    _, votes = simulate_votes(n=60, k=3)
    post = fit_posterior(votes, method="nuts", num_chains=1, num_samples=40, warmup_steps=20, num_workers=1,
                         target_accept_prob=0.01, precondition=False, progress=False)
    diverging = post.to_inference_data().sample_stats["diverging"].values
    assert diverging.shape == (1, 40) and 0 < diverging.sum() <= 40


def test_nuts_with_fewer_draws_than_r_hat_needs_reports_no_r_hat():
    _, votes = simulate_votes(n=60, k=3)
    post = fit_posterior(votes, method="nuts", num_chains=2, num_samples=3, warmup_steps=3, num_workers=1,
                         progress=False)
    assert post.draws["theta"].shape[:2] == (2, 3) and not post.converged



def test_svi_subsample_of_all_items_or_more_is_the_full_batch():
    _, votes = simulate_votes(n=30, k=3)
    full = fit_posterior(votes, method="svi", steps=20, progress=False)
    more = fit_posterior(votes, method="svi", steps=20, progress=False, subsample_size=31)
    np.testing.assert_allclose(more.item_probs, full.item_probs)


def test_logistic_t_em_fits_soft_models_beside_a_hard_rule():
    """A 0/1 rule among soft weak models piles its log-odds at ±log((1−ε)/ε); the scale
    step's line search overflowed there and torch raised from a Gamma's argument check."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 40)
    soft = np.clip(np.where(truth[:, None] == 0, 0.8, 0.2) + rng.normal(0, 0.1, (40, 2)), 0.01, 0.99)
    probs = np.zeros((40, 3, 2))
    probs[:, :2, 0], probs[:, :2, 1] = soft, 1 - soft
    probs[:, 2] = np.eye(2)[np.where(rng.random(40) < 0.85, truth, 1 - truth)]
    post = fit_posterior(WeakLabels(probs, ["a", "b", "rule"], ["x", "y"]), model="logistic_t")
    assert np.isfinite(post.item_probs).all() and (post.labels == truth).mean() > 0.85


def test_predict_proba_takes_crowd_frames_labelled_by_some_fitted_workers():
    """New tasks in a long frame are labelled by a subset of the fitted workers, in any order:
    the others abstain, exactly as a vote array with −1 in their columns."""
    rows = [(t, w, (t + (w == "c")) % 2) for t in range(40) for w in ("a", "b", "c")]
    post = fit_posterior(pd.DataFrame(rows, columns=["task", "worker", "label"]))
    new = pd.DataFrame([(100, "c", 1), (100, "a", 0), (101, "c", 0)], columns=["task", "worker", "label"])
    as_votes = np.array([[0, -1, 1], [-1, -1, 0]])                  # worker b labelled none of them
    np.testing.assert_allclose(post.predict_proba(new), post.predict_proba(as_votes))
    with pytest.raises(InvalidInputError, match="new labels come from weak models"):
        post.predict_proba(new.assign(worker=["c", "a", "zed"]))


def test_predict_proba_gives_a_new_item_without_labels_the_class_prior():
    _, votes = simulate_votes(n=200, k=3, accs=(0.6, 0.7, 0.8))
    post = fit_posterior(votes)
    probs = post.predict_proba(np.array([[-1, -1, -1], [0, 0, 0]]))
    np.testing.assert_allclose(probs[0], post.class_prior, atol=1e-9)
    assert probs[1].argmax() == 0
    df = pd.DataFrame({"task": ["a", "a", "b", "b"], "worker": ["x", "y", "x", "y"], "label": [0, 1, -1, -1]})
    with pytest.raises(InvalidInputError, match="first: item 'b'"):          # fitting still needs a label
        fit_posterior(df, num_classes=2)
    from bayes_w2s.aggregation import DawidSkene
    rows = [(t, w, (t + (w == "z")) % 2) for t in range(40) for w in ("x", "y", "z")]
    est = DawidSkene().fit(pd.DataFrame(rows, columns=["task", "worker", "label"]))
    new = est.predict_proba(df)
    np.testing.assert_allclose(new.loc["b"].to_numpy(), est.priors_.to_numpy(), atol=1e-9)
    # a batch of such items alone (was: "no weak model casts a vote … nothing to fit")
    np.testing.assert_allclose(post.predict_proba(np.array([[-1, -1, -1]])), post.class_prior[None], atol=1e-9)
    np.testing.assert_allclose(est.predict_proba(df[df["task"] == "b"]).to_numpy(), est.priors_.to_numpy()[None],
                               atol=1e-9)
    assert post.predict_proba(np.array([[-1, -1, -1]]), gold={0: 2})[0].argmax() == 2
    rng = np.random.default_rng(0)
    weak = lambda probs: WeakLabels(probs, ["a", "b", "c"], ["x", "y", "z"])   # noqa: E731
    soft = fit_posterior(weak(rng.dirichlet([1, 1, 1], size=(100, 3))), model="logistic_t")
    np.testing.assert_allclose(soft.predict_proba(weak(np.full((2, 3, 3), 1 / 3))),
                               soft.class_prior[None, :].repeat(2, 0), atol=1e-6)


def test_gold_edge_cases_are_read_as_meant_or_refused():
    """A class named −1, a Series naming an item twice, a masked gold array, gold for word models."""
    df = pd.DataFrame({"task": np.repeat([0, 1, 2, 3], 3), "worker": ["a", "b", "c"] * 4,
                       "label": [1, 1, 1, -1, -1, 0, 0, 0, -1, -1, -1, -1]})
    post = fit_posterior(df, label_names=[-1, 0, 1], gold={0: -1})         # −1 is a class here, not "unknown"
    assert post.info["gold_items"] == 1 and post.labels[0] == 0
    for ambiguous in (np.array([-1, -1, -1, -1]), pd.Series([1.0, -1.0, -1.0, -1.0])):   # df.gold.fillna(-1)
        with pytest.raises(LabelSetMismatchError, match="both a class name and the usual 'unknown'"):
            fit_posterior(df, label_names=[-1, 0, 1], gold=ambiguous)
    with pytest.raises(LabelSetMismatchError, match="both a class name"):   # votes: gold ints are indices
        fit_posterior(np.array([[0, 0], [1, 2], [2, 2]]), label_names=[-1, 0, 1], gold={0: -1})
    assert fit_posterior(df, label_names=[-1, 0, 1], gold=np.ma.masked_array([1, 0, 0, 0], mask=[0, 1, 1, 1])
                         ).info["gold_items"] == 1
    _, votes = simulate_votes(n=20, k=3, accs=(0.6, 0.7, 0.8))
    masked = np.ma.masked_array(np.zeros(20, int), mask=np.arange(20) >= 2)   # every item became gold class 0
    assert fit_posterior(votes, gold=masked).info["gold_items"] == 2
    floats = pd.DataFrame({"task": np.repeat([1.0, 2.0, 3.0], 3), "worker": ["a", "b", "c"] * 3,
                           "label": [0, 0, 1, 1, 1, 1, 0, 0, 0]})
    assert fit_posterior(floats, gold={3: 1}).labels[2] == 1          # task 3.0 was "not among the items' ids"
    with pytest.raises(InvalidInputError, match="gold names item 4 more than once"):
        fit_posterior(votes, gold=pd.Series([0, 2], index=[4, 4]))
    with pytest.raises(InvalidInputError, match="takes no gold"):
        fit_posterior([["set alarm", "set an alarm"], ["play jazz", "play jazz"]], model="word_reliability",
                      gold={0: "set alarm"})


def test_a_weak_model_that_never_votes_is_named():
    _, votes = simulate_votes(n=100, k=3, accs=(0.6, 0.7, 0.8))
    votes = np.c_[votes, np.full(100, -1)]
    with pytest.warns(RuntimeWarning, match=r"weak model\(s\) \['weak_3'\] cast no vote"):
        fit_posterior(votes)


@pytest.mark.parametrize("model", ["logistic_t", "dawid_skene"])
def test_predict_proba_puts_reordered_weak_models_back_in_the_fitted_order(model):
    _, wl = simulate_soft(n=200)
    post = fit_posterior(wl, model=model)
    order = [2, 0, 1]
    shuffled = WeakLabels(wl.probs[:, order], [wl.model_names[j] for j in order], wl.label_names)
    np.testing.assert_allclose(post.predict_proba(shuffled), post.predict_proba(wl), atol=1e-10)


def _gaussian_nuts(jitter, seed=0, draws=300, dim=4):
    from pyro.infer import MCMC

    from bayes_w2s.posterior.engine import JitteredNUTS
    pyro.set_rng_seed(seed)
    kernel = JitteredNUTS(jitter, potential_fn=lambda p: 0.5 * (p["z"] ** 2).sum())
    adapted = []
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=150, initial_params={"z": torch.zeros(dim)},
                disable_progbar=True, hook_fn=lambda k, *_: adapted.append(k._adapter.step_size))
    mcmc.run()
    return mcmc.get_samples()["z"], adapted[150:]


def test_step_size_jitter_zero_is_pyros_nuts_draw_for_draw():
    from pyro.infer import MCMC, NUTS
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(potential_fn=lambda p: 0.5 * (p["z"] ** 2).sum()), num_samples=300, warmup_steps=150,
                initial_params={"z": torch.zeros(4)}, disable_progbar=True)
    mcmc.run()
    assert torch.equal(mcmc.get_samples()["z"], _gaussian_nuts(0.0)[0])


def test_step_size_jitter_samples_the_target_and_keeps_the_adapted_step():
    draws, steps = _gaussian_nuts(0.5, draws=2000)
    assert len(set(steps)) == 1                    # each jittered step is undone after its draw
    assert draws.mean(0).abs().max() < 0.15        # N(0, I): 2,000 (antithetic) draws
    assert ((draws.var(0) - 1).abs() < 0.2).all()
    assert not torch.equal(draws, _gaussian_nuts(0.0, draws=2000)[0])


def _gaussian_hmc(jitter, seed=0, draws=300, dim=4, length=math.pi / 2, warmup=300):
    from pyro.infer import MCMC

    from bayes_w2s.posterior.engine import JitteredHMC
    pyro.set_rng_seed(seed)
    kernel = JitteredHMC(length, jitter, potential_fn=lambda p: 0.5 * (p["z"] ** 2).sum(), target_accept_prob=0.9)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params={"z": torch.zeros(dim)},
                disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()["z"], kernel


def test_hmc_transitions_integrate_for_exactly_their_jittered_time(monkeypatch):
    """Each sampling transition runs n = ⌈t/ε⌉ leapfrog steps of t/n ≤ ε, t uniform in T(1 ± j),
    and the adapted ε is back after it (Pyro alone would run ⌊T/ε⌋ steps of ε, short of T)."""
    from pyro.infer import HMC, MCMC

    from bayes_w2s.posterior.engine import JitteredHMC
    times, calls, after, count = [], [], [], [0]
    pyros = HMC.sample

    def spy(self, params):
        times.append(self.step_size * self.num_steps)
        return pyros(self, params)
    monkeypatch.setattr(HMC, "sample", spy)

    def potential(p):                               # one evaluation per leapfrog step
        count[0] += 1
        return 0.5 * (p["z"] ** 2).sum()

    def hook(k, *_):
        calls.append(count[0])
        count[0] = 0
        after.append((k._adapter.step_size, k._steps))
    pyro.set_rng_seed(0)
    kernel = JitteredHMC(math.pi / 2, 0.2, potential_fn=potential, target_accept_prob=0.9)
    MCMC(kernel, num_samples=400, warmup_steps=100, initial_params={"z": torch.zeros(4)}, disable_progbar=True,
         hook_fn=hook).run()
    eps = kernel._adapter.step_size
    t, n = np.array(times[100:]), np.array(calls[100:])
    assert len(t) == 400 and ((n - 1) * eps < t).all() and (t <= n * eps + 1e-12).all()
    assert t.min() >= 0.8 * math.pi / 2 - 1e-9 and t.max() <= 1.2 * math.pi / 2 + 1e-9 and t.std() > 0.05
    assert all(step == eps and steps is None for step, steps in after[100:])


def test_hmc_rejects_a_transition_that_would_take_too_many_steps():
    from bayes_w2s.posterior.engine import JitteredHMC
    kernel = JitteredHMC(math.pi / 2, potential_fn=lambda p: 0.5 * (p["z"] ** 2).sum())
    kernel.initial_params = {"z": torch.zeros(2)}
    kernel.setup(warmup_steps=0)
    kernel._adapter.step_size = 1e-6
    with pytest.raises(InvalidInputError, match="leapfrog steps"):
        kernel.sample({"z": torch.zeros(2)})
    assert kernel._adapter.step_size == 1e-6 and kernel._steps is None


def test_hmc_without_the_whitening_warns():
    _, votes = simulate_votes(n=80, k=3)
    with pytest.warns(RuntimeWarning, match="without the Laplace whitening"):
        post = fit_posterior(votes, method="hmc", precondition=False, num_chains=1, num_samples=5, warmup_steps=5,
                             num_workers=1, progress=False)
    assert post.info["kernel"] == "hmc" and post.info["trajectory_length"] == pytest.approx(math.pi / 2)


def _lag1_autocorrelation(x: torch.Tensor) -> float:
    x = x - x.mean(0)
    return float(((x[1:] * x[:-1]).mean(0) / x.var(0)).mean())


def test_quarter_orbit_hmc_decorrelates_the_spread_where_nuts_does_not():
    """Why ``method="hmc"`` exists: on a whitened (standard Gaussian) target NUTS runs about
    half an orbit, x → −x, so x² barely moves between draws; a quarter orbit lands on a
    fresh draw for x and x² alike. Both samplers still sample N(0, I)."""
    hmc, _ = _gaussian_hmc(0.2, draws=2000, dim=20)
    nuts, _ = _gaussian_nuts(0.0, draws=2000, dim=20)
    assert hmc.mean(0).abs().max() < 0.15 and ((hmc.var(0) - 1).abs() < 0.2).all()
    assert abs(_lag1_autocorrelation(hmc)) < 0.15 and abs(_lag1_autocorrelation(hmc ** 2)) < 0.15
    assert _lag1_autocorrelation(nuts ** 2) > 0.3


@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_thinning_keeps_every_t_th_transition_of_the_same_chain(method):
    _, votes = simulate_votes(n=150, k=3, accs=(0.6, 0.7, 0.8))
    common = dict(method=method, num_chains=2, warmup_steps=40, num_workers=1, progress=False, draw_labels=False)
    full = fit_posterior(votes, num_samples=30, **common)
    thinned = fit_posterior(votes, num_samples=10, thinning=3, **common)
    np.testing.assert_array_equal(thinned.draws["theta"], full.draws["theta"][:, 2::3])
    np.testing.assert_array_equal(thinned.sample_stats["tree_size"],
                                  full.sample_stats["tree_size"].reshape(2, 10, 3).sum(-1))
    assert thinned.info["thinning"] == 3 and thinned.to_inference_data().posterior.sizes["draw"] == 10
    with pytest.raises(InvalidInputError, match="thinning must be an integer ≥ 1"):
        fit_posterior(votes, num_samples=10, thinning=1.5, **common)


def test_an_m_step_that_degenerates_is_a_project_error_not_a_tensor_dump():
    """Label-smoothed outputs (the wrong classes share equal probability) put each class's
    log-odds on lines: the per-class scale matrix is singular and μ became NaN, which
    log_prior's argument validation reported as a raw ValueError."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = np.empty((50, 3, 3))
    for j in range(3):
        label = np.where(rng.random(50) < 0.8, y, (y + rng.integers(1, 3, 50)) % 3)
        top = rng.uniform(0.55, 0.9, 50)
        probs[:, j] = ((1 - top) / 2)[:, None]
        probs[np.arange(50), j, label] = top
    with pytest.raises(InvalidInputError, match=r"logistic_t_hetero/em: the M-step gave non-finite \['mu'\]"):
        fit_posterior(WeakLabels(probs, ["a", "b", "c"], ["x", "y", "z"]), model="logistic_t_hetero")


def test_soft_votes_read_the_probabilities():
    """One-coin on soft votes: at least as accurate as the vote on a planted case, the same
    reading for new items; a uniform output casts no vote; hard votes cannot be soft votes."""
    truth, labels = simulate_soft(n=1500, k=3, seed=0)
    vote = (as_label_matrix(labels).counts.sum(1).argmax(1) == truth).mean()
    one = fit_posterior(labels, model="one_coin", soft_votes=1, progress=False)
    assert (one.labels == truth).mean() > vote - 0.01          # 92.1 vs 92.7%: no collapse (it was a compression bug)
    post = fit_posterior(labels, model="one_coin", soft_votes=3, progress=False)
    assert (post.labels == truth).mean() >= vote
    np.testing.assert_allclose(post.predict_proba(labels), post.item_probs, atol=1e-10)   # the same soft reading
    two = WeakLabels(labels.probs[:50, :2], labels.model_names[:2], labels.label_names)      # a model missing
    uniform = labels.probs[:50].copy()
    uniform[:, 2] = 1 / 3                                                                       # abstains
    np.testing.assert_allclose(post.predict_proba(two),
                               post.predict_proba(WeakLabels(uniform, labels.model_names, labels.label_names)))
    hard = fit_posterior(labels, model="one_coin", progress=False)
    assert not np.allclose(hard.item_probs, post.item_probs, atol=1e-3)
    blank = WeakLabels(np.concatenate([labels.probs[:300], np.full((20, 3, 3), 1 / 3)]), labels.model_names,
                       labels.label_names)
    dawid = fit_posterior(blank, model="dawid_skene", soft_votes=1, progress=False)
    pi = np.asarray(dawid.draws["pi"]).reshape(-1, 3)[0]
    np.testing.assert_allclose(dawid.item_probs[300:], np.broadcast_to(pi, (20, 3)), atol=1e-12)
    with pytest.raises(InvalidInputError, match="soft_votes needs each weak model's probabilities"):
        fit_posterior(labels.votes(), model="dawid_skene", soft_votes=3, num_classes=3)
    with pytest.raises(InvalidInputError, match=r"soft_votes must be None or a number in \(0, inf\)"):
        fit_posterior(labels, model="one_coin", soft_votes=0)


def test_row_compression_keeps_distinct_fractional_rows_apart():
    """Integer rows are coded as one number in base max + 1; fractional rows (soft votes) must
    not be: at base 1 every row of one total had the same code, and one-coin on soft votes
    gave every SST-2 item the same posterior."""
    from bayes_w2s.posterior.engine import compress_rows
    rows = torch.tensor([[1.0, 0.0, 0.25, 0.75, 0.5, 0.5], [0.0, 1.0, 0.5, 0.5, 0.5, 0.5],
                         [1.0, 0.0, 0.25, 0.75, 0.5, 0.5]], dtype=torch.float64)
    first, inverse, count = compress_rows(rows)
    assert inverse[0] == inverse[2] != inverse[1] and sorted(count.tolist()) == [1.0, 2.0]
    votes = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 0.0, 2.0]], dtype=torch.float64)
    inverse = compress_rows(votes)[1]
    assert inverse[0] == inverse[2] != inverse[1]
    huge = votes * 1e20                    # whole numbers past int64: the code base was an int numpy could not log
    inverse = compress_rows(huge)[1]
    assert inverse[0] == inverse[2] != inverse[1]


def test_a_huge_soft_vote_weight_fits():
    """soft_votes accepts any finite positive weight; at 1e20 probabilities like 0.1 / 0.8 give
    whole-number counts past int64, and the row codes' base overflowed."""
    rng = np.random.default_rng(1)
    votes = rng.integers(0, 3, (200, 2))
    labels = WeakLabels(0.7 * np.eye(3)[votes] + 0.1, ["a", "b"], ["x", "y", "z"])
    for model in ("dawid_skene", "one_coin", "ebcc"):
        post = fit_posterior(labels, model=model, soft_votes=1e20, progress=False)
        assert np.isfinite(post.item_probs).all()
