"""Tasks: datasets split into ``weak_train | strong_train | test``.

>>> task = load_task("sst2", data_dir="../shared/data", seed=0)   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MissingDataError, UnknownNameError, check_seed
from . import classification as _c
from . import generation as _g
from .base import DATA_ENV, SPLITS, GenerationTask, Task, resolve_data_dir, split_kind, three_way_split

#: name -> (loader, label names)
CLASSIFICATION_TASKS = {
    "sst2": (_c.load_sst2, _c.SST2_LABELS),
    "agnews": (_c.load_agnews, _c.AGNEWS_LABELS),
    "cosmosqa": (_c.load_cosmosqa, _c.BINARY_QA_LABELS),
    "sciq": (_c.load_sciq, _c.BINARY_QA_LABELS),
    "snips_intent": (_c.load_snips_intent, _c.SNIPS_INTENTS),
}

#: name -> loader of (pool, official test or None); targets are slot JSON strings
GENERATION_TASKS = {
    "slurp": _g.load_slurp,
    "snips": _g.load_snips,
}

#: tasks read from another task's offline folder
DATA_FOLDERS = {"snips_intent": "snips"}

DEFAULT_SIZES = {"weak_train": 1000, "strong_train": 2000, "test": 1000}


def available_tasks() -> list[str]:
    return sorted([*CLASSIFICATION_TASKS, *GENERATION_TASKS])


def task_kind(name: str) -> str:
    """``Task.kind`` of the task :func:`load_task` would return for ``name``, without loading
    it: ``"generation"`` for the slot-filling tasks, ``"classification"`` otherwise."""
    return GenerationTask.kind if name in GENERATION_TASKS else Task.kind


def check_sizes(sizes) -> dict:
    """``sizes`` as given to :func:`load_task`: only split names as keys, each a positive
    integer or None (everything left). A typo must not silently fall back to a default."""
    if sizes is None:
        return {}
    if not isinstance(sizes, dict):
        raise InvalidInputError(f"sizes must be a mapping of split → items, e.g. {DEFAULT_SIZES}, got {sizes!r}")
    unknown = sorted(set(sizes) - set(SPLITS), key=str)
    if unknown:
        raise InvalidInputError(f"sizes: unknown split(s) {unknown}; splits are {list(SPLITS)}")
    for split, n in sizes.items():
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise InvalidInputError(f"sizes[{split!r}] must be a positive integer or None (all that remain), got {n!r}")
    return dict(sizes)


def _folder(name: str, data_dir):
    return resolve_data_dir(data_dir, DATA_FOLDERS.get(name, name))


def _read_offline(name: str, loader, data_dir):
    """Run a task's loader; a missing, empty or malformed offline file becomes an error
    that names the task and the file instead of a raw traceback."""
    import pandas as pd
    try:
        return loader(data_dir)
    except (InvalidInputError, MissingDataError):
        raise
    except FileNotFoundError as exc:
        raise InvalidInputError(f"task {name!r}: offline data incomplete, {exc.filename or exc} is missing "
                                f"(data folder {_folder(name, data_dir)})") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"task {name!r}: a data file is not UTF-8 text ({exc})") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, KeyError, TypeError,
            AttributeError) as exc:   # a record of the wrong shape (a null field, a list, a renamed column)
        raise InvalidInputError(f"task {name!r}: cannot read its offline data in "
                                f"{_folder(name, data_dir)} ({type(exc).__name__}: {exc})") from None


def load_task(name: str, data_dir=None, seed: int = 0, sizes: dict | None = None,
              text_column: str = "text", label_column: str = "label",
              label_names: list[str] | None = None) -> Task:
    """Load a task and split it (seeded, stratified) into weak_train / strong_train / test.

    Args:
        name: a registered task (``available_tasks()``; ``slurp`` and ``snips`` are
            generation tasks and give a :class:`GenerationTask`) or the path of a CSV / TSV /
            JSONL file with ``text_column`` and ``label_column``.
        data_dir: folder holding the offline copies (``sst2/``, ``agnews/`` …); defaults
            to ``$BAYES_W2S_DATA``; without either the hub is used.
        seed: split seed.
        sizes: items per split (``None`` = all that remain); defaults to
            ``DEFAULT_SIZES``. Tasks with an official test set sample the test split from it.
            Keys other than the three split names are an error.
    """
    sizes = {**DEFAULT_SIZES, **check_sizes(sizes)}
    if not isinstance(name, (str, Path)):
        raise InvalidInputError(f"task must be a task name or a file path, got {type(name).__name__} {name!r}")
    name = str(name)
    seed = check_seed(seed, "load_task")
    if name in GENERATION_TASKS:
        pool, official_test = _read_offline(name, GENERATION_TASKS[name], data_dir)
        parts = three_way_split(pool, sizes, seed, fixed_test=official_test, stratify_by="scenario")
        slot_types = _g.slot_types_of(pool, *([official_test] if official_test is not None else []))
        return GenerationTask(name=name, label_names=slot_types,
                              source=str(resolve_data_dir(data_dir, name) or "official files online"),
                              **parts)
    if name in CLASSIFICATION_TASKS:
        loader, names = CLASSIFICATION_TASKS[name]
        pool, official_test = _read_offline(name, loader, data_dir)
        online = "official files online" if name in DATA_FOLDERS else "huggingface hub"
        source = str(_folder(name, data_dir) or online)
    elif Path(name).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        pool, names = _c.load_table(name, text_column, label_column, label_names)
        official_test, source = None, str(name)
    else:
        raise UnknownNameError(
            f"unknown task {name!r}; known tasks: {available_tasks()}, "
            "or give the path of a .csv/.tsv/.jsonl file")
    parts = three_way_split(pool, sizes, seed, fixed_test=official_test)
    return Task(name=Path(name).stem if name not in CLASSIFICATION_TASKS else name,
                label_names=list(names), source=source, **parts)


__all__ = ["check_sizes", "Task", "GenerationTask", "load_task", "available_tasks", "task_kind", "split_kind", "SPLITS",
           "DATA_ENV", "three_way_split"]
