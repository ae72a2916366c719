"""The strong model in the loop: its cross-fitted predictions join the posterior as one
more supervisor with its own learnt reliability.

Burns et al.'s auxiliary confidence loss lets a confident student overrule weak labels
by a heuristic (a fixed mixing weight). Here the overruling is Bayesian: the strong
model's out-of-fold predictions on strong_train become supervisor M+1 of the posterior,
whose reliability (confusion, or correlation with the weak models) is learnt like any
weak model's, the posterior is refitted, the targets retrained on, and the loop repeated.

Cross-fitting is what keeps this honest: the prediction an item receives comes from a
student that never trained on that item's target, so the student cannot simply echo its
own training labels back as "independent" evidence (Chernozhukov et al., 2018, for the
idea; CROWDLAB, Goh, Tkachenko & Mueller, 2022, for classifier + annotators). Its cost is
``folds`` extra student fits per round (fewer only where repeated texts leave a fold empty).
One round is strictly out-of-fold. From the second round on, the other items' targets
already hold round-1 student predictions, which came from fold models that saw this item's
round-0 target: its own label can reach its prediction through two steps, diluted over the
fold (nested cross-fitting would close that path at ``folds`` times the cost).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..weak.labels import WeakLabels

STUDENT = "strong_student"


def group_codes(groups, n: int, what: str = "cross-fitting groups") -> np.ndarray:
    """``[n]`` integer codes of hashable group keys (equal keys, equal codes; ``None`` a key too)."""
    if len(groups) != n:
        raise InvalidInputError(f"{len(groups)} {what} for {n} items")
    try:
        return pd.factorize(pd.Series(list(groups), dtype=object), use_na_sentinel=False)[0]
    except TypeError as exc:   # a list key, say
        raise InvalidInputError(f"{what} must be hashable keys such as the items' texts ({exc})") from None


def fold_indices(n: int, folds: int, seed: int = 0, groups=None) -> list[np.ndarray]:
    """``folds`` disjoint, seeded index sets covering ``range(n)``.

    ``groups`` (``[n]`` keys: the items' texts) keeps items with the same key in one fold: two
    copies of a text get the same weak labels and so the same target, and a fold model that
    trained on one copy would echo that target back as the other's "held-out" prediction.
    Each group joins the fold of its first item (the lowest index, which the seeded shuffle
    puts in any fold alike), so without repeated keys the folds are those of the plain split.
    Where that leaves fewer than two folds with items (a few large groups), the groups
    themselves are split into folds; folds left empty are dropped.
    """
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2 or folds > n:
        raise InvalidInputError(f"cross-fitting needs 2 ≤ folds ≤ number of items ({n}), got {folds!r}")
    rng = np.random.default_rng(seed)
    parts = np.array_split(rng.permutation(n), folds)
    if groups is None:
        return [np.sort(part) for part in parts]
    codes = group_codes(groups, n)
    fold_of = np.empty(n, dtype=int)
    for f, part in enumerate(parts):
        fold_of[part] = f
    first = pd.Series(np.arange(n)).groupby(codes).transform("min").to_numpy()
    fold_of = fold_of[first]
    num_groups = int(codes.max()) + 1
    if len(np.unique(fold_of)) < 2 <= num_groups:
        group_fold = np.empty(num_groups, dtype=int)
        for f, part in enumerate(np.array_split(rng.permutation(num_groups), folds)):
            group_fold[part] = f
        fold_of = group_fold[codes]
    out = [part for part in (np.flatnonzero(fold_of == f) for f in range(folds)) if len(part)]
    if len(out) < 2:
        raise InvalidInputError(f"cross-fitting needs two items with different texts (groups); all {n} share one")
    return out


def cross_fit(train: Callable, predict: Callable, n: int, folds: int = 5, seed: int = 0,
              extra: int = 0, groups=None, extra_groups=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Out-of-fold predictions of a learner.

    Args:
        train: ``train(train_index) -> fitted`` (a student trained on those items only).
        predict: ``predict(fitted, index) -> [len(index), K]`` on training items, and
            ``predict(fitted, None) -> [extra, K]`` on the ``extra`` items outside the
            training set (gold items), which no fold trained on.
        n: number of training items.
        groups: ``[n]`` keys (the items' texts) that keep copies in one fold (:func:`fold_indices`).
        extra_groups: ``[extra]`` keys of the extra items: one whose key a training item has
            gets the prediction of the fold model that held that item out.

    Returns ``([n, K] out-of-fold predictions, [extra, K] predictions or None)``: item i's row
    comes from the one fold model that did not see item i (nor a copy of it). The extra items
    get the average of the fold models, a smoother predictor than the single one each training
    item gets (a posterior that learns the student's reliability from both sees a mix of the
    two), or where a copy of one trains, the fold model that held the copy out.
    """
    parts = fold_indices(n, folds, seed, groups)
    held_fold = {}
    if extra and groups is not None and extra_groups is not None:
        if len(extra_groups) != extra:
            raise InvalidInputError(f"{len(extra_groups)} cross-fitting groups for {extra} extra items")
        fold_of_key = {key: f for f, part in enumerate(parts) for key in (groups[i] for i in part)}
        held_fold = {j: fold_of_key[key] for j, key in enumerate(extra_groups) if key in fold_of_key}
    oof, outside, own = None, None, None
    for f, held in enumerate(parts):
        keep = np.setdiff1d(np.arange(n), held)
        fitted = train(keep)
        pred = np.asarray(predict(fitted, held))
        if oof is None:
            oof = np.full((n, pred.shape[-1]), np.nan)
        oof[held] = pred
        if extra:
            out = np.asarray(predict(fitted, None))
            outside = out / len(parts) if outside is None else outside + out / len(parts)
            if held_fold:
                own = np.full_like(out, np.nan) if own is None else own
                mine = [j for j, g in held_fold.items() if g == f]
                own[mine] = out[mine]
    if held_fold:
        twins = list(held_fold)
        outside[twins] = own[twins]
    return oof, outside


def with_supervisor(labels: WeakLabels, probs: np.ndarray, name: str = STUDENT) -> WeakLabels:
    """``labels`` plus one more supervisor's ``[N, K]`` probabilities."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (labels.num_items, labels.num_classes):
        raise InvalidInputError(f"supervisor {name!r} gives {probs.shape} probabilities for "
                                f"{labels.num_items} items × {labels.num_classes} classes")
    probs = np.clip(probs, 1e-7, 1.0)
    probs = probs / probs.sum(-1, keepdims=True)
    return WeakLabels(np.concatenate([labels.probs, probs[:, None]], 1), [*labels.model_names, name],
                      labels.label_names, labels.item_ids, dict(labels.meta))


@dataclass
class LoopResult:
    """Result of :func:`posterior_with_student`.

    Attributes:
        posterior: the final posterior (the student one of its supervisors).
        rounds: per round, the posterior's targets ``[N, K]`` and the student's
            out-of-fold probabilities that went into it.
    """

    posterior: object
    rounds: list = field(default_factory=list)


def posterior_with_student(fit: Callable, first, labels: WeakLabels, train: Callable, predict: Callable,
                           rounds: int = 1, folds: int = 5, seed: int = 0, num_train: int | None = None,
                           groups=None, extra_groups=None) -> LoopResult:
    """Refit a posterior with the strong student as one more supervisor, ``rounds`` times.

    Args:
        fit: ``fit(labels) -> Posterior`` over all items of ``labels`` (e.g. the weak labels
            of strong_train followed by those of the gold items, gold observed).
        first: the posterior to start from (fitted on the weak models alone).
        labels: the weak labels ``fit`` takes, the first ``num_train`` items being the
            training items the student learns from; the rest (gold) only get predictions.
        train / predict: as for :func:`cross_fit`; ``train(index, targets)`` trains on the
            targets of those training items.
        groups / extra_groups: the texts of the training items and of the rest, which keep
            copies apart from the fold models that learnt them (:func:`cross_fit`).
    """
    n = labels.num_items if num_train is None else num_train
    if not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise InvalidInputError(f"rounds must be an integer ≥ 1, got {rounds!r}")
    post, history = first, []
    for r in range(rounds):
        targets = post.item_probs[:n]
        oof, outside = cross_fit(lambda idx: train(idx, targets[idx]), predict, n, folds, seed + r,
                                 extra=labels.num_items - n, groups=groups, extra_groups=extra_groups)
        student = oof if outside is None else np.concatenate([oof, outside])
        post = fit(with_supervisor(labels, student))
        history.append({"targets": targets, "student": student})
    return LoopResult(post, history)
