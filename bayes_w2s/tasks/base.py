"""The :class:`Task` container and the seeded, stratified three-way split."""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset

from ..errors import InvalidInputError, MissingDataError

#: Environment variable naming the offline data directory (``../shared/data`` here).
DATA_ENV = "BAYES_W2S_DATA"
SPLITS = ("weak_train", "strong_train", "test")


@dataclass
class Task:
    """A classification task split for weak-to-strong experiments.

    Every split is a :class:`datasets.Dataset` with columns ``text`` (str), ``label``
    (int in ``range(num_classes)``) and ``id`` (str, stable across runs), plus
    ``group`` where several items share a source (CosmosQA answers of one question).
    """

    name: str
    label_names: list[str]
    weak_train: Dataset
    strong_train: Dataset
    test: Dataset
    source: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict)
    #: gold calibration slice: labelled items no weak model trains on (``with_gold_slice``)
    weak_val: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> Dataset:
        if name not in SPLITS:
            raise InvalidInputError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        out = {s: len(self.split(s)) for s in SPLITS}
        if self.weak_val is not None:
            out["weak_val"] = len(self.weak_val)
        return out

    def with_weak_budget(self, n: int, seed: int) -> "Task":
        """The same task with ``weak_train`` cut to a seeded subset of ``n`` items,
        stratified as the split was. strong_train and test are untouched, so the weak
        supervisors' label budget can vary while the strong model's data (and its cached
        features) stay fixed."""
        if not 1 <= n <= len(self.weak_train):
            raise InvalidInputError(f"a weak label budget of {n} items does not fit weak_train "
                                    f"({len(self.weak_train)} items)")
        column = "scenario" if self.kind == "generation" else "label"
        groups = np.asarray(self.weak_train["group"]) if "group" in self.weak_train.column_names else None
        idx = stratified_indices(np.asarray(self.weak_train[column]), n, np.random.default_rng(seed), groups)
        return dataclasses.replace(self, weak_train=self.weak_train.select(np.sort(idx)),
                                   extra={**self.extra, "weak_pool": self.weak_train})

    def with_gold_slice(self, n: int, seed: int) -> "Task":
        """The same task with a gold calibration slice ``weak_val`` of ``n`` labelled items
        that no weak model trains on, stratified and seeded. After a weak label budget it is
        drawn from the weak_train items the budget left out (the weak models are unchanged);
        otherwise it is split off weak_train, which shrinks by ``n``."""
        pool = self.extra.get("weak_pool")
        if pool is not None:
            used = set(self.weak_train["id"])
            source = pool.select([i for i, item in enumerate(pool["id"]) if item not in used])
        else:
            source = self.weak_train
        if not 1 <= n < len(source) + (pool is not None):
            raise InvalidInputError(f"a gold slice of {n} items does not fit the {len(source)} weak_train items "
                                    "available for it")
        column = "scenario" if self.kind == "generation" else "label"
        groups = np.asarray(source["group"]) if "group" in source.column_names else None
        idx = np.sort(stratified_indices(np.asarray(source[column]), n, np.random.default_rng(seed + 1), groups))
        gold = source.select(idx)
        weak_train = self.weak_train if pool is not None else source.select(np.setdiff1d(np.arange(len(source)), idx))
        return dataclasses.replace(self, weak_train=weak_train, weak_val=gold)

    kind = "classification"

    def __repr__(self) -> str:
        return f"Task({self.name!r}, classes={self.label_names}, sizes={self.sizes()})"


@dataclass
class GenerationTask(Task):
    """A generation (slot-filling) task: every split has columns ``text`` (the input),
    ``target`` (the JSON target string, see :mod:`bayes_w2s.tasks.generation`), ``id``,
    ``intent`` and ``scenario`` (the split is stratified by scenario).
    ``label_names`` are the slot types that may appear in a target."""

    kind = "generation"

    @property
    def slot_types(self) -> list[str]:
        return self.label_names

    def __repr__(self) -> str:
        return f"GenerationTask({self.name!r}, slot_types={len(self.label_names)}, sizes={self.sizes()})"


