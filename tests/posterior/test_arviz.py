"""ArviZ export, diagnostics and LOO comparison."""
import dataclasses

import arviz as az
import numpy as np
import pytest

from bayes_w2s import compare_posteriors, fit_posterior
from bayes_w2s.errors import InvalidInputError

from .conftest import simulate_soft, simulate_votes


@pytest.fixture(scope="module")
def fits():
    _, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    kw = dict(method="nuts", num_chains=2, num_samples=150, warmup_steps=150, num_workers=1, progress=False)
    return {m: fit_posterior(votes, model=m, **kw) for m in ("dawid_skene", "one_coin")}


def test_inference_data_groups_and_dims(fits):
    post = fits["dawid_skene"]
    post.model_names[:] = ["tiny", "small", "base"]
    idata = post.to_inference_data()
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(idata.groups())
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "weak_model", "true_class", "weak_label")
    assert list(theta.coords["weak_model"].values) == ["tiny", "small", "base"]
    assert idata.posterior["true_class_draw"].shape == (2, 150, 300)
    assert idata.log_likelihood["y"].shape == (2, 150, 300)
    assert idata.sample_stats["diverging"].dtype == bool
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)


def test_diagnostics_and_rhat_warning(fits):
    post = fits["one_coin"]
    diag = post.diagnostics()
    assert set(diag) >= {"max_rhat", "min_ess_bulk", "divergences"} and diag["max_rhat"] < 1.1
    # two chains in different places: R-hat must flag it
    draws = {k: v.copy() for k, v in post.draws.items()}
    draws["accuracy"][1] = np.clip(draws["accuracy"][1] - 0.2, 0.01, 0.99)
    broken = dataclasses.replace(post, draws=draws)
    with pytest.warns(RuntimeWarning, match="independent draws of this size would reach"):
        diag = broken.diagnostics()
    assert diag["max_rhat"] > 1.01 and 1.0 < diag["iid_rhat_floor"] < diag["max_rhat"]


def test_iid_rhat_floor_grows_with_entries_and_shrinks_with_draws():
    from bayes_w2s.posterior.base import iid_rhat_floor
    few, many = iid_rhat_floor(4, 500, 10), iid_rhat_floor(4, 500, 1600)
    assert 1.0 < few < many < 1.01 < iid_rhat_floor(2, 50, 1600)
    assert iid_rhat_floor(4, 2000, 1600) < many
    assert iid_rhat_floor(4, 500, 1600) == many           # seeded
    assert iid_rhat_floor(2, 100, 30_000) > iid_rhat_floor(2, 100, 30)   # in blocks of entries


def test_compare_posteriors_ranks_by_loo(fits):
    table = compare_posteriors(list(fits.values()))
    assert list(table.index) == sorted(table.index, key=lambda n: table.loc[n, "rank"])
    assert set(table.index) == {"dawid_skene/nuts", "one_coin/nuts"}


def test_compare_posteriors_errors(fits):
    _, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match="needs posterior draws"):
        compare_posteriors([fits["dawid_skene"], fit_posterior(votes)])
    with pytest.raises(InvalidInputError, match="at least two"):
        compare_posteriors([fits["dawid_skene"]])
    other = dataclasses.replace(fits["one_coin"], observed=fits["one_coin"].observed[:10])
    with pytest.raises(InvalidInputError, match="same observations"):
        compare_posteriors([fits["dawid_skene"], other])
    pair = [fits["dawid_skene"], fits["one_coin"]]
    with pytest.raises(InvalidInputError, match="1 names for 2 posteriors"):   # zip dropped the second
        compare_posteriors(pair, names=["only_one"])
    with pytest.raises(InvalidInputError, match="compares classification posteriors.*1: str"):
        compare_posteriors([fits["dawid_skene"], "one_coin"])
    with pytest.raises(InvalidInputError, match="ic must be 'loo' or 'waic'"):
        compare_posteriors(pair, ic="aic")


def test_em_point_fit_exports_one_draw():
    _, votes = simulate_votes(n=200, k=2, accs=(0.7, 0.8, 0.75))
    idata = fit_posterior(votes).to_inference_data()
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 1
    assert fit_posterior(votes).diagnostics()["converged"]


@pytest.mark.parametrize("bad", [dict(chains=1), dict(draws=3), dict(entries=0), dict(chains=2.0), dict(draws=True),
                                 dict(seed=-1)])
def test_iid_rhat_floor_rejects_impossible_sizes(bad):
    from bayes_w2s.errors import InvalidInputError
    from bayes_w2s.posterior.base import iid_rhat_floor
    with pytest.raises(InvalidInputError, match=f"{next(iter(bad))} must be an integer"):
        iid_rhat_floor(**{"chains": 2, "draws": 100, "entries": 10, **bad})


def test_chains_that_never_moved_are_not_converged(fits):
    """R-hat is NaN where every chain is constant; chains stuck at different values must
    read as not converged (a NaN once hid behind a finite R-hat elsewhere)."""
    post = fits["one_coin"]
    draws = {k: v.copy() for k, v in post.draws.items()}
    draws["accuracy"][0], draws["accuracy"][1] = 0.6, 0.8
    stuck = dataclasses.replace(post, draws=draws)
    with pytest.warns(RuntimeWarning, match="R-hat"):
        diag = stuck.diagnostics()
    assert diag["max_rhat"] == float("inf") and not diag["converged"]


def test_logistic_t_sites_carry_weak_model_and_log_ratio_coordinates():
    wl = simulate_soft(n=60)[1]
    idata = fit_posterior(wl, model="logistic_t").to_inference_data()
    classes = [str(c) for c in wl.label_names]
    expected = [f"{m}:{c}/{classes[-1]}" for m in wl.model_names for c in classes[:-1]]
    assert list(idata.posterior["mu"].coords["log_ratio_coord"].values) == expected
    assert list(idata.posterior["omega"].coords["log_ratio_coord_"].values) == expected
