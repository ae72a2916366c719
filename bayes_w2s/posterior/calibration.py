"""Gold items: the temperature of a tempered likelihood, and how well targets are calibrated.

In weak-to-strong experiments the weak supervisors are trained on ground truth, so a
slice of it can be held out (``weak_val_size``): items no weak model trained on, whose
weak labels and true classes are both known. A posterior can observe them (``gold=`` in
:func:`~bayes_w2s.posterior.fit_posterior`), and they are where the temperature of the
item posterior p(c | y, θ) ∝ π_c p(y | c, θ)^{1/T} is chosen: the weak models' errors are
correlated, so a model that counts them as independent evidence is over-confident, and
T > 1 discounts that evidence. T maps a fitted model's evidence to item posteriors (the
globals are fitted at T = 1: tempering inside the fit would reward uninformative
reliabilities, since p(y | c)^{1/T} is largest for a flat p), like temperature scaling
(Guo et al., 2017) but on the evidence, not the posterior's prior. It is chosen to
maximise the gold items' held-out log-likelihood of their true class under a fit that sees
their weak labels but not their classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import InvalidInputError


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean −log p(true class); probabilities clipped at 1e-12."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


@dataclass
class TemperatureSearch:
    """Result of :func:`choose_temperature`.

    Attributes:
        temperature: the chosen T.
        gold_log_loss: mean −log p(true class) of the gold items at T.
        plain_log_loss: the same at T = 1, for comparison.
        evaluations: every (T, gold log-loss) tried, in order.
    """

    temperature: float
    gold_log_loss: float
    plain_log_loss: float
    evaluations: list = field(default_factory=list)


def choose_temperature(fit, gold_index: np.ndarray, gold_labels: np.ndarray, bounds=(0.5, 8.0),
                       tol: float = 0.02) -> TemperatureSearch:
    """The temperature whose fit best predicts the gold items' classes.

    Args:
        fit: ``fit(temperature) -> [N, K]`` item posteriors, the gold items among the N
            but *not* observed (e.g. ``lambda t: fit_posterior(labels, temperature=t).item_probs``).
        gold_index / gold_labels: positions of the gold items among the N, and their classes.
        bounds: the search interval of T; ``tol``: tolerance on log T.

    A bounded scalar search on log T (Brent) of the gold items' log-loss; T = 1 is always
    evaluated, so the result is never worse than the plain model on gold.
    """
    if not callable(fit):
        raise InvalidInputError(f"fit must be a function fit(temperature) -> [N, K] item probabilities, "
                                f"got {type(fit).__name__}")
    gold_index, gold_labels, mask_length = gold_items(gold_index, gold_labels, "choose_temperature")
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2
            and all(isinstance(b, (int, float, np.integer, np.floating)) and math.isfinite(b) for b in bounds)
            and 0 < bounds[0] < 1 < bounds[1]):
        raise InvalidInputError(f"temperature bounds must be two finite numbers 0 < low < 1 < high, got {bounds!r}")
    if not (isinstance(tol, (int, float, np.integer, np.floating)) and math.isfinite(tol) and tol > 0):
        raise InvalidInputError(f"tol must be a finite number > 0, got {tol!r}")
    lo, hi = bounds
    evaluations = []

    def gold_loss(log_t: float) -> float:
        t = float(math.exp(log_t))
        probs = _item_probs(fit(t), t)
        n, k = probs.shape
        if mask_length not in (None, n):
            raise InvalidInputError(f"gold_index is a mask of {mask_length} items for {n} items")
        if gold_index.max() >= n:
            raise InvalidInputError(f"gold_index {int(gold_index.max())} is out of range for {n} items")
        if gold_labels.max() >= k:
            raise InvalidInputError(f"gold label {int(gold_labels.max())} is not a class index 0..{k - 1}")
        value = log_loss(probs[gold_index], gold_labels)
        evaluations.append((t, value))
        return value

    plain = gold_loss(0.0)
    res = minimize_scalar(gold_loss, bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": tol})
    best_t, best = (float(math.exp(res.x)), float(res.fun)) if res.fun < plain else (1.0, plain)
    return TemperatureSearch(best_t, best, plain, evaluations)


def gold_items(gold_index, gold_labels, who: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(positions, classes, mask length or None)`` of gold items given as positions or a boolean
    mask and their class indices, or a clear error: ``who`` needs at least one, one class per
    position, and each item once (two labels for one item would be scored twice)."""
    mask_length = len(gold_index) if np.asarray(gold_index).dtype == bool else None
    index = _integers(gold_index, "gold_index", mask_ok=True)
    labels = _integers(gold_labels, "gold_labels")
    if len(index) == 0 or len(index) != len(labels):
        raise InvalidInputError(f"{who} needs gold items: {len(index)} positions for {len(labels)} labels")
    if len(np.unique(index)) != len(index):
        raise InvalidInputError("gold_index names an item more than once")
    return index, labels, mask_length


