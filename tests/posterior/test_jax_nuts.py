"""NUTS on NumPyro (``backend="numpyro"``): the JAX twin of each potential equals the torch
one (value and gradient, with gold items), and the sampler gives Pyro's posterior."""
import numpy as np
import pytest
import torch

from bayes_w2s import fit_posterior
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.posterior import MODELS, as_label_matrix
from bayes_w2s.posterior import jax_nuts
from bayes_w2s.posterior.engine import make_potential, sampler_start, to_unconstrained
from bayes_w2s.posterior.models import get_model

from .conftest import simulate_votes

jax = pytest.importorskip("jax")
pytest.importorskip("numpyro")

TWINS = sorted(name for name, m in MODELS.items() if jax_nuts.supports(m))


def test_the_vote_models_have_twins():
    assert {"dawid_skene", "ebcc", "hierarchical"} <= set(TWINS)


@pytest.mark.parametrize("name", TWINS)
@pytest.mark.parametrize("gold", [False, True])
def test_jax_potential_and_gradient_equal_the_torch_ones(name, gold):
    truth, votes = simulate_votes(n=150, k=3, accs=(0.6, 0.7, 0.8))
    votes[::7, 1] = -1                                               # abstentions
    model = get_model(name)
    p = model.priors({"beta_diag": 3.0, **({"num_subtypes": 2} if name == "ebcc" else {})})
    gold_arr = np.where(np.arange(150) % 5 == 0, truth, -1) if gold else None
    data = model.prepare(as_label_matrix(votes, num_classes=3), p, gold=gold_arr)
    start = {s: to_unconstrained(model.sites[s].support, v) for s, v in sampler_start(model, data, p).items()
             if s in model.sites}
    gen = torch.Generator().manual_seed(0)
    point = {s: (u + 0.4 * torch.randn(u.shape, generator=gen, dtype=u.dtype)).requires_grad_()
             for s, u in start.items()}
    names = list(model.sites)                    # the flat vector's order, as in the samplers
    ours = make_potential(model, data, p)(point)
    grad = torch.autograd.grad(ours, [point[s] for s in names])
    shapes = {s: tuple(u.shape) for s, u in start.items()}
    job = dict(jax_nuts.jax_job(model, data, p, shapes), weight=data.weight.numpy(), priors=p,
               mask=None if data.mask is None else data.mask.numpy(),
               start={s: u.detach().numpy() for s, u in start.items()})
    flat = np.concatenate([point[s].detach().numpy().reshape(-1) for s in names])
    with jax.enable_x64(True):
        twin = jax_nuts.make_potential(model, job, data.num_rows)
        value, jax_grad = jax.value_and_grad(twin)(jax.numpy.asarray(flat))
    assert float(value) == pytest.approx(float(ours.detach()), rel=1e-10)
    np.testing.assert_allclose(np.asarray(jax_grad), torch.cat([g.reshape(-1) for g in grad]).numpy(),
                               rtol=1e-8, atol=1e-9)


@pytest.fixture(scope="module")
def votes_600():
    return simulate_votes(n=600, k=3, accs=(0.6, 0.7, 0.8, 0.75))


def test_numpyro_nuts_gives_pyros_posterior(votes_600):
    truth, votes = votes_600
    kw = dict(model="dawid_skene", method="nuts", num_chains=2, num_samples=300, warmup_steps=200, progress=False,
              num_workers=1)
    jx = fit_posterior(votes, backend="numpyro", **kw)
    pyro_ = fit_posterior(votes, **kw)
    assert jx.draws["theta"].shape == pyro_.draws["theta"].shape == (2, 300, 3, 4, 3)
    assert jx.info["backend"] == "numpyro" and pyro_.info["backend"] == "pyro" and "jax_obs" not in jx.info
    # NumPyro samples the log-ratio coordinates by default, Pyro the Laplace-whitened ones
    assert jx.info["preconditioned"] is False and pyro_.info["preconditioned"] is True
    assert jx.sample_stats["tree_size"].shape == (2, 300) and jx.sample_stats["tree_size"].min() >= 1
    # two samplers of one posterior: means agree to within a few Monte Carlo errors
    sd = jx.draws["theta"].std((0, 1))
    assert (np.abs(jx.draws["theta"].mean((0, 1)) - pyro_.draws["theta"].mean((0, 1))) < 0.5 * sd).all()
    assert np.abs(jx.item_probs - pyro_.item_probs).max() < 0.05
    assert (jx.labels == truth).mean() > 0.8 and jx.diagnostics(warn=False)["max_rhat"] < 1.05
    again = fit_posterior(votes, backend="numpyro", **kw)                 # seeded: draw for draw
    np.testing.assert_array_equal(again.draws["theta"], jx.draws["theta"])


