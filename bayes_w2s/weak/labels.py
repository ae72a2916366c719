"""``WeakLabels``: the weak ensemble's output, validated once, saved and loaded safely."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CorruptCacheError, InvalidInputError, LabelSetMismatchError, MissingDataError, check_name_list
from ..io import atomic_path

#: tolerance on ``probs.sum(-1) == 1``; float32 softmax outputs are well inside it
SUM_TOL = 1e-3
#: two classes whose probabilities differ by at most this are a tie (no vote): above float32's
#: resolution (6e-8 near 1), so a tie survives the float32 cache round-trip and a margin of a
#: few float32 ulps is not read as a confident vote
TIE_TOL = 1e-6


def check_probs(probs: np.ndarray, what: str = "probabilities", ndim: int | None = None) -> np.ndarray:
    """Validate a probability array (last axis = classes) and return it as float64.

    Rows that are all NaN are allowed only when ``allow_missing``-style masking is done
    by the caller; here every entry must be finite, in [0, 1], and each row sum to 1.
    """
    try:
        probs = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:   # strings, ragged lists: a raw ValueError before
        raise InvalidInputError(f"{what} must be a numeric array ({exc})") from None
    if ndim is not None and probs.ndim != ndim:
        raise InvalidInputError(f"{what} must have {ndim} dimensions, got shape {probs.shape}")
    if probs.size == 0:
        raise InvalidInputError(f"{what} are empty (shape {probs.shape})")
    if not np.isfinite(probs).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(probs))[0])
        raise InvalidInputError(f"{what} contain NaN or inf (first at index {bad})")
    if (probs < 0).any() or (probs > 1 + SUM_TOL).any():
        raise InvalidInputError(f"{what} must lie in [0, 1]")
    sums = probs.sum(-1)
    off = np.abs(sums - 1) > SUM_TOL
    if off.any():
        bad = tuple(int(i) for i in np.argwhere(off)[0])
        raise InvalidInputError(f"{what} do not sum to 1 over classes (sum {sums[bad]:.4f} at index {bad})")
    return probs


@dataclass
class WeakLabels:
    """Soft labels from ``M`` weak models on ``N`` items over ``K`` classes.

    Attributes:
        probs: ``[N, M, K]`` each weak model's predicted class distribution.
        model_names: the ``M`` weak model names, in axis order.
        label_names: the ``K`` class names, in axis order.
        item_ids: the ``N`` item ids (the dataset's ``id`` column), for alignment checks.
        meta: free-form provenance (cards, training config, data fingerprint).
    """

    probs: np.ndarray
    model_names: list[str]
    label_names: list[str]
    item_ids: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.probs = check_probs(self.probs, "weak-label probabilities", ndim=3)
        n, m, k = self.probs.shape
        self.model_names = check_name_list(self.model_names, "WeakLabels model_names")
        self.label_names = check_name_list(self.label_names, "WeakLabels label_names")
        if self.item_ids is not None:   # checked, kept as given (ids of any type round-trip through save)
            check_name_list(self.item_ids, "WeakLabels item_ids")
        if len(self.model_names) != m:
            raise InvalidInputError(f"{len(self.model_names)} model names for {m} weak models (probs {self.probs.shape})")
        if len(self.label_names) != k:
            raise LabelSetMismatchError(f"{len(self.label_names)} label names for {k} classes (probs {self.probs.shape})")
        if self.item_ids is not None and len(self.item_ids) != n:
            raise InvalidInputError(f"{len(self.item_ids)} item ids for {n} items")

    # -- shapes and views ------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return self.probs.shape[0]

    @property
    def num_models(self) -> int:
        return self.probs.shape[1]

    @property
    def num_classes(self) -> int:
        return self.probs.shape[2]

    def votes(self) -> np.ndarray:
        """``[N, M]`` hard labels: each weak model's argmax, or −1 (an abstention) where its
        largest probability is shared by two or more classes (e.g. a uniform output), which
        names no label; ``argmax`` would make every such tie a vote for the first class."""
        top = self.probs.max(-1, keepdims=True)
        tied = (self.probs >= top - TIE_TOL).sum(-1) > 1
        return np.where(tied, -1, self.probs.argmax(-1))

    def abstained(self) -> np.ndarray:
        """``[N]`` True for items on which every weak model abstains (every output tied)."""
        return (self.votes() < 0).all(-1)

    def mean(self) -> np.ndarray:
        """``[N, K]`` the ensemble's mean probability."""
        return self.probs.mean(1)

    def majority_vote(self) -> np.ndarray:
        """``[N, K]`` one-hot majority vote; ties split evenly (so it stays a distribution).
        A weak model whose output is tied casts no vote; an item with no vote is uniform."""
        counts = (self.votes()[..., None] == np.arange(self.num_classes)).sum(1)
        top = counts == counts.max(-1, keepdims=True)
        return top / top.sum(-1, keepdims=True)

    def model(self, name: str) -> np.ndarray:
        """``[N, K]`` one weak model's probabilities."""
        if name not in self.model_names:
            raise InvalidInputError(f"no weak model {name!r}; have {self.model_names}")
        return self.probs[:, self.model_names.index(name)]

    def select_models(self, names: list[str]) -> "WeakLabels":
        unknown = [n for n in names if n not in self.model_names]
        if unknown:
            raise InvalidInputError(f"no weak model(s) {unknown}; have {self.model_names}")
        idx = [self.model_names.index(n) for n in names]
        return WeakLabels(self.probs[:, idx], list(names), self.label_names, self.item_ids, dict(self.meta))

    def check_against(self, dataset, label_names: list[str]) -> None:
        """Raise unless these labels belong to ``dataset`` and use ``label_names``."""
        if list(label_names) != list(self.label_names):
            raise LabelSetMismatchError(
                f"weak labels are over classes {self.label_names}, the task over {list(label_names)}")
        if len(dataset) != self.num_items:
            raise InvalidInputError(f"weak labels cover {self.num_items} items, the dataset has {len(dataset)}")
        if self.item_ids is not None and "id" in dataset.column_names and list(dataset["id"]) != list(self.item_ids):
            raise InvalidInputError("weak labels and dataset have the same length but different item ids/order")

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays only, no pickles) atomically: a crash never leaves half a file."""
        path = Path(path)
        if path.is_dir():
            raise InvalidInputError(f"cannot save weak labels to {path}: it is a folder; name a file (….npz)")
        stored = self.probs.astype(np.float32)
        try:
            header = json.dumps({"model_names": self.model_names, "label_names": self.label_names,
                                 "item_ids": self.item_ids, "meta": self.meta, "checksum": _checksum(stored)},
                                default=_plain)
        except (TypeError, ValueError) as exc:   # e.g. a tuple as a meta key
            raise InvalidInputError(f"cannot save weak labels: names, ids and meta must be JSON data ({exc})") from None
        with atomic_path(path) as tmp, open(tmp, "wb") as f:   # per-process temp name: writers never collide
            # a file object, not a name: np.savez appends ".npz" to a name without it, so
            # "labels.cache" used to leave an empty file behind and the data elsewhere
            np.savez(f, probs=stored, header=np.array(header))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "WeakLabels":
        path = Path(path)
        if not path.is_file():   # not a damaged cache: nothing to delete
            raise MissingDataError(f"no weak-label file {path}" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                stored = z["probs"]
            # files written before checksums were kept have none
            if header.get("checksum") not in (None, _checksum(stored)):
                raise ValueError("its probabilities do not match the checksum written with them (edited?)")
            probs = stored.astype(np.float64)
            # float32 storage: renormalise so reloaded rows still sum to 1 exactly — after checking them,
            # or rows of 0.3 (or negative ones) in a damaged file would come back as valid 0.5s
            probs = check_probs(probs, "weak-label probabilities", ndim=3)
            probs = probs / probs.sum(-1, keepdims=True)
            return cls(probs, header["model_names"], header["label_names"], header["item_ids"], header.get("meta", {}))
        except Exception as exc:  # zipfile/JSON/key/shape errors all mean the same thing here
            raise CorruptCacheError(f"cannot read weak labels from {path} ({exc}); delete the file to recompute it") from exc

    def __repr__(self) -> str:
        return f"WeakLabels(N={self.num_items}, models={self.model_names}, classes={self.label_names})"


def _plain(value):
    """numpy values in item ids or meta, as JSON has them (json.dumps refuses np.int64)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise InvalidInputError(f"WeakLabels.save: {type(value).__name__} {value!r} in item_ids / meta is not JSON data")


def _checksum(stored: np.ndarray) -> str:
    """Of the array exactly as the file stores it, so that an edited file is caught."""
    return hashlib.sha256(np.ascontiguousarray(stored).tobytes()).hexdigest()[:16]