def _integers(values, what: str, mask_ok: bool = False) -> np.ndarray:
    """A 1-D array of non-negative integers (positions or class indices; whole-number floats, as
    ``fit_posterior(gold=)`` reads them, count), or a clear error; with ``mask_ok`` a boolean mask
    gives its positions."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "b" and mask_ok:
        return np.flatnonzero(arr)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        arr = arr.astype(np.int64)
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0):
        raise InvalidInputError(f"{what} must be non-negative integers ({'positions' if mask_ok else 'class indices'}"
                                f"; −1 or names are not accepted here), got {arr[:5].tolist()}")
    return arr.astype(np.int64)


def _item_probs(out, t: float) -> np.ndarray:
    """What ``fit(t)`` returned, checked to be ``[N, K]`` item probabilities."""
    if not isinstance(out, (np.ndarray, list, tuple)) and not hasattr(out, "__array__"):
        raise InvalidInputError(f"fit(temperature) must return [N, K] item probabilities (e.g. a posterior's "
                                f".item_probs), got {type(out).__name__}")
    probs = np.asarray(out, dtype=np.float64)
    if probs.ndim != 2:
        raise InvalidInputError(f"fit(temperature) must return [N, K] item probabilities, got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(-1), 1.0, atol=1e-3):
        raise InvalidInputError(f"fit({t:.3g}) returned item probabilities that are not finite, non-negative rows "
                                "summing to 1")
    return probs


def gold_confusion_counts(gold_labels, gold_classes, num_classes: int | None = None) -> np.ndarray:
    """``[K, M, K]`` each weak model's vote counts on the gold items, by true class: the
    pseudo-counts of a gold-informed Dawid–Skene prior (``prior_counts``). ``gold_classes``
    are class indices, every one known; ``num_classes`` states K where the gold items' votes
    do not show every class."""
    from .inputs import as_label_matrix

    lm = as_label_matrix(gold_labels, num_classes=num_classes)
    classes = np.asarray(gold_classes)
    if classes.shape != (lm.counts.shape[0],):
        raise InvalidInputError(f"gold_classes must be one class index per gold item, shape ({lm.counts.shape[0]},); "
                                f"got shape {classes.shape}")
    k = lm.counts.shape[-1]
    if classes.dtype.kind == "f" and np.isfinite(classes).all() and (classes == np.round(classes)).all():
        classes = classes.astype(np.int64)   # whole numbers from a float column
    # np.eye(k)[-1] is the last class: an "unknown" −1 was counted as class K − 1
    if classes.dtype.kind not in "iu" or ((classes < 0) | (classes >= k)).any():
        wrong = classes[~np.isin(classes, np.arange(k))] if classes.dtype.kind in "iu" else classes
        raise InvalidInputError(f"gold classes must be known class indices 0..{k - 1} (pass num_classes= if the "
                                f"gold votes miss a class), got {wrong[:5].tolist()}")
    return np.einsum("nk,nml->kml", np.eye(k)[classes], lm.counts)
