"""Metrics: accuracy, expected calibration error, performance gap recovered (PGR);
SLU-F1 and exact match for slot filling (:mod:`.slu`)."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .slu import item_slu_f1, per_slot_type, slu_scores


def _as_pred(probs_or_labels: np.ndarray) -> np.ndarray:
    a = np.asarray(probs_or_labels)
    return a.argmax(-1) if a.ndim == 2 else a


def accuracy(pred, labels) -> float:
    """Fraction correct; ``pred`` is ``[N]`` labels or ``[N, K]`` probabilities."""
    pred, labels = _as_pred(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise InvalidInputError(f"{pred.shape[0] if pred.ndim else 0} predictions for {labels.shape[0]} labels")
    if labels.size == 0:
        raise InvalidInputError("accuracy of an empty set is undefined")
    return float((pred == labels).mean())


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017):
    ``Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|`` with confidence = max probability."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    conf, pred = probs.max(-1), probs.argmax(-1)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs((pred[mask] == labels[mask]).mean() - conf[mask].mean())
    return float(ece)


def pgr(student: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered (Burns et al., 2023): ``(student − weak) / (ceiling − weak)``.

    NaN when the ceiling does not beat the weak reference (the ratio means nothing then).
    """
    gap = ceiling - weak
    return float((student - weak) / gap) if gap > 0 else float("nan")


__all__ = ["accuracy", "expected_calibration_error", "pgr", "slu_scores", "item_slu_f1", "per_slot_type"]