def test_numpyro_thinning_keeps_the_last_of_each_t_transitions(votes_600):
    _, votes = votes_600
    kw = dict(model="dawid_skene", method="nuts", num_chains=1, warmup_steps=50, progress=False, num_workers=1,
              backend="numpyro", draw_labels=False)
    every = fit_posterior(votes, num_samples=30, **kw)
    thinned = fit_posterior(votes, num_samples=10, thinning=3, **kw)
    np.testing.assert_allclose(thinned.draws["theta"], every.draws["theta"][:, 2::3], rtol=1e-12)
    np.testing.assert_array_equal(thinned.sample_stats["tree_size"],
                                  every.sample_stats["tree_size"].reshape(1, 10, 3).sum(-1))


def test_numpyro_backend_errors_are_clear(votes_600):
    _, votes = votes_600
    with pytest.raises(InvalidInputError, match="JAX twin.*'one_coin'.*dawid_skene"):
        fit_posterior(votes, model="one_coin", method="nuts", backend="numpyro")
    with pytest.raises(InvalidInputError, match="step_size_jitter"):
        fit_posterior(votes, method="nuts", backend="numpyro", step_size_jitter=0.5)
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        fit_posterior(votes, method="nuts", backend="stan")


def test_whitened_numpyro_chains_leave_the_callers_jax_settings(votes_600):
    """``precondition=True``: NumPyro in Pyro's whitened coordinates, the same posterior; the
    chain ran in this process (``num_workers=1``) and left JAX's float64 switch as it was."""
    truth, votes = votes_600
    x64 = bool(jax.config.jax_enable_x64)
    kw = dict(model="dawid_skene", method="nuts", num_chains=1, num_samples=200, warmup_steps=150, progress=False,
              num_workers=1, backend="numpyro")
    whitened = fit_posterior(votes, precondition=True, **kw)
    plain = fit_posterior(votes, **kw)
    assert bool(jax.config.jax_enable_x64) == x64
    assert whitened.info["preconditioned"] is True and plain.info["preconditioned"] is False
    sd = plain.draws["theta"].std((0, 1))
    assert (np.abs(whitened.draws["theta"].mean((0, 1)) - plain.draws["theta"].mean((0, 1))) < 0.5 * sd).all()
    assert (whitened.labels == truth).mean() > 0.8


def test_numpyro_samples_ebcc(votes_600):
    truth, votes = votes_600
    post = fit_posterior(votes, model="ebcc", method="nuts", backend="numpyro", num_subtypes=2, num_chains=1,
                         num_samples=100, warmup_steps=100, progress=False, num_workers=1)
    assert post.draws["theta"].shape == (1, 100, 3, 2, 4, 3) and post.draws["nu"].shape[:2] == (1, 100)
    assert post.true_class.shape == (1, 100, 600) and post.true_class.max() < 3     # subtypes reported as classes
    assert (post.labels == truth).mean() > 0.8


def test_numpyro_samples_the_hierarchical_model(votes_600):
    """A model that is not conjugate: its twin writes its own log prior (κ is a positive site)."""
    truth, votes = votes_600
    post = fit_posterior(votes, model="hierarchical", method="nuts", backend="numpyro", num_chains=1,
                         num_samples=100, warmup_steps=100, progress=False, num_workers=1)
    assert post.draws["kappa"].shape == (1, 100) and (post.draws["kappa"] > 0).all()
    assert (post.labels == truth).mean() > 0.8
