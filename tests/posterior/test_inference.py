"""EM, SVI and NUTS on simulated weak labels with known truth."""
import warnings

import numpy as np
import pytest

from bayes_w2s import fit_posterior

from .conftest import simulate_soft, simulate_votes

#: EM's closed-form MAP vs SVI's AutoDelta optimum after 600 Adam steps
MAP_TOL = 2e-3


@pytest.mark.parametrize("model", ["dawid_skene", "one_coin"])
def test_em_reaches_the_same_map_as_pyro_svi(model):
    _, votes = simulate_votes(n=1000, k=3, accs=(0.6, 0.7, 0.8))
    em = fit_posterior(votes, model=model, method="em")
    svi = fit_posterior(votes, model=model, method="svi", guide="delta", steps=600, progress=False)
    assert np.abs(em.confusion - svi.confusion).max() < MAP_TOL
    assert np.abs(em.class_prior - svi.class_prior).max() < MAP_TOL
    assert np.abs(em.item_probs - svi.item_probs).max() < 5 * MAP_TOL


@pytest.mark.parametrize("model", ["dawid_skene", "one_coin", "soft"])
def test_em_objective_never_decreases(model):
    truth, labels = simulate_soft(n=600) if model == "soft" else simulate_votes(n=600)
    post = fit_posterior(labels, model=model, method="em")
    assert post.converged and np.all(np.diff(post.history) > -1e-6 * np.abs(post.history[-1]))
    assert (post.labels == truth).mean() > 0.8


def test_soft_label_model_uses_confidence():
    """When confidences are informative, the soft-label posterior beats vote-based DS."""
    truth, wl = simulate_soft(n=1500, strengths=(0.8, 1.0, 1.2), temps=(1.0, 1.0, 1.0))
    soft = fit_posterior(wl, model="soft", method="em")
    votes = fit_posterior(wl, model="dawid_skene", method="em")
    assert (soft.labels == truth).mean() > (votes.labels == truth).mean() + 0.01
    assert soft.confusion.shape == (3, 3, 3) and np.allclose(soft.confusion.sum(-1), 1)


def test_svi_subsampled_and_mean_field():
    truth, votes = simulate_votes(n=3000, k=3, accs=(0.6, 0.7, 0.8))
    post = fit_posterior(votes, model="dawid_skene", method="svi", guide="normal", subsample_size=500,
                         steps=400, num_draws=50, progress=False)
    assert (post.labels == truth).mean() > 0.8
    assert post.confusion_sd is not None and (post.confusion_sd > 0).all()
    assert post.log_lik.shape == (1, 50, 3000)


def test_hierarchical_svi_runs_and_recovers():
    truth, votes = simulate_votes(n=800, k=3, accs=(0.6, 0.7, 0.8, 0.75))
    post = fit_posterior(votes, model="hierarchical", method="svi", steps=300, progress=False)
    assert (post.labels == truth).mean() > 0.85
    assert np.all(np.einsum("mkk->mk", post.confusion) > 0.5)


@pytest.mark.slow
def test_nuts_does_not_switch_labels(votes_2000x5):
    """The issue's case: 2,000 items, 5 weak models of accuracy 0.55–0.8, 4 chains × 500 draws."""
    truth, votes = votes_2000x5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)       # an R-hat warning fails the test
        post = fit_posterior(votes, model="dawid_skene", method="nuts", num_chains=4, num_samples=500,
                             warmup_steps=300, target_accept_prob=0.65, progress=False)
        diag = post.diagnostics()
    diagonals = np.einsum("mkk->mk", post.confusion)
    assert np.all(diagonals > 0.5), diagonals
    assert diag["max_rhat"] <= 1.01 and diag["min_ess_bulk"] > 400 and diag["divergences"] == 0
    assert np.allclose(diagonals.mean(1), [0.55, 0.6, 0.7, 0.75, 0.8], atol=0.05)
    # item labels drawn by infer_discrete agree with the Rao-Blackwellised item posterior
    assert post.true_class.shape == (4, 500, 2000)
    freq = np.stack([(post.true_class == k).mean((0, 1)) for k in range(4)], 1)
    assert np.abs(freq - post.item_probs).max() < 0.12
    assert (post.labels == truth).mean() > 0.88


