import math

import numpy as np
import pytest

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.metrics import accuracy, expected_calibration_error, pgr


def test_accuracy_from_labels_and_probs():
    assert accuracy(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([1, 1])) == 0.5
    with pytest.raises(InvalidInputError):
        accuracy(np.array([0, 1]), np.array([0]))


@pytest.mark.parametrize("labels", [np.array([0, -1]), np.array([0, 2]), np.array([0.0, 1.0]),
                                    np.array(["neg", "pos"]), np.array([0, None], dtype=object), np.array([[0], [1]])])
def test_labels_that_are_not_class_indices_are_a_clear_error(labels):
    with pytest.raises(InvalidInputError, match="labels"):
        accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), labels)


def test_tied_maxima_split_the_credit_whatever_the_class_order():
    """A 3-way-tied vote is right a third of the time, not always or never by class order."""
    vote = np.array([[1 / 3, 1 / 3, 0.0, 1 / 3], [0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert accuracy(vote, np.array([3, 0, 1])) == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert accuracy(vote[:, ::-1], np.array([0, 3, 2])) == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert accuracy(vote, np.array([2, 2, 0])) == 0.0
    # ECE: the tied items' accuracy is their expected accuracy, equal to their confidence here
    assert expected_calibration_error(vote[:2], np.array([0, 1]), n_bins=10) == pytest.approx(0.0)


def test_ece_by_hand():
    # two bins: conf 0.9 (1 right of 2 → |0.5−0.9|) and conf 0.6 (1 right of 1 → |1−0.6|)
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 0, 0])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.4)


def test_pgr():
    assert pgr(0.85, 0.80, 0.90) == pytest.approx(0.5)
    assert pgr(0.78, 0.80, 0.90) == pytest.approx(-0.2)
    assert math.isnan(pgr(0.9, 0.9, 0.85))
    assert math.isnan(pgr(0.9, np.mean([0.7, 0.8, 0.9]), 0.8))     # a gap of rounding error: was 9e14
    assert math.isnan(pgr(0.8, 0.7, 0.7000000000000001))


@pytest.mark.parametrize("probs, match", [
    (np.array([[5.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.0, 4.0]]), "must lie in"),        # logits: ECE was 2.75
    (np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])), "must lie in"),  # log-probs: ECE was 0
    (np.array([[0.45, 0.05], [0.1, 0.4], [0.3, 0.2], [0.15, 0.35]]), "do not sum to 1"),
    (np.full((4, 2), np.nan), "NaN"),                                                     # ECE was 0.0
    (np.array([0.1, 0.8, 0.4, 0.7]), "2 dimensions"),                                     # P(class 1): was 0.8
])
def test_ece_refuses_what_is_not_a_probability_table(probs, match):
    with pytest.raises(InvalidInputError, match=match):
        expected_calibration_error(probs, np.array([0, 1, 0, 1]))


def test_metrics_refuse_nan_scores_string_labels_empty_sets_and_non_numbers():
    with pytest.raises(InvalidInputError, match="NaN or inf in row 1"):        # a NaN row was a silent miss
        accuracy(np.array([[0.9, 0.1], [np.nan, np.nan]]), np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="class indices"):             # was 0.0
        accuracy(np.array(["a", "b"]), np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="empty set"):
        expected_calibration_error(np.zeros((0, 2)), np.array([], dtype=int))
    with pytest.raises(InvalidInputError, match="n_bins"):
        expected_calibration_error(np.array([[0.9, 0.1]]), np.array([0]), n_bins=2.5)
    for bad in ("0.8", None, np.array([0.8, 0.9])):
        with pytest.raises(InvalidInputError, match="pgr: student must be one finite number"):
            pgr(bad, 0.8, 0.9)
    assert accuracy(np.array([[3.0, -1.0], [0.5, 2.0]]), np.array([0, 1])) == 1.0   # scores still rank


def test_boolean_labels_are_the_classes_0_and_1_and_pgr_takes_0d_arrays():
    assert accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([False, True])) == 1.0
    assert pgr(np.array(0.85), 0.8, 0.9) == pytest.approx(0.5)
    assert math.isnan(pgr(float("nan"), 0.8, 0.9))          # a diverged student's row stays NaN in the report
    with pytest.raises(InvalidInputError, match="finite number"):   # was 0.0, silently
        pgr(0.85, 0.8, float("inf"))
