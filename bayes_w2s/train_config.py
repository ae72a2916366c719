"""Training settings: the dataclasses that are also the YAML schema of ``weak_train``,
``student_train`` and a method's ``preference`` block.

This module imports neither torch nor transformers, so that a config can be validated in
well under a second (``bayes-w2s validate``); the training code that uses these settings
re-exports them where they used to live (``bayes_w2s.training.TrainConfig``,
``bayes_w2s.weak.generators.GeneratorConfig``, ``bayes_w2s.student.preference.PreferenceConfig``).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidInputError

#: classifier training modes (see :mod:`bayes_w2s.backbones`)
MODES = ("head", "lora", "full")
#: generator training modes (``head``: taggers only — frozen encoder, trained head)
GEN_MODES = ("full", "lora", "head")
PREFERENCE_LOSSES = ("dpo", "cdpo", "cdpo_pair", "robust", "ipo", "best_of_n")
#: how a generation student decides "no slot" (see bayes_w2s.student.decoding)
NO_SLOT_DECISIONS = ("greedy", "calibrated")
#: ``oracle`` ranks by the hidden references: a diagnostic bound, not a weak-to-strong method
RANKERS = ("weak", "posterior", "oracle")
#: which candidate a pair rejects: the ranker's worst, or the student's own top beam (on-policy)
REJECTED = ("worst", "top")
#: settings that change how a run is logged, not the trained weights (left out of cache keys)
LOGGING_FIELDS = ("logging_steps", "report_to", "logging_dir")


#: help text of the logging settings every trainer config shares (``TrainingArguments`` names)
LOGGING_HELP = {
    "logging_steps": "log the training loss (and learning rate) every N optimiser steps; 0 = no logging",
    "report_to": "where logs go: none | tensorboard | wandb | … (TrainingArguments.report_to; needs logging_steps > 0)",
    "logging_dir": "folder of TensorBoard event files (default: <output_dir>/run-<key>/runs for a classifier, "
                   "<output_dir>/runs for a generator, or ./runs when output_dir is unset)",
}

#: ``report_to`` values: transformers' ``INTEGRATION_TO_CALLBACK`` keys (a test keeps them in step)
#: plus ``none`` / ``all``; written out so that checking a config imports no transformers
REPORT_TO = ("none", "all", "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte",
             "kubeflow", "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb")


def check_folder(owner: str, name: str, value) -> None:
    """``None`` or a folder path that is not a file (``output_dir=5`` and a file path failed
    only when training began)."""
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise InvalidInputError(f"{owner}.{name} must be a folder path or None, got {value!r}")
    if Path(value).is_file():
        raise InvalidInputError(f"{owner}.{name} {value} is a file, not a folder")


#: report_to names checked for their package before any training (any one of the modules will do)
REPORT_TO_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
                     "comet_ml": ("comet_ml",), "clearml": ("clearml",), "neptune": ("neptune",),
                     "dvclive": ("dvclive",), "trackio": ("trackio",)}


def check_report_to(owner: str, value) -> None:
    """An unknown ``report_to`` failed when the first Trainer was built, after the weak models trained."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(f"{owner}.report_to must be a name or a list of names, got {value!r}")
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise InvalidInputError(f"{owner}.report_to: unknown {unknown}; use {list(REPORT_TO)}")
    absent = [n for n in names if n in REPORT_TO_MODULES
              and all(importlib.util.find_spec(m) is None for m in REPORT_TO_MODULES[n])]
    if absent:   # transformers raised its RuntimeError when the first Trainer was built
        raise InvalidInputError(f"{owner}.report_to {absent} needs the package(s) {absent}: pip install them, "
                                "or report_to: none")


