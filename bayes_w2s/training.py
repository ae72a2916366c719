"""The training layer: one builder of ``TrainingArguments`` (and of TRL's configs), one
LoRA builder and one train-then-merge step, shared by classifiers (weak models and
students, :class:`Classifier`), weak generators, SFT students and the preference stage.

Weak models (on ground truth) and strong students (on weak or posterior targets) train
through the same :class:`Classifier`; they differ only in the targets and the loss.
``Trainer`` brings the optimiser, schedule, seeding, progress bars, checkpoints, logging
(TensorBoard …) and ``accelerate launch`` (multi-GPU, DeepSpeed/FSDP) — none of that is ours.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from . import distributed
from .backbones import FeatureCache, PooledClassifier, build_classifier, classifier_config
from .cards import ModelCard, load_card
from .threads import intra_op_threads
from .errors import InvalidInputError
from .train_config import MODES, TrainConfig  # noqa: F401  (TrainConfig is re-exported here)

log = logging.getLogger(__name__)

#: batch keys that carry supervision; popped before the model's forward
TARGET_KEYS = ("target_probs", "weight", "weak_probs")


class DictDataset(torch.utils.data.Dataset):
    """Rows of a dict of equal-length arrays / lists."""

    def __init__(self, columns: dict):
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise InvalidInputError(f"columns of different lengths: {lengths}")
        self.columns = columns
        self.n = next(iter(lengths.values()))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


class Collator:
    """Tokenises raw ``text`` (full / LoRA modes) and stacks everything else."""

    def __init__(self, tokenizer=None, max_length: int = 128):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, rows: list[dict]) -> dict:
        batch = {}
        if "text" in rows[0]:
            enc = self.tokenizer([r["text"] for r in rows], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            batch.update(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        for key in rows[0]:
            if key != "text":
                batch[key] = torch.as_tensor(np.stack([np.asarray(r[key]) for r in rows]), dtype=torch.float32)
        return batch


LossFn = Callable[[torch.Tensor, dict, float], torch.Tensor]


class ClassifierTrainer(Trainer):
    """``Trainer`` whose loss is any ``loss_fn(logits, targets, progress)``.

    ``Trainer`` computes a loss from ``labels`` only; weak-to-strong losses need soft
    targets, per-item weights, every weak model's probabilities and the training progress
    (for warm-up / annealing), so ``compute_loss`` is overridden to pass them through.
    """

    def __init__(self, *args, loss_fn: LossFn, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = {k: inputs.pop(k) for k in TARGET_KEYS if k in inputs}
        outputs = model(**inputs)
        progress = self.state.global_step / max(1, self.state.max_steps)
        loss = self.loss_fn(outputs["logits"], targets, progress)
        return (loss, outputs) if return_outputs else loss


# -- the training layer ----------------------------------------------------------------------

def training_arguments(cfg, seed: int, output_dir: str, *, args_cls=None, **overrides):
    """The arguments of every trainer here, from a :class:`TrainConfig`, a
    :class:`~bayes_w2s.train_config.GeneratorConfig` or a
    :class:`~bayes_w2s.train_config.PreferenceConfig`.

    ``args_cls`` is ``TrainingArguments`` (default) or a TRL config (``SFTConfig``,
    ``DPOConfig``); ``overrides`` are passed through. ``warmup_ratio`` goes to
    ``warmup_steps``, which transformers ≥ 5 reads as a fraction of the training steps when
    below 1. ``cfg.batch_size`` is the batch per optimiser step: under ``accelerate launch``
    each process takes an equal share of it (:func:`~bayes_w2s.distributed.batch_arguments`),
    so a run on several processes steps through the same batches as one process. Activation
    checkpointing (on by default in TRL) trades ~40% more compute for memory, the wrong
    trade on a CPU with short sequences, so it is off unless overridden.
    """
    args_cls = args_cls or TrainingArguments
    save_steps = getattr(cfg, "save_steps", 0)
    args = dict(
        output_dir=output_dir, num_train_epochs=cfg.epochs, **distributed.batch_arguments(cfg.batch_size),
        learning_rate=cfg.learning_rate, weight_decay=getattr(cfg, "weight_decay", 0.0),
        warmup_steps=getattr(cfg, "warmup_ratio", 0.0), lr_scheduler_type="linear", seed=seed, data_seed=seed,
        bf16=getattr(cfg, "bf16", False), save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        remove_unused_columns=False, disable_tqdm=False, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(), **logging_arguments(cfg),
        # DDP: our models' buffers (feature statistics, position ids) never change in training,
        # so re-broadcasting them before every step is pure overhead
        ddp_broadcast_buffers=False)
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(args_cls)}:
        args["activation_checkpointing"] = False
    args.update(overrides)
    try:
        return args_cls(**args)
    except ValueError as exc:   # e.g. bf16 on a machine without bf16 support: transformers' ValueError
        if "bf16" not in str(exc):
            raise
        raise InvalidInputError(f"bf16: true, but this machine cannot train in bf16 ({str(exc).splitlines()[0]}); "
                                "set bf16: false") from None


def logging_arguments(cfg) -> dict:
    """``logging_steps`` / ``report_to`` of a config: 0 steps = no logging, unless a
    ``report_to`` destination is set (then every 10 steps)."""
    report_to = getattr(cfg, "report_to", "none") or "none"
    reporting = report_to not in ("none", ["none"], [])
    return {"report_to": report_to, "logging_steps": getattr(cfg, "logging_steps", 0) or (10 if reporting else 10**9)}


def lora_config(cfg, task_type: str | None = None, **overrides):
    """The LoRA adapter every LoRA run trains (``cfg.lora_r`` / ``cfg.lora_alpha``, all linear
    layers, no dropout): classifiers, taggers, causal LMs and the preference stage."""
    from peft import LoraConfig

    return LoraConfig(**{"r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": 0.0,
                         "target_modules": "all-linear", "task_type": task_type, **overrides})


@dataclass
class TrainOutcome:
    """What :func:`train_then_merge` returns: the trained model (LoRA merged, eval mode),
    the ``Trainer`` log history and the wall time of ``trainer.train()``."""

    model: torch.nn.Module
    history: list
    train_seconds: float


def train_then_merge(trainer: Trainer, logging_dir: str | None = None, resume_from_checkpoint=None) -> TrainOutcome:
    """Train, then fold LoRA adapters into the weights (generation and prediction at the
    base model's speed, and a plain model to save). TensorBoard events go to
    ``logging_dir`` (default ``<output_dir>/runs/…``; ``./runs/…`` when ``output_dir`` is a
    temporary folder that disappears after training)."""
    _route_tensorboard(trainer, logging_dir)
    _keep_warmup_within_the_run(trainer)
    out = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return TrainOutcome(model.eval(), trainer.state.log_history, out.metrics.get("train_runtime", float("nan")))


def _keep_warmup_within_the_run(trainer: Trainer) -> None:
    """transformers rounds a warm-up *fraction* up to whole steps, and its linear warm-up
    starts at lr 0, so a run of one step (a small dataset, one epoch) trained at lr 0 and
    returned its starting weights. The number of steps is known only inside ``train()``, so
    every trainer here (ours and TRL's) gets its ``create_scheduler`` wrapped: the warm-up is
    capped at all but the last step. Runs longer than ``1 / warmup_ratio`` steps are unchanged."""
    create = trainer.create_scheduler

    def create_scheduler(num_training_steps: int, optimizer=None):
        if trainer.lr_scheduler is None and trainer.args.get_warmup_steps(num_training_steps) >= num_training_steps:
            trainer.args.warmup_steps = max(0, num_training_steps - 1)
        return create(num_training_steps, optimizer)

    trainer.create_scheduler = create_scheduler


def _route_tensorboard(trainer: Trainer, logging_dir: str | None) -> None:
    from transformers.integrations import TensorBoardCallback
    from transformers.integrations.integration_utils import default_logdir

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.logging_dir is None:
            temporary = Path(trainer.args.output_dir).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
            root = Path(logging_dir) if logging_dir else (Path("runs") if temporary else None)
            if root is not None:
                cb.logging_dir = str(root / default_logdir())


def _loss_identity(loss_fn) -> str:
    """The same string in every process for the same loss: a function's qualified name, a
    ``functools.partial``'s function and arguments, a loss object's repr (the built-in losses
    with settings are dataclasses). Two closures of one function with different captured
    values look the same: give such a loss a repr."""
    if isinstance(loss_fn, functools.partial):
        return repr((_loss_identity(loss_fn.func), loss_fn.args, sorted(loss_fn.keywords.items())))
    name = getattr(loss_fn, "__qualname__", None)
    return f"{getattr(loss_fn, '__module__', '')}.{name}" if name else repr(loss_fn)


class Classifier:
    """A model card trained as a classifier in one of the modes of :data:`MODES`.

    Attributes (after ``fit``):
        model: the trained :class:`PooledClassifier` (LoRA adapters merged into the backbone).
        history: ``Trainer`` log history (loss per logging step, runtime).
        train_seconds: wall time of ``trainer.train()``.
    """

    def __init__(self, card: ModelCard | str, num_classes: int, config: TrainConfig | None = None,
                 prefer_offline: bool = True, label_names: list | None = None):
        self.card = load_card(card) if isinstance(card, str) else card
        self.num_classes = num_classes
        self.label_names = list(label_names) if label_names is not None else None
        self.config = config or TrainConfig()
        self.prefer_offline = prefer_offline
        self.features = FeatureCache(self.card, self.config.max_length, prefer_offline=prefer_offline) \
            if self.config.mode == "head" else None
        self.model: PooledClassifier | None = None
        self.tokenizer = None
        self.history: list[dict] = []
        self.train_seconds = float("nan")

    # -- inputs --------------------------------------------------------------------------
    def _inputs(self, texts: list[str]) -> dict:
        if self.config.mode == "head":
            return {"features": self.features(list(texts))}
        return {"text": list(texts)}

    def _ensure_model(self, feature_dim: int | None = None):
        if self.model is not None:
            return
        if self.config.mode == "head":
            self.model = PooledClassifier(classifier_config(self.card, self.num_classes, feature_dim, True,
                                                            max_length=self.config.max_length,
                                                            label_names=self.label_names))
        else:
            self.tokenizer, self.model = build_classifier(
                self.card, self.num_classes, self.config.mode, self.config.lora_r, self.config.lora_alpha,
                self.prefer_offline, self.config.max_length, self.label_names)

    # -- training ------------------------------------------------------------------------
    def fit(self, texts: list[str], target_probs: np.ndarray, loss_fn: LossFn, seed: int = 0,
            weights: np.ndarray | None = None, weak_probs: np.ndarray | None = None,
            trainer_cls=ClassifierTrainer, **arg_overrides) -> "Classifier":
        if len(texts) == 0:
            raise InvalidInputError("cannot train on an empty dataset")
        if len(target_probs) != len(texts):
            raise InvalidInputError(f"{len(target_probs)} targets for {len(texts)} texts")
        cols = self._inputs(texts)
        cols["target_probs"] = np.asarray(target_probs, dtype=np.float32)
        if weights is not None:
            cols["weight"] = np.asarray(weights, dtype=np.float32)
        if weak_probs is not None:
            cols["weak_probs"] = np.asarray(weak_probs, dtype=np.float32)
        torch.manual_seed(seed)  # the head's initialisation
        self._ensure_model(cols["features"].shape[1] if "features" in cols else None)
        if "features" in cols:  # standardise frozen features: one lr works for every backbone
            feats = cols["features"]
            self.model.set_feature_stats(feats.mean(0), feats.std(0), constant=feats.max(0) == feats.min(0))
        with tempfile.TemporaryDirectory() as tmp, intra_op_threads(1 if self.config.mode == "head" else None):
            # a head uses every parameter: DDP need not search the graph for unused ones each step
            unused = {"ddp_find_unused_parameters": False} if self.config.mode == "head" else {}
            out_dir = tmp if self.config.output_dir is None else str(
                Path(self.config.output_dir) / f"run-{self._run_key(cols, loss_fn, seed, trainer_cls, arg_overrides)}")
            args = training_arguments(self.config, seed, out_dir,
                                      **{"label_names": list(TARGET_KEYS), "prediction_loss_only": False,
                                         "per_device_eval_batch_size": self.config.eval_batch_size, **unused,
                                         **arg_overrides})
            trainer = trainer_cls(model=self.model, args=args, train_dataset=DictDataset(cols),
                                  data_collator=Collator(self.tokenizer, self.config.max_length), loss_fn=loss_fn)
            resume = bool(self.config.save_steps) and any(Path(args.output_dir).glob("checkpoint-*"))
            done = train_then_merge(trainer, self.config.logging_dir, resume or None)
        self.model, self.history, self.train_seconds = done.model, done.history, done.train_seconds
        return self

    def _run_key(self, cols: dict, loss_fn, seed: int, trainer_cls, arg_overrides: dict) -> str:
        """What makes two trainings the same run: the model, its settings, seed, loss and the
        exact training columns. Checkpoints live under ``output_dir/run-<key>``, so a rerun
        resumes its own checkpoints, never another model's or method's in a shared folder."""
        h = hashlib.sha256()
        # config.key(): the settings that change the weights (logging, save_steps … may differ on a rerun)
        h.update(repr((self.card.name, self.num_classes, self.config.key(), seed, trainer_cls.__qualname__,
                       _loss_identity(loss_fn), sorted(arg_overrides.items()))).encode())
        for name in sorted(cols):
            h.update(name.encode())
            h.update(np.ascontiguousarray(cols[name]).tobytes())
        return h.hexdigest()[:16]

    # -- saving --------------------------------------------------------------------------
    def save_pretrained(self, path) -> None:
        """The model (``config.json`` + ``model.safetensors``) and, unless head-only, its tokenizer."""
        if self.model is None:
            raise InvalidInputError("the classifier is not trained yet: call fit() first")
        self.model.save_pretrained(path, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path, config: TrainConfig | None = None, prefer_offline: bool = True) -> "Classifier":
        """Load what :meth:`save_pretrained` wrote: safetensors only, no remote code. A head-only
        classifier recomputes (or reads cached) features with the card saved in its config."""
        from transformers import AutoTokenizer

        model = PooledClassifier.from_pretrained(path, use_safetensors=True, trust_remote_code=False).eval()
        mc = model.config
        card = ModelCard(**mc.card) if mc.card else load_card(mc.backbone)
        config = config or TrainConfig(mode="head" if mc.head_only else "full", max_length=mc.text_max_length)
        labels = [mc.id2label[i] for i in range(mc.num_labels)]
        clf = cls(card, mc.num_labels, config, prefer_offline, labels)
        clf.model = model
        if not mc.head_only:
            clf.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        return clf

    # -- prediction ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_logits(self, texts: list[str]) -> np.ndarray:
        """``[N, K]`` logits. Head mode: the cached features through the head in a few large
        matrix products; otherwise length-sorted batches through the whole model, split
        across ranks under ``accelerate launch``."""
        if self.model is None:
            raise InvalidInputError("the classifier is not trained yet: call fit() first")
        if len(texts) == 0:
            raise InvalidInputError("cannot predict on an empty dataset")
        device = next(self.model.parameters()).device
        bs = self.config.eval_batch_size
        if self.config.mode == "head":
            feats = torch.as_tensor(self.features(list(texts)))
            return torch.cat([self.model(features=feats[s:s + 4096].to(device))["logits"].float().cpu()
                              for s in range(0, len(feats), 4096)]).numpy()
        order = np.argsort([len(t) for t in texts], kind="stable")  # length-sorted batches
        batches = [order[start:start + bs] for start in range(0, len(texts), bs)]

        def run(idx):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.config.max_length, return_tensors="pt").to(device)
            return self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])["logits"].float().cpu()

        out = np.empty((len(texts), self.num_classes), dtype=np.float32)
        out[order] = torch.cat(distributed.map_batches(run, batches)).numpy()
        return out
