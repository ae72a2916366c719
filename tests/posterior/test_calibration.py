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


def test_gold_confusion_counts_are_each_models_votes_by_true_class():
    votes = np.array([[0, 1], [0, 0], [1, 1], [-1, 1]])
    counts = gold_confusion_counts(votes, np.array([0, 0, 1, 1]))
    assert counts.shape == (2, 2, 2)
    assert counts[0, 0].tolist() == [2, 0] and counts[0, 1].tolist() == [1, 1]
    assert counts[1, 0].tolist() == [0, 1] and counts[1, 1].tolist() == [0, 2]      # abstention adds nothing
    with pytest.raises(InvalidInputError, match="gold classes"):
        gold_confusion_counts(votes, np.array([0, 1]))


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
