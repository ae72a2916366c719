import numpy as np
import pandas as pd
import pytest

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.errors import InvalidInputError, LabelSetMismatchError, UnknownNameError


from .conftest import simulate_votes as simulate


def test_em_recovers_truth_and_confusions():
    truth, votes = simulate()
    post = fit_posterior(votes, model="dawid_skene", method="em")
    mv = np.array([np.bincount(r, minlength=4).argmax() for r in votes])
    assert (post.labels == truth).mean() > (mv == truth).mean()
    diag = np.einsum("mkk->mk", post.confusion).mean(1)
    assert np.all(diag > 0.5)                          # no label switching
    assert np.allclose(diag, [0.55, 0.6, 0.7, 0.75, 0.8], atol=0.05)
    assert post.converged and np.allclose(post.item_probs.sum(1), 1)
    assert np.all(np.diff(post.history) > -1e-6)       # MAP-EM never decreases its objective


def test_three_input_layouts_agree():
    truth, votes = simulate(n=300, k=3, accs=(0.6, 0.7, 0.8))
    a = fit_posterior(votes)
    long = pd.DataFrame([(n, f"w{m}", votes[n, m]) for n in range(300) for m in range(3)], columns=["task", "worker", "label"])
    b = fit_posterior(long)
    wl = WeakLabels(np.eye(3)[votes] * 0.9 + 0.1 / 3, ["w0", "w1", "w2"], ["x", "y", "z"])
    c = fit_posterior(wl)
    assert np.allclose(a.item_probs, b.item_probs, atol=1e-8) and np.allclose(a.item_probs, c.item_probs, atol=1e-8)


def test_abstentions_and_repeats():
    votes = np.array([[0, 0, -1], [1, -1, 1], [0, 1, 1], [1, 1, 0]])
    post = fit_posterior(votes, num_classes=2)
    assert post.item_probs.shape == (4, 2)
    long = pd.DataFrame({"task": [0, 0, 0, 1, 1], "worker": ["a", "a", "b", "a", "b"], "label": [1, 1, 0, 0, 0]})
    assert fit_posterior(long).item_probs.shape == (2, 2)


def test_errors():
    with pytest.raises(InvalidInputError, match="at least two weak models"):
        fit_posterior(np.zeros((5, 1), dtype=int))
    with pytest.raises(InvalidInputError, match="no label from any weak model"):
        fit_posterior(np.array([[0, 1], [-1, -1]]), num_classes=2)
    with pytest.raises(LabelSetMismatchError, match="outside the class set"):
        fit_posterior(np.array([[0, 5], [1, 1]]), num_classes=2)
    with pytest.raises(UnknownNameError, match="unknown posterior model"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="glad")
    with pytest.raises(UnknownNameError, match="no method 'hmc'"):
        fit_posterior(np.array([[0, 1], [1, 1]]), method="hmc")
    with pytest.raises(UnknownNameError, match="no method 'em'"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="hierarchical", method="em")
    with pytest.raises(InvalidInputError, match="observes each weak model's probabilities"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="soft")
    with pytest.raises(InvalidInputError, match="NaN"):
        WeakLabels(np.full((2, 2, 2), np.nan), ["a", "b"], ["x", "y"])
    with pytest.raises(InvalidInputError, match="do not sum to 1"):
        WeakLabels(np.full((2, 2, 2), 0.7), ["a", "b"], ["x", "y"])
    with pytest.raises(LabelSetMismatchError, match="weak labels are over"):
        fit_posterior(WeakLabels(np.full((2, 2, 2), 0.5), ["a", "b"], ["x", "y"]), label_names=["y", "x"])
    with pytest.raises(InvalidInputError, match="unknown prior setting"):
        fit_posterior(np.array([[0, 1], [1, 1]]), beta=3.0)
    with pytest.raises(LabelSetMismatchError, match="not in the class set"):
        fit_posterior(pd.DataFrame({"task": [0], "worker": ["a"], "label": ["maybe"]}), label_names=["yes", "no"])
