"""Coerce the three accepted label layouts into one count tensor.

``fit_posterior`` accepts a :class:`~bayes_w2s.weak.labels.WeakLabels` (soft
``[N, M, K]``), an int array ``[N, M]`` of hard votes (``-1`` = abstain), or a long
``pandas.DataFrame`` with columns ``task, worker, label`` (crowd-kit's layout; a worker
may label a task more than once). All become ``counts[N, M, K]``: how often weak model
``m`` gave item ``n`` label ``k``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, LabelSetMismatchError
from ..weak.labels import WeakLabels


@dataclass
class LabelMatrix:
    counts: np.ndarray            # [N, M, K] vote counts (float)
    model_names: list[str]
    label_names: list
    item_ids: list | None
    soft: np.ndarray | None = None  # [N, M, K] probabilities when the input was soft


def as_label_matrix(labels, num_classes: int | None = None, label_names=None) -> LabelMatrix:
    if isinstance(labels, WeakLabels):
        votes = labels.votes()
        counts = np.eye(labels.num_classes)[votes]
        if label_names is not None and list(label_names) != labels.label_names:
            raise LabelSetMismatchError(f"weak labels are over {labels.label_names}, expected {list(label_names)}")
        out = LabelMatrix(counts, labels.model_names, labels.label_names, labels.item_ids, labels.probs)
    elif isinstance(labels, pd.DataFrame):
        out = _from_long(labels, label_names)
    else:
        out = _from_votes(np.asarray(labels), num_classes, label_names)
    n, m, k = out.counts.shape
    if m < 2:
        raise InvalidInputError(f"a posterior over weak supervisors needs at least two weak models, got {m}")
    if k < 2:
        raise InvalidInputError(f"need at least two classes, got {k}")
    unlabelled = np.flatnonzero(out.counts.sum((1, 2)) == 0)
    if unlabelled.size:
        raise InvalidInputError(
            f"{unlabelled.size} item(s) have no label from any weak model (first: index {unlabelled[0]}); "
            "drop them before fitting")
    return out


def _from_votes(votes: np.ndarray, num_classes, label_names) -> LabelMatrix:
    if votes.ndim != 2:
        raise InvalidInputError(f"hard votes must be an int array [N, M], got shape {votes.shape}")
    if votes.size == 0:
        raise InvalidInputError("hard votes are empty")
    if not np.issubdtype(votes.dtype, np.integer):
        if not np.all(np.isfinite(votes)) or not np.all(votes == np.round(votes)):
            raise InvalidInputError("hard votes must be integers (-1 = abstain)")
        votes = votes.astype(int)
    k = num_classes or (len(label_names) if label_names is not None else int(votes.max()) + 1)
    bad = (votes < -1) | (votes >= k)
    if bad.any():
        raise LabelSetMismatchError(
            f"vote {votes[bad][0]} is outside the class set 0..{k - 1} (-1 = abstain)")
    counts = (votes[..., None] == np.arange(k)).astype(np.float64)    # abstentions (-1) match no class
    names = list(label_names) if label_names is not None else list(range(k))
    return LabelMatrix(counts, [f"weak_{j}" for j in range(votes.shape[1])], names, None)


def _from_long(df: pd.DataFrame, label_names) -> LabelMatrix:
    missing = {"task", "worker", "label"} - set(df.columns)
    if missing:
        raise InvalidInputError(f"long-format labels need columns task, worker, label; missing {sorted(missing)}")
    if df.empty:
        raise InvalidInputError("the label DataFrame is empty")
    # hash-based factorize + bincount: linear in the number of labels (crowd-kit scale inputs)
    t_idx, tasks = pd.factorize(df["task"], sort=True)
    w_idx, workers = pd.factorize(df["worker"], sort=True)
    if label_names is None:
        l_idx, classes = pd.factorize(df["label"], sort=True)
        label_names = list(classes)
    else:
        lookup = {v: i for i, v in enumerate(label_names)}
        unknown = set(df["label"]) - set(lookup)
        if unknown:
            raise LabelSetMismatchError(f"labels {sorted(map(str, unknown))} are not in the class set {list(label_names)}")
        l_idx = df["label"].map(lookup).to_numpy()
    if (t_idx < 0).any() or (w_idx < 0).any() or (l_idx < 0).any():
        raise InvalidInputError("task, worker and label must not be missing (NaN)")
    shape = (len(tasks), len(workers), len(label_names))
    flat = (t_idx.astype(np.int64) * shape[1] + w_idx) * shape[2] + l_idx
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)
    return LabelMatrix(counts, [str(w) for w in workers], list(label_names), list(tasks))