def check_text_split(data, what: str, columns: tuple = ("text",)) -> None:
    """``data`` is a dataset (a task split) with ``columns``, whose ``text`` holds strings: a
    list, a missing column or a None text failed deep inside datasets, a tokenizer or a cache
    fingerprint. ``what`` names the argument in the message."""
    names = getattr(data, "column_names", None)
    if names is None:
        raise InvalidInputError(f"{what} must be a datasets.Dataset with a 'text' column (e.g. task.strong_train), "
                                f"got {type(data).__name__}")
    missing = [c for c in columns if c not in names]
    if missing:
        raise InvalidInputError(f"{what} has no {', '.join(repr(c) for c in missing)} column "
                                f"(columns: {list(names)})")
    bad = next((i for i, t in enumerate(data["text"]) if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidInputError(f"{what} text {bad} is {data['text'][bad]!r}, not a string")


def texts_of(data, what: str) -> list[str]:
    """The texts to predict on: a list (tuple, numpy array, pandas Series) of strings, or the
    ``text`` column of a dataset, DataFrame or dict. A bare string is refused (``list`` of it
    was one text per character), and so are a table without ``text`` (``list`` of a DataFrame
    is its column names) and non-string items."""
    if isinstance(data, (str, bytes)):
        raise InvalidInputError(f"{what} takes a list of texts or a dataset; wrap a single text in a list")
    columns = getattr(data, "column_names", None)
    if columns is None and isinstance(data, (pd.DataFrame, Mapping)):
        columns = list(data.keys())
    if columns is not None:
        if "text" not in columns:
            raise InvalidInputError(f"{what}: the data has no 'text' column (columns {list(columns)})")
        data = data["text"]
    texts = list(data)
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise InvalidInputError(f"{what}: every text must be a string, got {type(bad[0]).__name__} {bad[0]!r}")
    return [str(t) for t in texts]   # numpy's str_ too


def split_kind(split) -> str:
    """The kind (``Task.kind``) of the task a split comes from: generation splits carry the
    ``target`` column of :class:`GenerationTask`, classification splits a ``label``."""
    return GenerationTask.kind if "target" in getattr(split, "column_names", ()) else Task.kind


def resolve_data_dir(data_dir: str | os.PathLike | None, subdir: str) -> Path | None:
    """The offline folder for one dataset, or ``None`` to use the hub.

    ``data_dir`` wins over ``$BAYES_W2S_DATA``. A directory that was named explicitly but
    lacks ``subdir`` is an error (a typo should not silently trigger a hub download).
    """
    explicit = data_dir is not None
    if explicit and not isinstance(data_dir, (str, os.PathLike)):
        raise InvalidInputError(f"data_dir must be a folder path, got {type(data_dir).__name__} {data_dir!r}")
    if explicit and not str(data_dir).strip():
        raise InvalidInputError("data_dir is empty: name the folder that holds the datasets, or leave it unset")
    root = data_dir if explicit else os.environ.get(DATA_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / subdir
    if path.is_dir():
        return path
    if explicit:
        raise InvalidInputError(f"data directory {path} does not exist (task data expected there)")
    return None


def hub_load(*args, offline_folder: str | None = None, **kwargs):
    """``datasets.load_dataset`` for users with a network; without one (or offline mode) a
    one-line error instead of the hub's traceback, naming what was fetched and where offline
    data is looked for: the dataset's ``offline_folder`` under ``$BAYES_W2S_DATA``."""
    from datasets import load_dataset  # imported lazily: offline paths never touch the hub
    try:
        return load_dataset(*args, **kwargs)
    except (ConnectionError, ImportError) as exc:
        # offline mode or no network, or fsspec's missing http extras for a URL; a full disk
        # or a typo keep their own error
        where = args[0] if args else kwargs.get("path", "the dataset")
        files = kwargs.get("data_files")
        if files:                     # a builder ("json", "text") reading remote files: name one
            first = files if isinstance(files, str) else next(iter(files.values() if isinstance(files, dict)
                                                                    else files))
            where = f"{where} files ({first}, …)" if not isinstance(files, str) else f"{where} file {first}"
        root = os.environ.get(DATA_ENV)
        folder = f"its folder {offline_folder}/" if offline_folder else "its folder"
        raise MissingDataError(
            f"cannot load {where} from the hub ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); for "
            f"offline data put {folder} in the folder that ${DATA_ENV} names "
            f"({'now ' + root if root else 'unset'}) or pass data_dir (--data-dir)") from exc


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator,
                       groups: np.ndarray | None = None) -> np.ndarray:
    """Pick ``n`` indices whose class proportions match ``labels``.

    With ``groups``, whole groups are picked (stratified by the group's first label),
    so all items of a group land together; ``n`` then counts items, approximately.
    """
    if groups is not None:
        uniq, first = np.unique(groups, return_index=True)
        group_labels = labels[first]
        per_group = len(labels) / len(uniq)
        chosen = stratified_indices(group_labels, int(round(n / per_group)), rng)
        return np.flatnonzero(np.isin(groups, uniq[chosen]))
    n = min(n, len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    # hand out the rounding remainder to the largest fractional parts
    remainder = n - quota.sum()
    frac = counts / counts.sum() * n - quota
    quota[np.argsort(-frac)[:remainder]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
              for c, q in zip(classes, quota)]
    out = np.concatenate(picked) if picked else np.empty(0, dtype=int)
    return rng.permutation(out)


def three_way_split(ds: Dataset, sizes: dict[str, int | None], seed: int,
                    fixed_test: Dataset | None = None, stratify_by: str = "label") -> dict[str, Dataset]:
    """Seeded, disjoint ``weak_train / strong_train / test`` splits, stratified by the
    column ``stratify_by``.

    ``sizes[s] = None`` takes everything left for that split. With ``fixed_test`` (an
    official test set) the test split is a stratified sample of it instead of ``ds``.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(ds[stratify_by])
    groups = np.asarray(ds["group"]) if "group" in ds.column_names else None
    remaining = np.arange(len(ds))
    out: dict[str, Dataset] = {}
    order = ["test", "weak_train", "strong_train"]
    for name in order:
        if name == "test" and fixed_test is not None:
            t_labels = np.asarray(fixed_test[stratify_by])
            n = sizes.get("test") or len(fixed_test)
            t_groups = np.asarray(fixed_test["group"]) if "group" in fixed_test.column_names else None
            out["test"] = fixed_test.select(np.sort(stratified_indices(t_labels, n, rng, t_groups)))
            continue
        n = sizes.get(name)
        sub_groups = groups[remaining] if groups is not None else None
        if n is None:
            idx = remaining
        else:
            idx = remaining[stratified_indices(labels[remaining], n, rng, sub_groups)]
        out[name] = ds.select(np.sort(idx))
        remaining = np.setdiff1d(remaining, idx)
    for name, split in out.items():
        if len(split) == 0:
            raise InvalidInputError(
                f"split {name!r} is empty (pool of {len(ds)} items, sizes {sizes}); "
                "ask for fewer items or give more data")
    for name, split in out.items():
        asked = sizes.get(name)
        if asked is not None and len(split) < 0.99 * asked:   # stratified groups may round a little
            warnings.warn(f"split {name!r}: {asked} items asked for, {len(split)} available", UserWarning, stacklevel=2)
    return {name: out[name] for name in SPLITS}
