"""Cross-fitting and the strong model in the loop (no models: a memorising learner)."""
import numpy as np
import pytest

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.student.loop import STUDENT, cross_fit, fold_indices, posterior_with_student, with_supervisor


class Memoriser:
    """Predicts an item's own training target when it trained on it, else uniform: any
    leak of an item's label into its own prediction shows up as a non-uniform row."""

    def __init__(self, targets, k):
        self.targets, self.k = targets, k

    def train(self, index, targets=None):
        return {int(i): (self.targets[i] if targets is None else targets[j]) for j, i in enumerate(index)}

    def predict(self, fitted, index):
        if index is None:
            return np.full((4, self.k), 1.0 / self.k)
        return np.stack([fitted.get(int(i), np.full(self.k, 1.0 / self.k)) for i in index])


def test_out_of_fold_predictions_never_see_the_items_own_label():
    rng = np.random.default_rng(0)
    targets = np.eye(3)[rng.integers(0, 3, 50)]
    learner = Memoriser(targets, 3)
    oof, outside = cross_fit(learner.train, learner.predict, 50, folds=5, seed=1, extra=4)
    np.testing.assert_allclose(oof, 1.0 / 3)            # every row came from a model that never saw it
    assert outside.shape == (4, 3)
    folds = fold_indices(50, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(50))


def test_posterior_with_student_adds_a_supervisor_and_keeps_shapes():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 200)
    probs = np.stack([np.eye(2)[np.where(rng.random(200) < a, truth, 1 - truth)] * 0.8 + 0.1 for a in (0.7, 0.8)], 1)
    labels = WeakLabels(probs, ["w0", "w1"], ["neg", "pos"])
    first = fit_posterior(labels)
    seen = []

    def fit(supervisors):
        seen.append(supervisors.model_names)
        return fit_posterior(supervisors)
    good = np.eye(2)[truth] * 0.9 + 0.05                 # a student that is right: it should help
    result = posterior_with_student(fit, first, labels, lambda idx, t: None, lambda f, idx: good[idx], rounds=2,
                                    folds=4)
    assert seen == [["w0", "w1", STUDENT]] * 2 and len(result.rounds) == 2
    assert (result.posterior.labels == truth).mean() > (first.labels == truth).mean()
    with pytest.raises(InvalidInputError, match="rounds"):
        posterior_with_student(fit, first, labels, None, None, rounds=0)
    with pytest.raises(InvalidInputError, match="folds"):
        fold_indices(10, 1)
    with pytest.raises(InvalidInputError, match="probabilities for"):
        with_supervisor(labels, good[:10])


def test_copies_of_a_text_share_a_fold_so_no_copy_echoes_its_twins_label():
    rng = np.random.default_rng(2)
    texts = [f"text {i}" for i in rng.integers(0, 30, 60)]          # 60 items, about half of them copies
    targets = np.eye(3)[[int(t.split()[1]) % 3 for t in texts]]      # a copy has its twin's target

    class TextMemoriser(Memoriser):   # memorises texts, as a student does
        def train(self, index, targets=None):
            return {texts[int(i)]: self.targets[i] for i in index}

        def predict(self, fitted, index):
            return np.stack([fitted.get(texts[int(i)], np.full(self.k, 1.0 / self.k)) for i in index])

    learner = TextMemoriser(targets, 3)
    oof, _ = cross_fit(learner.train, learner.predict, 60, folds=5, seed=0, groups=texts)
    np.testing.assert_allclose(oof, 1.0 / 3)
    leaky, _ = cross_fit(learner.train, learner.predict, 60, folds=5, seed=0)
    assert (np.abs(leaky - 1.0 / 3).max(-1) > 0).any()                 # without groups copies leak
    # without repeated keys the grouped folds are the plain ones
    plain, grouped = fold_indices(50, 5, seed=3), fold_indices(50, 5, seed=3, groups=[str(i) for i in range(50)])
    assert all(np.array_equal(a, b) for a, b in zip(plain, grouped))
    with pytest.raises(InvalidInputError, match="all 10 share one"):
        fold_indices(10, 3, groups=["same"] * 10)
    with pytest.raises(InvalidInputError, match="groups for 10 items"):
        fold_indices(10, 3, groups=["a"] * 9)
    with pytest.raises(InvalidInputError, match="hashable"):
        fold_indices(3, 2, groups=[["a"], ["b"], ["c"]])


def test_a_group_lands_in_any_fold_alike_and_few_groups_still_split():
    groups = ["copy"] * 4 + [f"t{i}" for i in range(196)]
    landed = [next(f for f, part in enumerate(fold_indices(200, 5, seed=s, groups=groups)) if 0 in part)
              for s in range(400)]
    shares = np.bincount(landed, minlength=5) / 400
    assert np.abs(shares - 0.2).max() < 0.07, shares      # the first-in-shuffle rule put it in fold 0 60% of times
    for s in range(20):                                   # two texts, five copies each: one fold each
        parts = fold_indices(10, 2, seed=s, groups=["a"] * 5 + ["b"] * 5)
        assert sorted(map(list, parts)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_a_gold_copy_of_a_training_text_is_predicted_by_the_fold_that_held_the_copy_out():
    texts = [f"t{i}" for i in range(30)]
    targets = np.eye(2)[np.arange(30) % 2]

    def train(index):
        return {texts[i]: targets[i] for i in index}

    def predict(fitted, index):
        keys = ["t7", "new"] if index is None else [texts[i] for i in index]    # gold: a copy of t7, a new text
        return np.stack([fitted.get(k, np.full(2, 0.5)) for k in keys])
    _, gold = cross_fit(train, predict, 30, folds=3, seed=0, extra=2, groups=texts, extra_groups=["t7", "new"])
    np.testing.assert_allclose(gold, 0.5)                 # averaged over folds, t7's twin leaked 2/3 of its label
    _, leaky = cross_fit(train, predict, 30, folds=3, seed=0, extra=2, groups=texts)
    assert abs(leaky[0, 1] - 0.5) > 0.1