def test_warns_when_a_posterior_overrules_unanimous_votes():
    """The weak models' own posteriors overrule 0–1.8% of the votes all weak models agree on, on
    this project's real weak labels; a fit that overrules more has usually collapsed (the
    Dirichlet soft-label model: 3.7–6.6%). Gold items, whose class is observed, may overrule."""
    from bayes_w2s.posterior import warn_if_far_from_vote
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    votes = np.zeros((400, 3))
    votes[np.arange(400), labels] = 3                      # three weak models, all agreeing
    probs = np.eye(3)[labels]
    flipped = probs.copy()
    flipped[:40] = np.roll(probs[:40], 1, axis=-1)         # 10% overruled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_far_from_vote(probs, votes, "agrees")      # silent
        two_percent = probs.copy()
        two_percent[:8] = flipped[:8]
        warn_if_far_from_vote(two_percent, votes, "two percent")
        warn_if_far_from_vote(flipped, votes, "gold", skip=np.arange(400) < 40)   # the overruled items are gold
        warn_if_far_from_vote(flipped[:30], votes[:30], "too few items", min_items=31)
    with pytest.warns(RuntimeWarning, match=r"ten percent: the posterior overrules 10\.0% of the 400 items whose "
                                            r"votes are unanimous \(40; more than 3%\)"):
        warn_if_far_from_vote(flipped, votes, "ten percent")


def test_soft_label_fits_get_the_collapse_check():
    """The Dirichlet soft-label model on a 5-class set where one class holds 70% of the items
    (``experiments/probe_imbalanced_soft.py``): it splits that class by patterns of the small
    probabilities, and ``fit_posterior`` says so."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
    from probe_imbalanced_soft import simulate
    labels, truth = simulate(5, 0.7, 1000, seed=0)
    with pytest.warns(RuntimeWarning, match=r"soft/em: the posterior .*gives the classes shares .*logistic_t"):
        post = fit_posterior(labels, "soft", "em")
    assert (post.item_probs.argmax(-1) == truth).mean() < 0.7   # the vote: 92.5% on 2,000 such items
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.filterwarnings("ignore", ".*get probability ≈ 0", RuntimeWarning)   # MAP-EM's zeros: no collapse
        fit_posterior(labels, "dawid_skene", "em")


def test_warns_when_a_point_fit_rules_classes_out():
    """MAP-EM under Dawid–Skene's default prior puts confusion entries at ≈ 0 on 100 items, and
    16 items get p(true class) < 1e-6; VB keeps every entry positive and warns of nothing."""
    import re
    truth, votes = simulate_votes(n=100, k=3, accs=(0.8, 0.7, 0.6), seed=0)
    with pytest.warns(RuntimeWarning, match=re.escape("dawid_skene/em: 29 item(s) (29.0%) get probability ≈ 0 for a "
                                                      "class a weak model names: 2 of the fit's confusion entries")):
        post = fit_posterior(votes, progress=False)
    assert (post.item_probs[np.arange(100), truth] < 1e-6).sum() == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_posterior(votes, method="vb", progress=False)
        fit_posterior(votes, method="vb", num_draws=1, progress=False)           # one draw is not a point fit
    with warnings.catch_warnings(record=True) as caught:   # (collapse warnings aside)
        warnings.simplefilter("always")
        fit_posterior(votes, "ebcc", "vb", num_draws=1, beta_off=0.01, progress=False)   # θ [K, L, M, K]: crashed
        fit_posterior(votes, temperature=100, progress=False)   # θ^(1/T) is no longer ≈ 0
    assert not any("≈ 0" in str(w.message) for w in caught)


@pytest.mark.parametrize("model", ["dawid_skene", "one_coin", "ebcc"])
def test_vb_reports_the_exact_posterior_means_not_an_average_of_draws(model):
    """q(globals) is a product of Dirichlets: its means are a / Σa. They were the mean of 200
    draws, which moved with ``seed`` while the item posterior did not."""
    _, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    a, b = fit_posterior(votes, model=model, method="vb"), fit_posterior(votes, model=model, method="vb", seed=5)
    np.testing.assert_array_equal(a.item_probs, b.item_probs)
    np.testing.assert_allclose(a.class_prior, b.class_prior, rtol=1e-12)
    np.testing.assert_allclose(a.confusion, b.confusion, rtol=1e-12)
    if model == "dawid_skene":
        conc = a.info["concentration"]
        np.testing.assert_allclose(a.class_prior, conc["pi"] / conc["pi"].sum())
        np.testing.assert_allclose(a.confusion, (conc["theta"] / conc["theta"].sum(-1, keepdims=True)).swapaxes(0, 1))


def test_a_temperature_is_not_diagnosed_as_a_collapsed_fit():
    """The collapse and rule-out checks read the fit at T = 1: at T = 1e6 the item posterior is
    the class prior and at T = 1e-6 every confusion entry below 1 is ≈ 0, both as asked."""
    _, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_posterior(votes, method="vb")
        for temperature in (1e-6, 1e6):
            fit_posterior(votes, method="vb", temperature=temperature)
