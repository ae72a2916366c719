"""crowd-kit-style estimators: same labels as crowd-kit on a fixture, attributes, new tasks."""
import numpy as np
import pandas as pd
import pytest

from bayes_w2s.aggregation import EBCC, DawidSkene, LogisticT, LogisticTAnchored, LogisticTHetero, OneCoinDawidSkene
from bayes_w2s import WeakLabels
from bayes_w2s.errors import InvalidInputError

from .conftest import simulate_soft
from .test_engine import sparse_crowd


@pytest.fixture(scope="module")
def long_df():
    truth, votes = sparse_crowd(n=500, workers=30, k=3, per_item=5, seed=1)
    rows = [(f"t{i}", f"w{w}", ["a", "b", "c"][votes[i, w]]) for i in range(votes.shape[0])
            for w in range(votes.shape[1]) if votes[i, w] >= 0]
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), truth


def test_dawid_skene_matches_crowd_kit(long_df):
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    df, _ = long_df
    ours = DawidSkene(method="em", beta_diag=1.0, beta_off=1.0).fit(df)    # flat prior: the MLE crowd-kit fits
    theirs = crowdkit.DawidSkene(n_iter=500, tol=1e-10).fit(df)
    pd.testing.assert_series_equal(ours.labels_.sort_index(), theirs.labels_.sort_index(), check_names=False)
    # crowd-kit floors probabilities at 1e-10 inside its EM, so values agree to ~1e-2, not exactly
    probas = theirs.probas_.sort_index()[ours.probas_.columns]
    np.testing.assert_allclose(ours.probas_.sort_index().to_numpy(), probas.to_numpy(), atol=0.02)
    np.testing.assert_allclose(ours.priors_.sort_index(), theirs.priors_.sort_index(), atol=1e-3)
    errors = theirs.errors_.loc[ours.errors_.index, ours.errors_.columns]
    np.testing.assert_allclose(ours.errors_.to_numpy(), errors.to_numpy(), atol=0.02)


@pytest.mark.parametrize("cls", [DawidSkene, OneCoinDawidSkene, EBCC])
def test_fitted_attributes_and_predictions_for_new_tasks(long_df, cls):
    df, truth = long_df
    est = cls().fit(df)
    assert list(est.probas_.columns) == ["a", "b", "c"] and est.probas_.index.name == "task"
    np.testing.assert_allclose(est.probas_.sum(1), 1)
    assert est.labels_.loc["t0"] == est.probas_.loc["t0"].idxmax()
    assert est.errors_.shape == (30 * 3, 3) and np.allclose(est.errors_.groupby(level="worker").sum(), 1)
    assert est.confusions_.shape == (30, 3, 3) and len(est.loss_history_) > 1
    assert est.priors_.sum() == pytest.approx(1)
    head = df[df["task"].isin(["t0", "t1", "t2"])]
    np.testing.assert_allclose(est.predict_proba(head).to_numpy(), est.probas_.loc[["t0", "t1", "t2"]].to_numpy(),
                               atol=1e-8)
    assert est.fit_predict(df).equals(est.labels_)
    one_worker = df[df["worker"] == df["worker"].iloc[0]].head(2)          # a new batch from a single worker
    np.testing.assert_allclose(est.predict_proba(one_worker).to_numpy(),
                               est.posterior_.predict_proba(one_worker), atol=1e-12)


def test_soft_label_estimator_and_errors():
    _, wl = simulate_soft(n=300)
    est = LogisticT().fit(wl)
    assert est.probas_.shape == (300, 3) and repr(est) == "LogisticT()"
    with pytest.raises(InvalidInputError, match="not fitted"):
        DawidSkene().predict_proba(pd.DataFrame({"task": [1], "worker": ["a"], "label": [0]}))


@pytest.mark.parametrize("cls", [DawidSkene, LogisticT, LogisticTHetero, LogisticTAnchored])
def test_new_tasks_with_workers_in_another_order_get_the_same_posterior(cls):
    """The soft models read ``lm.soft``, which stayed in the caller's worker order while the
    votes were aligned: the same data with its workers listed c, a, b got other posteriors."""
    _, wl = simulate_soft(n=200)
    est = cls().fit(wl)
    perm = [2, 0, 1]
    shuffled = WeakLabels(wl.probs[:, perm], [wl.model_names[j] for j in perm], wl.label_names)
    np.testing.assert_allclose(est.predict_proba(shuffled).to_numpy(), est.probas_.to_numpy(), atol=1e-8)
    with pytest.raises(InvalidInputError, match="every fitted worker's probabilities"):
        LogisticT().fit(wl).predict_proba(shuffled.select_models(shuffled.model_names[:2]))


def test_a_fit_that_collapses_away_from_the_votes_is_warned_about():
    """Sparse annotators (1–2 labels per task, ~7 per worker): mean-field VB under the default
    prior runs the class prior to one class and mislabels most tasks; EM on the same votes does not."""
    rng = np.random.default_rng(0)
    truth, rows = rng.integers(0, 3, 300), []
    for i in range(300):
        for j, w in enumerate(rng.choice(60, size=2, replace=False)):
            label = truth[i] if rng.random() < 0.7 else rng.integers(0, 3)
            if j == 0 or i % 2 == 0:
                rows.append((f"task{i}", f"w{w}", f"c{label}"))
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    with pytest.warns(RuntimeWarning, match="dawid_skene/vb: .* it has probably collapsed"):
        DawidSkene(method="vb").fit(df)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.filterwarnings("ignore", ".*get probability ≈ 0", RuntimeWarning)   # MAP-EM's zeros: no collapse
        DawidSkene(method="em").fit(df)


def test_scikit_learn_can_clone_and_set_params(long_df):
    base = pytest.importorskip("sklearn.base")
    est = DawidSkene(method="em", beta_diag=3.0)
    copy = base.clone(est)
    assert copy is not est and copy.get_params() == {"method": "em", "temperature": 1.0, "beta_diag": 3.0}
    copy.set_params(beta_diag=1.0, method="vb")
    assert repr(copy) == "DawidSkene(method='vb', beta_diag=1.0)" and est.get_params()["beta_diag"] == 3.0
    df, _ = long_df
    assert not hasattr(copy, "posterior_") and copy.fit(df).probas_.shape[0] == df["task"].nunique()


def test_one_class_given_by_everyone_names_the_way_out():
    df = pd.DataFrame({"task": ["t1", "t1", "t2"], "worker": ["a", "b", "a"], "label": ["pos", "pos", "pos"]})
    with pytest.raises(InvalidInputError, match=r"got 1 \(\['pos'\]\).*label_names="):
        DawidSkene().fit(df)
    assert list(DawidSkene(label_names=["neg", "pos"]).fit_predict(df)) == ["pos", "pos"]
