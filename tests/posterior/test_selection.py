import numpy as np
import pytest

from bayes_w2s import WeakLabels
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.posterior.calibration import log_loss
from bayes_w2s.posterior.selection import choose_model, parse_candidate

from .conftest import simulate_votes


def class_dependent_votes(n=3000, k=3, seed=0):
    """Weak model m is nearly always right on class m and sends half of the other classes
    to class m: one accuracy per model (one-coin) cannot describe it, a confusion matrix
    per model (Dawid–Skene) can."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    votes = np.empty((n, k), dtype=int)
    for m in range(k):
        to_m = (truth != m) & (rng.random(n) < 0.5)
        votes[:, m] = np.where(to_m, m, truth)
    return truth, votes


def test_the_gold_slice_chooses_the_model_that_describes_the_weak_models():
    truth, votes = class_dependent_votes()
    gold = np.arange(300)
    search = choose_model(votes, gold, truth[gold], ["one_coin", "dawid_skene"], progress=False)
    assert search.chosen == "dawid_skene"
    rest = np.arange(300, len(truth))
    accuracy = {c: (p[rest].argmax(-1) == truth[rest]).mean() for c, p in search.item_probs.items()}
    assert accuracy["dawid_skene"] > accuracy["one_coin"] + 0.05   # the choice is also the more accurate one
    scores = search.scores
    assert search.score == "brier" and scores.loc["dawid_skene", "gold_brier"] < scores.loc["one_coin", "gold_brier"]
    assert scores.loc["dawid_skene", "gold_log_loss"] < scores.loc["one_coin", "gold_log_loss"]
    assert (scores["gold_log_loss"] <= scores["plain_log_loss"] + 1e-12).all()   # T = 1 is always a candidate


def test_chosen_targets_are_the_fit_at_the_chosen_temperature_and_never_saw_the_gold_classes():
    truth, votes = simulate_votes(n=800, k=3, accs=(0.6, 0.7, 0.8))
    gold = np.arange(100)
    search = choose_model(votes, gold, truth[gold], ["dawid_skene", "one_coin@vb"], progress=False)
    for spec, post in search.fits.items():
        t = search.scores.loc[spec, "temperature"]
        np.testing.assert_allclose(search.item_probs[spec], post.predict_proba(votes, temperature=t), atol=1e-10)
        assert post.info.get("gold_items", 0) == 0 and not np.isclose(post.item_probs[gold].max(-1), 1).all()
        gold_probs = search.item_probs[spec][gold]
        assert search.scores.loc[spec, "gold_log_loss"] == pytest.approx(log_loss(gold_probs, truth[gold]))
        assert search.scores.loc[spec, "gold_brier"] == pytest.approx(
            ((gold_probs - np.eye(3)[truth[gold]]) ** 2).sum(1).mean())
    flipped = choose_model(votes, gold, (truth[gold] + 1) % 3, ["dawid_skene"], progress=False)
    assert flipped.scores.loc["dawid_skene", "gold_log_loss"] > search.scores.loc["dawid_skene", "gold_log_loss"]


def test_a_candidate_that_cannot_read_the_labels_is_reported_not_chosen():
    truth, votes = simulate_votes(n=400, k=3, accs=(0.6, 0.7, 0.8))
    search = choose_model(votes, np.arange(50), truth[:50], ["one_coin:soft_votes=3", "dawid_skene"],
                          progress=False)
    assert search.chosen == "dawid_skene"
    assert "probabilities" in search.scores.loc["one_coin:soft_votes=3", "error"]
    assert np.isnan(search.scores.loc["one_coin:soft_votes=3", "gold_log_loss"])
    with pytest.raises(InvalidInputError, match="no posterior candidate could be fitted"):
        choose_model(votes, np.arange(50), truth[:50], ["one_coin:soft_votes=3"], progress=False)


def test_choose_model_reads_weak_probabilities_too():
    rng = np.random.default_rng(1)
    truth, votes = simulate_votes(n=600, k=3, accs=(0.6, 0.7, 0.8))
    probs = np.full((600, 3, 3), 0.1) + 0.7 * np.eye(3)[votes] + 0.1 * rng.random((600, 3, 3))
    labels = WeakLabels(probs / probs.sum(-1, keepdims=True), ["a", "b", "c"], ["x", "y", "z"])
    search = choose_model(labels, np.arange(60), truth[:60], progress=False)   # the default candidates
    assert list(search.scores.index) == ["dawid_skene", "one_coin:soft_votes=3", "logistic_t_pooled",
                                         "logistic_t_anchored"]
    assert not search.scores["error"].any() and search.chosen in search.fits


@pytest.mark.parametrize("candidates, gold_index, gold_labels, match", [
    (["nope"], [0], [0], "unknown classification model 'nope'"),
    (["word_reliability"], [0], [0], "unknown classification model"),
    (["dawid_skene@nuts2"], [0], [0], "has no method 'nuts2'"),
    (["one_coin:soft_votes"], [0], [0], "is not name=value"),
    (["one_coin:soft_votes=x"], [0], [0], "soft_votes must be"),
    (["one_coin:soft_votes=3,,"], [0], [0], "'' is not name=value"),
    (["one_coin:soft_votes=(3)"], [0], [0], "'soft_votes=\\(3\\)' is not name=value"),
    (["logistic_t@"], [0], [0], "'' is not a method name"),
    (["@em"], [0], [0], "'' is not a model name"),
    (["dawid_skene:"], [0], [0], "nothing after ':'"),
    (["dawid_skene:prior_counts=1"], [0], [0], "prior_counts is an array"),
    (["one_coin:soft_votes=3", "one_coin:soft_votes=3.0"], [0], [0], "repeat a fit"),
    (["one_coin:soft_votes=0"], [0], [0], "soft_votes must be"),
    (["dawid_skene:bogus=1"], [0], [0], "no prior or em setting named"),
    (["dawid_skene", "dawid_skene"], [0], [0], "repeat"),
    (["dawid_skene", "dawid_skene@em"], [0], [0], "repeat a fit"),
    (["dawid_skene:beta_diag=2,beta_diag=3"], [0], [0], "sets 'beta_diag' twice"),
    (["dawid_skene:beta_diag=-1"], [0], [0], "posterior candidate 'dawid_skene:beta_diag=-1': .*beta_diag"),
    (["one_coin:soft_votes=nan"], [0], [0], "soft_votes must be"),
    (["dawid_skene"], [0, 0], [1, 1], "more than once"),
    (["dawid_skene"], np.zeros(50, bool), [], "needs gold items"),
    ([], [0], [0], "non-empty list"),
    ("dawid_skene", [0], [0], "non-empty list"),
    (["dawid_skene"], [], [], "needs gold items"),
    (["dawid_skene"], [0, 1], [0], "needs gold items"),
    (["dawid_skene"], [5000], [0], "out of range"),
    (["dawid_skene"], [0], [7], "out of range"),
    (["dawid_skene"], np.eye(1, 50, dtype=bool)[0], [1], "a mask of 50"),
    (["dawid_skene"], [0], ["x"], "non-negative integers"),
])
def test_choose_model_errors(candidates, gold_index, gold_labels, match):
    truth, votes = simulate_votes(n=200, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match=match):
        choose_model(votes, np.array(gold_index), np.array(gold_labels), candidates, progress=False)


def test_parse_candidate():
    assert parse_candidate("one_coin@vb:soft_votes=3,beta_diag=2.5") == ("one_coin", "vb",
                                                                         {"soft_votes": 3, "beta_diag": 2.5})
    assert parse_candidate("dawid_skene") == ("dawid_skene", None, {})
    assert parse_candidate("ebcc@nuts:backend=numpyro,progress=false,tol=1e-6") == (
        "ebcc", "nuts", {"backend": "numpyro", "progress": False, "tol": 1e-6})


@pytest.mark.parametrize("kwargs, match", [
    ({"gold": {0: 1}}, "as gold= or as gold_index / gold_labels, not both"),
    ({"temperature": 0}, "temperature must be a finite number > 0"),
    ({"temperature": True}, "temperature must be a finite number > 0"),
    ({"temperature": "auto"}, "temperature must be a finite number > 0"),
    ({"beta_diag": 3.0}, r"candidate 'dawid_skene:beta_diag=2' sets \['beta_diag'\] and so do the keyword"),
])
def test_choose_model_keeps_gold_out_of_the_fits_and_checks_its_temperature(kwargs, match):
    truth, votes = simulate_votes(n=200, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match=match):
        choose_model(votes, np.arange(20), truth[:20], ["dawid_skene:beta_diag=2"], progress=False, **kwargs)


def test_a_fixed_temperature_scores_every_candidate_there():
    truth, votes = simulate_votes(n=600, k=3, accs=(0.6, 0.7, 0.8))
    search = choose_model(votes, np.arange(80), truth[:80], ["dawid_skene", "one_coin"], temperature=2.0,
                          progress=False)
    assert (search.scores["temperature"] == 2.0).all() and search.temperature == 2.0
    for spec, post in search.fits.items():
        np.testing.assert_allclose(search.item_probs[spec], post.predict_proba(votes, temperature=2.0))
    assert search.scores.loc[search.chosen, "dse"] == 0
    assert (search.scores["dse"] >= 0).all()


def test_a_candidate_whose_fit_breaks_down_is_reported_and_the_search_goes_on(monkeypatch):
    import bayes_w2s.posterior as posterior
    truth, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    real = posterior.fit_posterior

    def broken_one_coin(labels, model, method=None, **kw):
        if model == "one_coin":
            raise RuntimeError("NaN in the guide")
        return real(labels, model, method, **kw)

    monkeypatch.setattr(posterior, "fit_posterior", broken_one_coin)
    search = choose_model(votes, np.arange(40), truth[:40], ["one_coin", "dawid_skene"], progress=False)
    assert search.chosen == "dawid_skene"
    assert search.scores.loc["one_coin", "error"] == "RuntimeError: NaN in the guide"


def test_each_score_chooses_its_own_minimum_and_only_known_scores_are_taken():
    truth, votes = simulate_votes(n=600, k=3, accs=(0.55, 0.7, 0.8), seed=3)
    candidates = ["dawid_skene", "one_coin", "dawid_skene:beta_diag=8", "one_coin@vb"]
    for score, column in [("brier", "gold_brier"), ("log", "gold_log_loss")]:
        search = choose_model(votes, np.arange(60), truth[:60], candidates, score=score, progress=False)
        assert search.score == score and search.chosen == search.scores[column].idxmin()
    with pytest.raises(InvalidInputError, match=r"score must be one of \['brier', 'log'\], got 'nll'"):
        choose_model(votes, np.arange(60), truth[:60], candidates, score="nll", progress=False)


def test_a_zero_probability_for_a_gold_class_weighs_on_the_log_score_not_on_brier():
    """What ATIS showed: a MAP class prior of exactly 0 for a rare class. Among two targets
    equally right, the log score charges 27.6 nats for each gold item of that class."""
    from bayes_w2s.posterior.selection import SCORES
    labels = np.array([0, 0, 1, 2])
    sharp = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.6, 0.4, 0.0]])
    soft = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.5, 0.3, 0.2]])
    assert SCORES["log"](sharp, labels).mean() > SCORES["log"](soft, labels).mean() + 5
    assert SCORES["brier"](sharp, labels).mean() < SCORES["brier"](soft, labels).mean()
    assert SCORES["brier"](sharp, labels).max() <= 2


def test_gold_can_name_items_as_fit_posterior_does_even_in_a_crowd_frame():
    import pandas as pd
    truth, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8), seed=5)
    tasks = [f"task{i:03d}" for i in range(300)][::-1]   # the frame's order is not the fit's (sorted) order
    frame = pd.DataFrame([(tasks[i], f"w{m}", votes[i, m]) for i in range(300) for m in range(3)],
                         columns=["task", "worker", "label"]).sample(frac=1, random_state=0)
    gold = {tasks[i]: int(truth[i]) for i in range(40)}
    by_name = choose_model(frame, gold=gold, candidates=["dawid_skene", "one_coin"], progress=False)
    ids = by_name.fits["dawid_skene"].item_ids
    position = {t: j for j, t in enumerate(ids)}
    index = np.array([position[t] for t in gold])
    by_position = choose_model(frame, index, np.array(list(gold.values())), ["dawid_skene", "one_coin"],
                               progress=False)
    pd.testing.assert_frame_equal(by_name.scores.drop(columns="seconds"), by_position.scores.drop(columns="seconds"))
    assert ids != tasks[:300] and by_name.scores["gold_accuracy"].min() > 60
    with pytest.raises(InvalidInputError, match="needs the gold items"):
        choose_model(frame, candidates=["dawid_skene"], progress=False)
    with pytest.raises(InvalidInputError, match="gold names none"):
        choose_model(frame, gold={}, candidates=["dawid_skene"], progress=False)


def test_candidates_fitted_in_parallel_processes_give_the_same_search():
    rng = np.random.default_rng(2)
    n, k = 2500, 20   # 1.2 MB of probabilities: over joblib's memmapping threshold
    truth = rng.integers(0, k, n)
    votes = np.where(rng.random((n, 3)) < [[0.6, 0.7, 0.8]], truth[:, None], rng.integers(0, k, (n, 3)))
    probs = np.full((n, 3, k), 0.02) + 0.6 * np.eye(k)[votes] + 0.02 * rng.random((n, 3, k))
    labels = WeakLabels(probs / probs.sum(-1, keepdims=True), list("abc"), [f"c{i}" for i in range(k)])
    assert labels.probs.nbytes > 1e6
    candidates = ["dawid_skene", "one_coin:soft_votes=3", "dawid_skene@svi:steps=100"]
    one, two = (choose_model(labels, np.arange(100), truth[:100], candidates, n_jobs=jobs, progress=False, seed=3)
                for jobs in (1, 2))
    assert one.chosen == two.chosen and one.temperature == two.temperature
    columns = ["gold_brier", "gold_log_loss", "dse", "plain_log_loss", "temperature", "gold_accuracy"]
    np.testing.assert_array_equal(one.scores[columns].to_numpy(float), two.scores[columns].to_numpy(float))
    assert one.scores[["warning", "error"]].equals(two.scores[["warning", "error"]])
    for spec in one.fits:
        np.testing.assert_array_equal(one.item_probs[spec], two.item_probs[spec])


def test_in_parallel_a_failing_candidate_is_recorded_and_bad_gold_still_raises():
    truth, votes = simulate_votes(n=300, k=3, accs=(0.6, 0.7, 0.8))
    search = choose_model(votes, np.arange(40), truth[:40], ["one_coin:soft_votes=3", "dawid_skene"], n_jobs=2,
                          progress=False)
    assert search.chosen == "dawid_skene" and "probabilities" in search.scores.loc["one_coin:soft_votes=3", "error"]
    with pytest.raises(InvalidInputError, match="out of range"):
        choose_model(votes, np.array([5000]), np.array([0]), ["one_coin", "dawid_skene"], n_jobs=2, progress=False)


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True, "2"])
def test_n_jobs_is_checked(n_jobs):
    truth, votes = simulate_votes(n=100, k=3, accs=(0.6, 0.7, 0.8))
    with pytest.raises(InvalidInputError, match="n_jobs must be a positive integer or -1"):
        choose_model(votes, np.arange(10), truth[:10], ["dawid_skene"], n_jobs=n_jobs, progress=False)


@pytest.mark.parametrize("spec, match", [
    ("dawid-skene@em", "'dawid-skene' is not a model name"),        # blamed the method
    ("one_coin:soft_votes=1_000", "is not name=value"),
    ("one_coin:soft_votes= 3", "is not name=value"),
    ("one_coin:soft_votes=\u0663", "is not name=value"),              # a non-ASCII digit
])
def test_candidate_specs_are_read_strictly(spec, match):
    with pytest.raises(InvalidInputError, match=match):
        parse_candidate(spec)
    assert parse_candidate("m:a=nan,b=-3,c=.5,d=1e5") == ("m", None, {"a": "nan", "b": -3, "c": 0.5, "d": 1e5})