def is_finite_number(v, integer: bool = False) -> bool:
    """A real (or, with ``integer``, whole) finite number; a bool is never one. Every trainer
    setting is checked with it: inf or NaN would train to NaN without a word."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    # an int is finite, and np.isfinite fails on one beyond int64 (batch_size: 1e20)
    return isinstance(v, kinds) and not isinstance(v, (bool, np.bool_)) and (
        isinstance(v, (int, np.integer)) or bool(np.isfinite(v)))


@dataclass
class TrainConfig:
    """How one classifier (weak model or student) is trained."""

    mode: str = field(default="head", metadata={"help": "head (frozen backbone, cached features) | lora | full"})
    epochs: float = field(default=10.0, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"help": "items per optimiser step (split over the processes of a launch)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    max_length: int = field(default=128, metadata={"help": "tokens per text (longer ones are truncated)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (mode=lora)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (mode=lora)"})
    eval_batch_size: int = field(default=64, metadata={"help": "batch size for prediction"})
    output_dir: str | None = field(default=None, metadata={"help": "checkpoints (mode=lora/full); temp dir if unset"})
    save_steps: int = field(default=0, metadata={"help": "checkpoint every N steps to output_dir/run-<key of model, settings, seed, loss and data> (0 = never); a rerun of the same training resumes"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU)"})
    logging_steps: int = field(default=0, metadata={"help": LOGGING_HELP["logging_steps"]})
    report_to: str | list[str] = field(default="none", metadata={"help": LOGGING_HELP["report_to"]})
    logging_dir: str | None = field(default=None, metadata={"help": LOGGING_HELP["logging_dir"]})

    def __post_init__(self):
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown training mode {self.mode!r}; use one of {MODES}")
        number = is_finite_number
        for name, integer, low in (("epochs", False, 0), ("learning_rate", False, 0), ("batch_size", True, 0),
                                   ("max_length", True, 0), ("eval_batch_size", True, 0), ("lora_r", True, 0),
                                   ("lora_alpha", True, 0)):
            value = getattr(self, name)
            if not number(value, integer) or not value > low:
                raise InvalidInputError(f"TrainConfig.{name} must be a positive finite "
                                        f"{'integer' if integer else 'number'}, got {value!r}")
        if not number(self.weight_decay) or self.weight_decay < 0:
            raise InvalidInputError(f"TrainConfig.weight_decay must be a finite number ≥ 0, got {self.weight_decay!r}")
        # transformers ≥ 5 reads warmup_steps < 1 as a fraction and ≥ 1 as a step count (1.0: one step)
        if not number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise InvalidInputError(f"TrainConfig.warmup_ratio must be a number in [0, 1), got {self.warmup_ratio!r}")
        if not number(self.save_steps, integer=True) or self.save_steps < 0:
            raise InvalidInputError(f"TrainConfig.save_steps must be an integer ≥ 0, got {self.save_steps!r}")
        if not number(self.logging_steps, integer=True) or self.logging_steps < 0:   # -1 reached TrainingArguments
            raise InvalidInputError(f"TrainConfig.logging_steps must be an integer ≥ 0, got {self.logging_steps!r}")
        if not isinstance(self.bf16, (bool, np.bool_)):
            raise InvalidInputError(f"TrainConfig.bf16 must be true or false, got {self.bf16!r}")
        if self.save_steps and not self.output_dir:
            raise InvalidInputError("TrainConfig.save_steps needs an output_dir to write checkpoints to")
        check_folder("TrainConfig", "output_dir", self.output_dir)
        check_folder("TrainConfig", "logging_dir", self.logging_dir)
        check_report_to("TrainConfig", self.report_to)

    def key(self) -> str:
        """The settings that change the trained weights (for cache keys)."""
        d = asdict(self)
        for k in ("eval_batch_size", "output_dir", "save_steps", *LOGGING_FIELDS):
            d.pop(k)
        return repr(sorted(d.items()))


@dataclass
class GeneratorConfig:
    """How one weak generator (or a strong generation student) is trained and decodes."""

    mode: str = field(default="lora", metadata={"help": "full | lora | head (taggers: frozen encoder, trained head)"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=16, metadata={"help": "items per optimiser step (split over the processes of a launch)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    max_length: int = field(default=96, metadata={"help": "tokens of prompt + completion (longer are truncated)"})
    max_new_tokens: int = field(default=48, metadata={"help": "generation length limit"})
    n_best: int = field(default=4, metadata={"help": "hypotheses per item (beam width for causal LMs)"})
    eval_batch_size: int = field(default=64, metadata={"help": "prompts per generation / scoring batch"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (mode=lora)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (mode=lora)"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU)"})
    logging_steps: int = field(default=0, metadata={"help": LOGGING_HELP["logging_steps"]})
    report_to: str | list[str] = field(default="none", metadata={"help": LOGGING_HELP["report_to"]})
    logging_dir: str | None = field(default=None, metadata={"help": LOGGING_HELP["logging_dir"]})

    def __post_init__(self):
        if self.mode not in GEN_MODES:
            raise InvalidInputError(f"unknown generator mode {self.mode!r}; use one of {GEN_MODES}")
        for name in ("epochs", "batch_size", "learning_rate", "max_length", "max_new_tokens", "n_best",
                     "eval_batch_size", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            integer = name not in ("epochs", "learning_rate")
            if not is_finite_number(value, integer) or not value > 0:
                raise InvalidInputError(f"GeneratorConfig.{name} must be positive (a finite "
                                        f"{'integer' if integer else 'number'}), got {value!r}")
        for name, high in (("weight_decay", np.inf), ("warmup_ratio", 1.0)):
            value = getattr(self, name)
            # warmup_ratio 1.0 would be one step (TrainConfig)
            if not is_finite_number(value) or not 0 <= value <= high or (high == 1.0 and value == 1.0):
                raise InvalidInputError(f"GeneratorConfig.{name} must be a finite number ≥ 0"
                                        f"{' and < 1' if high == 1.0 else ''}, got {value!r}")

        if isinstance(self.logging_steps, bool) or not isinstance(self.logging_steps, (int, np.integer)) \
                or self.logging_steps < 0:
            raise InvalidInputError(f"GeneratorConfig.logging_steps must be an integer ≥ 0, got {self.logging_steps!r}")
        check_folder("GeneratorConfig", "logging_dir", self.logging_dir)
        check_report_to("GeneratorConfig", self.report_to)

    def key(self) -> str:
        d = asdict(self)
        for k in ("eval_batch_size", "bf16", *LOGGING_FIELDS):
            d.pop(k)
        return repr(sorted(d.items()))


@dataclass
class PreferenceConfig:
    """The preference stage after SFT. Also the YAML schema of a method's ``preference:``."""

    loss: str = field(default="cdpo_pair", metadata={
        "help": "dpo (TRL sigmoid) | cdpo (global ε) | cdpo_pair (ε_i = 1 − p_i) | robust (TRL robust, global ε) | "
                "ipo (TRL ipo; β is IPO's τ) | best_of_n (fine-tune on the chosen candidates alone, no rejected "
                "term: reward-ranked fine-tuning, RAFT / ReST; with ranker=posterior the chosen is the word "
                "posterior's minimum-Bayes-risk candidate)"})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature β > 0"})
    epsilon: float = field(default=0.1, metadata={"help": "global label-noise rate ε in [0, 0.5) (cdpo, robust)"})
    n_candidates: int = field(default=10, metadata={"help": "N: beam width of the student's N-best list (≥ 2)"})
    ranker: str = field(default="weak", metadata={
        "help": "weak: weighted mean token log-prob of the weak ensemble (the paper) | posterior: expected SLU-F1 "
                "under the word posterior | oracle: SLU-F1 against strong_train's hidden references (a diagnostic: "
                "what the same candidates and loss give with a perfect ranker; its row's kind is 'oracle')"})
    rejected: str = field(default="worst", metadata={
        "help": "worst: the ranker's lowest candidate (the paper) | top: the student's own most likely candidate, "
                "wherever the ranker prefers another (on-policy: the pair moves what greedy decoding writes; "
                "items whose top candidate is already the best keep best vs worst)"})
    posterior_model: str = field(default="word_reliability_conf", metadata={
        "help": "word posterior that gives p (and ranks, with ranker=posterior)"})
    posterior_samples: int = field(default=64, metadata={"help": "draws of the true target per item for p"})
    max_items: int | None = field(default=None, metadata={"help": "strong_train prompts used for pairs (None: all)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the pairs"})
    batch_size: int = field(default=8, metadata={"help": "pairs per step"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    min_p: float = field(default=0.0, metadata={
        "help": "keep only pairs whose posterior probability p that chosen beats rejected is ≥ min_p (a margin)"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "α of the SFT + DPO mix (RPO): α × the chosen completions' mean token NLL is added to the "
                "preference loss, anchoring the policy to the chosen outputs (0 = off)"})
    mode: str = field(default="lora", metadata={"help": "lora | full"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (mode=lora)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (mode=lora)"})

    def __post_init__(self):
        if self.loss not in PREFERENCE_LOSSES:
            raise InvalidInputError(f"unknown preference loss {self.loss!r}; use one of {PREFERENCE_LOSSES}")
        if self.ranker not in RANKERS:
            raise InvalidInputError(f"unknown ranker {self.ranker!r}; use one of {RANKERS}")
        if self.rejected not in REJECTED:
            raise InvalidInputError(f"unknown rejected {self.rejected!r}; use one of {REJECTED}")
        if not 0.0 <= self.epsilon < 0.5:
            raise InvalidInputError(f"epsilon must be in [0, 0.5), got {self.epsilon}")
        if not self.beta > 0:
            raise InvalidInputError(f"beta must be > 0, got {self.beta}")
        if self.n_candidates < 2:
            raise InvalidInputError(f"n_candidates (N) must be ≥ 2 to make a pair, got {self.n_candidates}")
        if self.mode not in ("lora", "full"):
            raise InvalidInputError(f"preference mode must be 'lora' or 'full', got {self.mode!r}")
        for name in ("posterior_samples", "batch_size", "epochs", "learning_rate", "beta", "lora_r", "lora_alpha",
                     "n_candidates", "warmup_ratio", "epsilon", "min_p", "sft_weight"):
            value, integer = getattr(self, name), name in ("posterior_samples", "batch_size", "lora_r", "lora_alpha",
                                                           "n_candidates")
            if not is_finite_number(value, integer):   # found otherwise only after the SFT stage
                raise InvalidInputError(f"{name} must be a finite {'integer' if integer else 'number'}, got {value!r}")
        for name in ("posterior_samples", "batch_size", "epochs", "learning_rate", "lora_r", "lora_alpha"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:   # 1.0 would be one step (TrainConfig)
            raise InvalidInputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_items is not None and self.max_items < 1:
            raise InvalidInputError(f"max_items must be ≥ 1 or None, got {self.max_items}")
        if not 0.0 <= self.min_p < 1.0:
            raise InvalidInputError(f"min_p must be in [0, 1), got {self.min_p}")
        if not 0.0 <= self.sft_weight < float("inf"):
            raise InvalidInputError(f"sft_weight must be a finite number ≥ 0, got {self.sft_weight}")
        if self.loss == "best_of_n" and self.sft_weight:
            raise InvalidInputError("best_of_n is the chosen completions' NLL alone: sft_weight does not apply")


@dataclass
class DecodingConfig:
    """How a generation student writes its test outputs. Also the YAML schema of a method's
    ``decoding:`` (it changes no training: rows that differ only here share one student)."""

    constrained: bool = field(default=False, metadata={
        "help": "decode only well-formed slot JSON: keys among the task's slot types, each filler a run of whole "
                "words of the utterance (a LogitsProcessor); also used for the N-best of a preference stage"})
    no_slot: str = field(default="greedy", metadata={
        "help": "greedy: {} whenever decoding picks it | calibrated: {} for the items of highest P({}) under the "
                "student, thresholded so that a fraction no_slot_rate of strong_train gets {}; the others are "
                "decoded with {} forbidden"})
    no_slot_rate: float | None = field(default=None, metadata={
        "help": "calibrated: the {} rate to match on strong_train; None = the word posterior's expected {} rate "
                "(for other targets: the {} rate of the training targets)"})

    def __post_init__(self):
        if not isinstance(self.constrained, (bool, np.bool_)):
            raise InvalidInputError(f"decoding.constrained must be true or false, got {self.constrained!r}")
        if self.no_slot not in NO_SLOT_DECISIONS:
            raise InvalidInputError(f"decoding.no_slot must be one of {NO_SLOT_DECISIONS}, got {self.no_slot!r}")
        if self.no_slot_rate is not None and not 0.0 <= self.no_slot_rate <= 1.0:
            raise InvalidInputError(f"decoding.no_slot_rate must be in [0, 1], got {self.no_slot_rate}")
        if self.no_slot_rate is not None and self.no_slot != "calibrated":
            raise InvalidInputError("decoding.no_slot_rate is a setting of no_slot: calibrated")

    def key(self) -> str:
        return repr(sorted(asdict(self).items()))
