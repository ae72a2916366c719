"""Gold items: choosing the likelihood's temperature, and gold-informed priors."""
import numpy as np
import pytest

from bayes_w2s import fit_posterior
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.posterior.calibration import choose_temperature, gold_confusion_counts, log_loss

from .test_engine import copied_errors


def test_correlated_evidence_gets_a_temperature_above_one_and_better_gold_log_loss():
    """Three weak models, two of which copy each other: counted as independent, the
    posterior is over-confident, and the gold items choose T > 1."""
    truth, votes = copied_errors(n=3000, seed=2)
    gold = np.arange(2500, 3000)
    search = choose_temperature(lambda t: fit_posterior(votes, temperature=t).item_probs, gold, truth[gold])
    assert search.temperature > 1.2
    assert search.gold_log_loss < search.plain_log_loss
    held = np.arange(2500)       # the same temperature helps items it was not chosen on
    plain = fit_posterior(votes).item_probs
    tempered = fit_posterior(votes, temperature=search.temperature).item_probs
    assert log_loss(tempered[held], truth[held]) < log_loss(plain[held], truth[held])
    assert search.evaluations[0] == (1.0, search.plain_log_loss)


def test_choose_temperature_errors():
    with pytest.raises(InvalidInputError, match="needs gold items"):
        choose_temperature(lambda t: None, np.arange(0), np.arange(0))
    with pytest.raises(InvalidInputError, match="bounds"):
        choose_temperature(lambda t: None, np.arange(3), np.arange(3), bounds=(2.0, 3.0))


def test_choose_temperature_checks_its_gold_and_what_fit_returns():
    """Each of these was once a wrong temperature or a raw numpy / scipy traceback."""
    truth, votes = copied_errors(n=300, seed=2)
    fit = lambda t: fit_posterior(votes, temperature=t).item_probs       # noqa: E731
    index, labels = np.arange(10), truth[:10]
    for bad_index, bad_labels, message in [
            (index, np.r_[labels[:9], -1], "non-negative integers"),      # −1 was read as the last class
            (np.r_[index[:9], -3], labels, "non-negative integers"),      # −3 wrapped around to the end
            (index, labels[:, None], "1-D"),                              # broadcast into a 10 × 10 table
            (index, np.array(["a"] * 10), "non-negative integers"),
            (index, np.r_[labels[:9], 7], "not a class index"),
            (np.r_[index[:9], 300], labels, "out of range for 300 items"),
            (np.ones(5, dtype=bool), labels[:5], "a mask of 5 items for 300 items"),   # was read as items 0..4
            (np.r_[index[:9], 0], labels, "more than once"),              # one item scored twice
            (index, labels + 0.5, "non-negative integers")]:
        with pytest.raises(InvalidInputError, match=message):
            choose_temperature(fit, bad_index, bad_labels)
    with pytest.raises(InvalidInputError, match="fit must be a function"):
        choose_temperature(fit(1.0), index, labels)
    whole = choose_temperature(fit, index.astype(float), labels.astype(float))   # as fit_posterior(gold=) reads them
    assert whole.temperature == choose_temperature(fit, index, labels).temperature
    for bad_fit, message in [(lambda t: fit(t) * 5, "summing to 1"), (lambda t: np.full((300, 3), np.nan), "finite"),
                             (lambda t: fit_posterior(votes, temperature=t), "e.g. a posterior's .item_probs")]:
        with pytest.raises(InvalidInputError, match=message):
            choose_temperature(bad_fit, index, labels)
    for bounds in [(0.5, np.inf), (0.5, 2, 3)]:
        with pytest.raises(InvalidInputError, match="bounds"):
            choose_temperature(fit, index, labels, bounds=bounds)
    with pytest.raises(InvalidInputError, match="tol"):
        choose_temperature(fit, index, labels, tol=-1)
    mask = np.zeros(300, dtype=bool)
    mask[:10] = True                                                      # a boolean mask names the same items
    assert choose_temperature(fit, mask, labels).temperature == choose_temperature(fit, index, labels).temperature


def test_gold_confusion_counts_are_each_models_votes_by_true_class():
    votes = np.array([[0, 1], [0, 0], [1, 1], [-1, 1]])
    counts = gold_confusion_counts(votes, np.array([0, 0, 1, 1]))
    assert counts.shape == (2, 2, 2)
    assert counts[0, 0].tolist() == [2, 0] and counts[0, 1].tolist() == [1, 1]
    assert counts[1, 0].tolist() == [0, 1] and counts[1, 1].tolist() == [0, 2]      # abstention adds nothing
    with pytest.raises(InvalidInputError, match=r"one class index per gold item, shape \(4,\); got shape \(2,\)"):
        gold_confusion_counts(votes, np.array([0, 1]))
    with pytest.raises(InvalidInputError, match=r"got shape \(4, 1\)"):        # said "4 gold classes for 4 items"
        gold_confusion_counts(votes, np.zeros((4, 1), int))
    np.testing.assert_array_equal(gold_confusion_counts(votes, np.array([0.0, 0.0, 1.0, 1.0])),   # a float column
                                  gold_confusion_counts(votes, np.array([0, 0, 1, 1])))
    for bad in ([-1, 0, 1, 1], [0, 0, 1, 5], [0.0, 0.5, 1.0, 1.0]):   # −1 was counted as the last class
        with pytest.raises(InvalidInputError, match="gold classes must be known class indices 0..1"):
            gold_confusion_counts(votes, np.array(bad))
    wide = gold_confusion_counts(votes, np.array([0, 0, 2, 2]), num_classes=3)   # the votes never show class 2
    assert wide.shape == (3, 2, 3) and wide[2, 1].tolist() == [0, 2, 0]


def test_gold_prior_counts_move_dawid_skene_towards_the_gold_confusions():
    truth, votes = copied_errors(n=2000, seed=3)
    counts = gold_confusion_counts(votes[1500:], truth[1500:])
    plain = fit_posterior(votes[:1500])
    informed = fit_posterior(votes[:1500], prior_counts=counts)
    gold_acc = np.einsum("kmk->m", counts) / counts.sum((0, 2))
    plain_acc, informed_acc = plain.weak_accuracy(), informed.weak_accuracy()
    assert np.abs(informed_acc - gold_acc).sum() < np.abs(plain_acc - gold_acc).sum()
    with pytest.raises(InvalidInputError, match="non-negative counts"):
        fit_posterior(votes[:100], prior_counts=-counts)
