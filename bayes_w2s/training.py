"""Training a :class:`~bayes_w2s.backbones.PooledClassifier` with ``transformers.Trainer``.

Weak models (on ground truth) and strong students (on weak or posterior targets) train
through the same :class:`Classifier`; they differ only in the targets and the loss.
``Trainer`` brings the optimiser, schedule, seeding, progress bars, checkpoints and
``accelerate launch`` (multi-GPU, DeepSpeed/FSDP) — none of that is ours.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from .backbones import MODES, FeatureCache, PooledClassifier, build_classifier
from .cards import ModelCard, load_card
from .errors import InvalidInputError

log = logging.getLogger(__name__)

#: batch keys that carry supervision; popped before the model's forward
TARGET_KEYS = ("target_probs", "weight", "weak_probs")


@dataclass
class TrainConfig:
    """How one classifier (weak model or student) is trained."""

    mode: str = field(default="head", metadata={"help": "head (frozen backbone, cached features) | lora | full"})
    epochs: float = field(default=10.0, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"help": "per-device train batch size"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    max_length: int = field(default=128, metadata={"help": "tokens per text (longer ones are truncated)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (mode=lora)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (mode=lora)"})
    eval_batch_size: int = field(default=64, metadata={"help": "batch size for prediction"})
    output_dir: str | None = field(default=None, metadata={"help": "checkpoints (mode=lora/full); temp dir if unset"})
    save_steps: int = field(default=0, metadata={"help": "checkpoint every N steps to output_dir (0 = never); reruns resume"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU)"})

    def __post_init__(self):
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown training mode {self.mode!r}; use one of {MODES}")

        def number(v, integer=False):   # bool is an int to Python, never a setting here
            kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
            return isinstance(v, kinds) and not isinstance(v, (bool, np.bool_)) and np.isfinite(v)

        # inf or NaN would train to NaN probabilities without a word: every number is finite
        for name, integer, low in (("epochs", False, 0), ("learning_rate", False, 0), ("batch_size", True, 0),
                                   ("max_length", True, 0), ("eval_batch_size", True, 0), ("lora_r", True, 0),
                                   ("lora_alpha", True, 0)):
            value = getattr(self, name)
            if not number(value, integer) or not value > low:
                raise InvalidInputError(f"TrainConfig.{name} must be a positive finite "
                                        f"{'integer' if integer else 'number'}, got {value!r}")
        if not number(self.weight_decay) or self.weight_decay < 0:
            raise InvalidInputError(f"TrainConfig.weight_decay must be a finite number ≥ 0, got {self.weight_decay!r}")
        if not number(self.warmup_ratio) or not 0 <= self.warmup_ratio <= 1:
            raise InvalidInputError(f"TrainConfig.warmup_ratio must be a number in [0, 1], got {self.warmup_ratio!r}")
        if not number(self.save_steps, integer=True) or self.save_steps < 0:
            raise InvalidInputError(f"TrainConfig.save_steps must be an integer ≥ 0, got {self.save_steps!r}")
        if not isinstance(self.bf16, (bool, np.bool_)):
            raise InvalidInputError(f"TrainConfig.bf16 must be true or false, got {self.bf16!r}")
        if self.save_steps and not self.output_dir:
            raise InvalidInputError("TrainConfig.save_steps needs an output_dir to write checkpoints to")

    def key(self) -> str:
        """The settings that change the trained weights (for cache keys)."""
        d = asdict(self)
        for k in ("eval_batch_size", "output_dir", "save_steps"):
            d.pop(k)
        return repr(sorted(d.items()))


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


def training_arguments(cfg: TrainConfig, seed: int, output_dir: str, **overrides) -> TrainingArguments:
    args = dict(
        output_dir=output_dir, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear",
        seed=seed, data_seed=seed, report_to="none", remove_unused_columns=False,
        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
        logging_steps=10**9, disable_tqdm=False, dataloader_num_workers=0, bf16=cfg.bf16,
        label_names=list(TARGET_KEYS), prediction_loss_only=False,
    )
    args.update(overrides)
    return TrainingArguments(**args)


class Classifier:
    """A model card trained as a classifier in one of the modes of :data:`MODES`.

    Attributes (after ``fit``):
        model: the trained :class:`PooledClassifier`.
        history: ``Trainer`` log history (loss per logging step, runtime).
        train_seconds: wall time of ``trainer.train()``.
    """

    def __init__(self, card: ModelCard | str, num_classes: int, config: TrainConfig | None = None,
                 prefer_offline: bool = True):
        self.card = load_card(card) if isinstance(card, str) else card
        self.num_classes = num_classes
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
            self.model = PooledClassifier(feature_dim, self.num_classes, None, self.card.pooling)
        else:
            self.tokenizer, self.model = build_classifier(
                self.card, self.num_classes, self.config.mode, self.config.lora_r, self.config.lora_alpha,
                self.prefer_offline)

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
            self.model.set_feature_stats(cols["features"].mean(0), cols["features"].std(0))
        with tempfile.TemporaryDirectory() as tmp:
            args = training_arguments(self.config, seed, self.config.output_dir or tmp, **arg_overrides)
            trainer = trainer_cls(model=self.model, args=args, train_dataset=DictDataset(cols),
                                  data_collator=Collator(self.tokenizer, self.config.max_length), loss_fn=loss_fn)
            resume = bool(self.config.save_steps) and any(Path(args.output_dir).glob("checkpoint-*"))
            out = trainer.train(resume_from_checkpoint=resume or None)
        self.history = trainer.state.log_history
        self.train_seconds = out.metrics.get("train_runtime", float("nan"))
        self.model.eval()
        return self

    # -- prediction ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_logits(self, texts: list[str]) -> np.ndarray:
        if self.model is None:
            raise InvalidInputError("the classifier is not trained yet: call fit() first")
        if len(texts) == 0:
            raise InvalidInputError("cannot predict on an empty dataset")
        cols = self._inputs(texts)
        collate = Collator(self.tokenizer, self.config.max_length)
        ds = DictDataset(cols)
        order = np.argsort([len(t) for t in texts], kind="stable")  # length-sorted batches
        device = next(self.model.parameters()).device
        out = np.empty((len(texts), self.num_classes), dtype=np.float32)
        bs = self.config.eval_batch_size
        for start in range(0, len(ds), bs):
            idx = order[start:start + bs]
            batch = {k: v.to(device) for k, v in collate([ds[i] for i in idx]).items()}
            out[idx] = self.model(**batch)["logits"].float().cpu().numpy()
        return out
