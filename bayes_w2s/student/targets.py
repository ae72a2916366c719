"""Turn whatever a user supervises with into ``(target_probs, weights, weak_probs)``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, LabelSetMismatchError
from ..posterior import Posterior
from ..weak.labels import WeakLabels, check_probs


@dataclass
class Targets:
    probs: np.ndarray                   # [N, K]
    weights: np.ndarray | None = None   # [N]
    weak_probs: np.ndarray | None = None  # [N, M, K]
    source: str = ""


def resolve_targets(targets, num_items: int, label_names: list, hard: bool = False,
                    weights=None) -> Targets:
    """Accepted ``targets``:

    - ``Posterior`` → its ``item_probs``; weights = its ``confidence``;
    - ``WeakLabels`` → the ensemble mean; ``weak_probs`` kept (for the multi-weak loss);
    - ``[N, K]`` array of probabilities (one weak model's, a vote, …);
    - ``[N]`` int array of hard labels.

    ``hard=True`` turns the targets into one-hot argmax (a row tied at its maximum keeps the
    tie, split evenly, rather than go to the first class); ``weights`` overrides the weights.
    """
    k = len(label_names)
    if k < 2:
        raise InvalidInputError(f"a student needs at least two classes, got label_names {list(label_names)}")
    if isinstance(targets, Posterior):
        if list(targets.label_names) != list(range(k)) and list(targets.label_names) != list(label_names):
            raise LabelSetMismatchError(f"posterior is over classes {targets.label_names}, the task over {label_names}")
        out = Targets(check_probs(targets.item_probs, "posterior item_probs", 2), targets.confidence,
                      source=f"posterior:{targets.model}")
    elif isinstance(targets, WeakLabels):
        if list(targets.label_names) != list(label_names):
            raise LabelSetMismatchError(f"weak labels are over classes {targets.label_names}, the task over {label_names}")
        out = Targets(targets.mean(), None, targets.probs, source="weak_mean")
    else:
        try:
            arr = np.asarray(targets)
        except ValueError as exc:   # ragged lists
            raise InvalidInputError(f"targets must be an [N, K] array of probabilities or [N] class indices "
                                    f"({exc})") from None
        if arr.dtype.kind not in "iuf":
            raise InvalidInputError(f"targets must be numbers ([N, K] probabilities or [N] class indices), "
                                    f"got dtype {arr.dtype}")
        if arr.ndim == 1:
            if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0 or arr.max(initial=0) >= k:
                raise LabelSetMismatchError(f"hard targets must be ints in 0..{k - 1}")
            arr = np.eye(k)[arr]
        out = Targets(check_probs(arr, "targets", 2), source="array")
    if out.probs.shape != (num_items, k):
        raise InvalidInputError(f"targets have shape {out.probs.shape}, expected ({num_items}, {k}) "
                                "(one row per training item, one column per class)")
    if hard:
        top = out.probs == out.probs.max(-1, keepdims=True)
        out.probs = top / top.sum(-1, keepdims=True)
    if weights is not None:
        try:
            weights = np.asarray(weights, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"weights must be {num_items} numbers ({exc})") from None
        # float32 is what the loss computes in: 1e308 passed as finite and trained a NaN student
        with np.errstate(over="ignore"):
            as_float32 = weights.astype(np.float32)
        if weights.shape != (num_items,) or not np.isfinite(as_float32).all() or (weights < 0).any():
            raise InvalidInputError(f"weights must be {num_items} finite non-negative numbers (within float32), "
                                    f"got shape "
                                    f"{weights.shape}" + ("" if weights.shape != (num_items,) else
                                                          f" with min {weights.min() if weights.size else 'n/a'}"))
        if not weights.sum() > 0:   # a weighted loss over all-zero weights trains on nothing
            raise InvalidInputError(f"weights are all zero ({num_items} items): nothing would be learnt")
        out.weights = weights
    return out
