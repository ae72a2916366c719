"""Tasks: datasets split into ``weak_train | strong_train | test``.

>>> task = load_task("sst2", data_dir="../shared/data", seed=0)   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UnknownNameError
from . import classification as _c
from . import generation as _g
from .base import DATA_ENV, SPLITS, GenerationTask, Task, resolve_data_dir, split_kind, three_way_split

#: name -> (loader, label names)
CLASSIFICATION_TASKS = {
    "sst2": (_c.load_sst2, _c.SST2_LABELS),
    "agnews": (_c.load_agnews, _c.AGNEWS_LABELS),
    "cosmosqa": (_c.load_cosmosqa, _c.BINARY_QA_LABELS),
    "sciq": (_c.load_sciq, _c.BINARY_QA_LABELS),
}

#: name -> loader of (pool, official test or None); targets are slot JSON strings
GENERATION_TASKS = {
    "slurp": _g.load_slurp,
    "snips": _g.load_snips,
}

DEFAULT_SIZES = {"weak_train": 1000, "strong_train": 2000, "test": 1000}


def available_tasks() -> list[str]:
    return sorted([*CLASSIFICATION_TASKS, *GENERATION_TASKS])


def task_kind(name: str) -> str:
    """``Task.kind`` of the task :func:`load_task` would return for ``name``, without loading
    it: ``"generation"`` for the slot-filling tasks, ``"classification"`` otherwise."""
    return GenerationTask.kind if name in GENERATION_TASKS else Task.kind


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
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    if name in GENERATION_TASKS:
        pool, official_test = GENERATION_TASKS[name](data_dir)
        parts = three_way_split(pool, sizes, seed, fixed_test=official_test, stratify_by="scenario")
        slot_types = _g.slot_types_of(pool, *([official_test] if official_test is not None else []))
        return GenerationTask(name=name, label_names=slot_types,
                              source=str(resolve_data_dir(data_dir, name) or "official files online"),
                              **parts)
    if name in CLASSIFICATION_TASKS:
        loader, names = CLASSIFICATION_TASKS[name]
        pool, official_test = loader(data_dir)
        source = str(resolve_data_dir(data_dir, name) or "huggingface hub")
    elif Path(name).suffix in (".csv", ".tsv", ".jsonl", ".json"):
        pool, names = _c.load_table(name, text_column, label_column, label_names)
        official_test, source = None, str(name)
    else:
        raise UnknownNameError(
            f"unknown task {name!r}; known tasks: {available_tasks()}, "
            "or give the path of a .csv/.tsv/.jsonl file")
    parts = three_way_split(pool, sizes, seed, fixed_test=official_test)
    return Task(name=Path(name).stem if name not in CLASSIFICATION_TASKS else name,
                label_names=list(names), source=source, **parts)


__all__ = ["Task", "GenerationTask", "load_task", "available_tasks", "task_kind", "split_kind", "SPLITS", "DATA_ENV", "three_way_split"]
