"""Metrics: accuracy, expected calibration error, performance gap recovered (PGR);
SLU-F1 and exact match for slot filling (:mod:`.slu`)."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..weak.labels import check_probs
from .slu import item_slu_f1, per_slot_type, slu_scores


def hits(pred, labels) -> np.ndarray:
    """``[N]`` each item's credit: 1 or 0 for ``[N]`` predicted labels; for ``[N, K]``
    probabilities, 1/|ties| when the label is among the classes tied at the maximum, else 0 —
    the expected accuracy of breaking ties at random. Taking the first maximum instead would
    score a 3-way-tied majority vote by the order of the class names."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.ndim not in (1, 2) or labels.ndim != 1 or len(pred) != len(labels):
        raise InvalidInputError(f"predictions of shape {pred.shape} for labels of shape {labels.shape}: need [N] "
                                "or [N, K] predictions and [N] labels")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)          # False / True: the classes 0 / 1, as elsewhere
    bound = pred.shape[1] if pred.ndim == 2 else "K"
    if labels.size and labels.dtype.kind not in "iu":   # strings, None, floats: min() could not even be taken
        raise InvalidInputError(f"labels must be class indices in [0, {bound}), got dtype {labels.dtype} "
                                f"(e.g. {labels.flat[0]!r})")
    if labels.size and (labels.min() < 0 or (pred.ndim == 2 and labels.max() >= pred.shape[1])):
        raise InvalidInputError(f"labels must be class indices in [0, {bound}), "
                                f"got dtype {labels.dtype} in [{labels.min()}, {labels.max()}]")
    if pred.ndim == 1:
        whole = pred.dtype.kind in "iub" or (pred.dtype.kind == "f" and np.isfinite(pred).all()
                                             and (pred == np.round(pred)).all())
        if pred.size and not whole:   # strings (or 0.7) compared with indices scored a silent 0
            raise InvalidInputError(f"predicted labels must be class indices (whole numbers), got dtype {pred.dtype}")
        return (pred == labels).astype(float)
    if pred.dtype.kind not in "iufb" or not np.isfinite(pred).all():   # a NaN row was scored as a miss
        raise InvalidInputError("predicted probabilities (or scores) must be finite numbers"
                                + (f"; NaN or inf in row {int(np.flatnonzero(~np.isfinite(pred).all(-1))[0])}"
                                   if pred.dtype.kind in "iufb" else f", got dtype {pred.dtype}"))
    top = pred == pred.max(-1, keepdims=True)
    return top[np.arange(len(labels)), labels] / np.maximum(top.sum(-1), 1)


def accuracy(pred, labels) -> float:
    """Fraction correct; ``pred`` is ``[N]`` labels or ``[N, K]`` probabilities, whose ties
    at the maximum split the credit (:func:`hits`)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise InvalidInputError("accuracy of an empty set is undefined")
    return float(hits(pred, labels).mean())


def confidence_bins(probs, labels, n_bins: int):
    """``(confidence [N], correct [N], bin [N])`` of ``[N, K]`` probabilities in ``n_bins``
    equal-width confidence bins, every input checked (what ECE and reliability diagrams read)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be an integer ≥ 1, got {n_bins!r}")
    labels = np.asarray(labels)
    if labels.size == 0:
        raise InvalidInputError("the calibration error of an empty set is undefined")
    probs = check_probs(probs, "probabilities for the calibration error", ndim=2)
    conf, correct = probs.max(-1), hits(probs, labels)
    return conf, correct, np.minimum((conf * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017):
    ``Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|`` with confidence = max probability (ties at the
    maximum split the accuracy, as in :func:`accuracy`). ``probs`` must be ``[N, K]``
    probabilities: logits, log-probabilities or a 1-D P(class 1) gave numbers above 1 or 0."""
    conf, correct, bins = confidence_bins(probs, labels, n_bins)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def pgr(student: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered (Burns et al., 2023): ``(student − weak) / (ceiling − weak)``.

    NaN when the ceiling does not beat the weak reference (by more than rounding error: the
    ratio means nothing then), and
    when a score is NaN (a diverged student's row); an infinite score or a non-number is an error.
    """
    values = []
    for name, value in (("student", student), ("weak", weak), ("ceiling", ceiling)):
        if np.ndim(value) == 0 and hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()                   # a 0-d numpy array or torch tensor
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or np.isinf(value):
            raise InvalidInputError(f"pgr: {name} must be one finite number (a score) or NaN, got "
                                    f"{type(value).__name__} {value!r}")
        values.append(float(value))
    student, weak, ceiling = values
    if np.isnan(values).any():
        return float("nan")
    gap = ceiling - weak
    # a gap of rounding error (a mean of weak scores equal to the ceiling) is no gap: the ratio was ~1e15
    return float((student - weak) / gap) if gap > 1e-9 * max(1.0, abs(ceiling)) else float("nan")


__all__ = ["accuracy", "hits", "confidence_bins", "expected_calibration_error", "pgr", "slu_scores", "item_slu_f1",
           "per_slot_type"]
