"""Strong-student training from weak or posterior targets."""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import BayesW2SError, CorruptCacheError, InvalidInputError, check_name_list, check_seed
from ..tasks.base import check_text_split, split_kind, texts_of
from ..train_config import LOGGING_FIELDS
from ..training import Classifier, TrainConfig
from .losses import LOSSES, LossSpec, get_loss
from .targets import Targets, resolve_targets


@dataclass
class Student:
    """A trained strong student.

    Attributes:
        classifier: the trained :class:`~bayes_w2s.training.Classifier`; its ``model`` is a
            ``transformers`` :class:`~bayes_w2s.backbones.PooledClassifier`.
        loss: loss name (with ``loss_kwargs``: it decides how logits become probabilities);
        targets: where the targets came from; history: Trainer logs.

    ``save_pretrained(dir)`` writes a Hugging Face folder (``config.json`` with ``id2label``,
    ``model.safetensors``, the tokenizer unless head-only); ``Student.from_pretrained(dir)``
    reads it back with identical predictions, and
    ``AutoModelForSequenceClassification.from_pretrained(dir)`` loads the model alone
    (after ``import bayes_w2s.backbones``, which registers its class).
    """

    classifier: Classifier
    loss_spec: LossSpec
    loss: str
    label_names: list
    targets: str = ""
    wall_seconds: float = float("nan")
    history: list = field(default_factory=list)
    loss_kwargs: dict = field(default_factory=dict)

    def save_pretrained(self, path) -> Path:
        """Save to folder ``path`` (safetensors); the loss, targets and training settings go
        into ``config.json`` under ``student``, the Trainer log into ``trainer_history.json``."""
        path = Path(path)
        model = self.classifier.model
        if model is None:
            raise InvalidInputError("the student is not trained yet")
        model.config.student = {"loss": self.loss, "loss_kwargs": self.loss_kwargs, "targets": self.targets,
                                "label_names": list(self.label_names),
                                "train_config": dataclasses.asdict(self.classifier.config)}
        self.classifier.save_pretrained(path)
        (path / "trainer_history.json").write_text(json.dumps(self.history, default=str))
        return path

    @classmethod
    def from_pretrained(cls, path, prefer_offline: bool = True) -> "Student":
        """Load a student :meth:`save_pretrained` wrote (safetensors only, no remote code)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise InvalidInputError(f"{path} is not a saved student (no config.json)")
        from safetensors import SafetensorError

        from ..backbones import PooledClassifier
        try:
            meta = PooledClassifier.config_class.from_pretrained(path).to_dict().get("student")
            if not meta:
                raise CorruptCacheError(f"{path}/config.json has no 'student' entry: not saved by "
                                        "Student.save_pretrained")
            if "train_config" not in meta:
                raise CorruptCacheError(f"{path} holds a generation student: load it with "
                                        "GenerationStudent.from_pretrained")
            # logging settings only matter while training: report_to: wandb must load where wandb is absent
            known = {f.name for f in dataclasses.fields(TrainConfig)} - set(LOGGING_FIELDS)
            config = TrainConfig(**{k: v for k, v in meta["train_config"].items() if k in known})
            clf = Classifier.from_pretrained(path, config, prefer_offline)
            history = path / "trainer_history.json"
            return cls(clf, get_loss(meta["loss"], **meta["loss_kwargs"]), meta["loss"], meta["label_names"],
                       meta["targets"], history=json.loads(history.read_text()) if history.exists() else [],
                       loss_kwargs=meta["loss_kwargs"])
        except BayesW2SError:
            raise
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:   # a damaged or partial folder
            raise CorruptCacheError(f"{path} is not a loadable saved student ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else exc!r})") from None

    def predict_proba(self, data) -> np.ndarray:
        """``[N, K]`` class probabilities for a dataset (with ``text``) or a list of texts
        (:func:`~bayes_w2s.tasks.base.texts_of`)."""
        texts = texts_of(data, "predict_proba")
        if not texts:
            return np.zeros((0, len(self.label_names)))
        logits = torch.as_tensor(self.classifier.predict_logits(texts))
        return self.loss_spec.predict_proba(logits).numpy()

    def predict(self, data) -> np.ndarray:
        return self.predict_proba(data).argmax(-1)


def train_student(model: str, train_data, targets, loss: str = "xent", *, label_names=None,
                  hard: bool = False, weights=None, config: TrainConfig | None = None,
                  seed: int = 0, loss_kwargs: dict | None = None, prefer_offline: bool = True) -> Student:
    """Train a strong student on weak or posterior targets.

    Args:
        model: a model card name (``"gemma3-270m"``), hub id or local folder.
        train_data: a dataset with a ``text`` column (usually ``task.strong_train``); a
            generation task's split (``split_kind`` "generation") trains a generation student.
        targets: a ``Posterior``, ``WeakLabels``, ``[N, K]`` probabilities or ``[N]`` labels;
            for a generation split: a ``WordPosterior``, a
            :class:`~.generation.GenerationTargets` or target strings, and the result is a
            :class:`~.generation.GenerationStudent` (losses ``xent``, ``weighted_xent``,
            ``token_weighted_xent``, ``edl``)
            (see :func:`~bayes_w2s.student.targets.resolve_targets`).
        loss: one of ``xent``, ``weighted_xent``, ``aux_conf``, ``multi_weak``, ``edl``.
        label_names: the class names (read off ``targets`` when it carries them).
        hard: train on argmax targets instead of soft ones.
        weights: per-item weights (default: posterior confidence, for ``weighted_xent``).
        config: how to train (mode head / lora / full, epochs, learning rate …).
        loss_kwargs: the loss's own settings (e.g. ``alpha_max`` of ``aux_conf``).
    """
    check_text_split(train_data, "train_data")
    if len(train_data) == 0:
        raise InvalidInputError("train_data is empty")
    seed = _check_arguments(model, loss, config, loss_kwargs, hard, seed)
    if split_kind(train_data) == "generation":
        return _train_generation(model, train_data, targets, loss, config, seed, loss_kwargs, prefer_offline,
                                 weights, hard)
    if label_names is None:
        label_names = getattr(targets, "label_names", None)
        if label_names is None:
            raise InvalidInputError("label_names is required when targets are a plain array")
    spec = get_loss(loss, **(loss_kwargs or {}))
    if weights is not None and not spec.needs_weights:
        warnings.warn(f"loss {loss!r} takes no per-item weights: weights= is ignored (weighted_xent uses them)",
                      UserWarning, stacklevel=2)
    ids = getattr(targets, "item_ids", None)   # a Posterior's or WeakLabels' items must be these texts
    if ids is not None and "id" in train_data.column_names and len(ids) == len(train_data) \
            and [str(i) for i in ids] != [str(i) for i in train_data["id"]]:
        raise InvalidInputError(f"the targets are for other items than train_data (item ids {list(ids[:3])}… "
                                f"against {list(train_data['id'][:3])}…): fit them on this split, in its order")
    label_names = check_name_list(label_names, "train_student label_names")
    tg = resolve_targets(targets, len(train_data), label_names, hard=hard, weights=weights)
    if spec.needs_weights and tg.weights is None:
        raise InvalidInputError(f"loss {loss!r} needs per-item weights: pass a Posterior or weights=")
    if spec.needs_weak_probs and tg.weak_probs is None:
        raise InvalidInputError(f"loss {loss!r} needs every weak model's labels: pass WeakLabels as targets")
    if hasattr(spec.fn, "check_num_models") and tg.weak_probs is not None:   # before the model loads
        spec.fn.check_num_models(tg.weak_probs.shape[1])
    clf = Classifier(model, len(label_names), config, prefer_offline, list(label_names))
    start = time.perf_counter()
    clf.fit(list(train_data["text"]), tg.probs, spec.fn, seed=seed,
            weights=tg.weights if spec.needs_weights else None,
            weak_probs=tg.weak_probs if spec.needs_weak_probs else None)
    return Student(clf, spec, loss, list(label_names), tg.source, time.perf_counter() - start, clf.history,
                   dict(loss_kwargs or {}))


def _check_arguments(model, loss, config, loss_kwargs, hard, seed) -> int:
    """Fail before any model loads on arguments of the wrong kind; returns the seed as an int."""
    from ..cards import ModelCard
    if not isinstance(model, (str, ModelCard)):
        raise InvalidInputError(f"train_student model must be a model card name, hub id or folder, got {model!r}")
    if not isinstance(loss, str):
        raise InvalidInputError(f"train_student loss must be a loss name ({LOSSES}), got {loss!r}")
    if config is not None and not (dataclasses.is_dataclass(config) and hasattr(config, "key")):
        hint = f"; for a training mode write TrainConfig(mode={config!r})" if isinstance(config, str) else ""
        raise InvalidInputError(f"train_student config must be a TrainConfig, got {type(config).__name__} "
                                f"{config!r}{hint}")
    if loss_kwargs is not None and not isinstance(loss_kwargs, dict):
        raise InvalidInputError(f"train_student loss_kwargs must be a mapping of the loss's settings, "
                                f"got {loss_kwargs!r}")
    if not isinstance(hard, (bool, np.bool_)):
        raise InvalidInputError(f"train_student hard must be True or False, got {hard!r}")
    return check_seed(seed, "train_student")


def _train_generation(model, train_data, targets, loss, config, seed, loss_kwargs, prefer_offline, weights, hard):
    """Generation targets: a ``GenerationTargets``, a ``WordPosterior`` (token soft labels
    of its consensus unless ``hard``; ``loss="weighted_xent"`` weights sequences by the
    posterior's sequence confidence, ``"token_weighted_xent"`` each token by its word's
    posterior probability) or a list of target strings (one per item)."""
    from ..tasks.generation import is_well_formed
    from ..train_config import GeneratorConfig
    from .generation import GenerationTargets, posterior_targets, train_generation_student   # needs TRL

    if config is not None and not isinstance(config, GeneratorConfig):   # failed in generate(), after training
        raise InvalidInputError(f"a generation student takes a GeneratorConfig, got {type(config).__name__}; "
                                "e.g. GeneratorConfig(mode='lora')")
    texts = list(train_data["text"])
    if isinstance(targets, (list, tuple)) and all(isinstance(t, str) for t in targets):
        bad = [i for i, t in enumerate(targets) if not is_well_formed(t)]
        if bad:
            raise InvalidInputError(f"{len(bad)} generation target(s) are not one JSON object of non-empty slot "
                                    f"fillers, e.g. target {bad[0]}: {targets[bad[0]]!r} ('{{}}' for no slot)")
    if hasattr(targets, "word_posteriors"):
        if getattr(targets, "valid", None) is None:   # word voting can glue JSON pieces; the pipeline constrains too
            targets = targets.constrain(is_well_formed)
        targets = posterior_targets(targets, texts, soft=not hard, weighted=loss == "weighted_xent",
                                    token_weighted=loss == "token_weighted_xent")
    elif isinstance(targets, (list, tuple)) and all(isinstance(t, str) for t in targets):
        targets = GenerationTargets(texts, list(targets), weights=weights, source="strings")
    elif not isinstance(targets, GenerationTargets):
        raise InvalidInputError("generation targets must be a WordPosterior, GenerationTargets or a list of "
                                f"target strings, got {type(targets).__name__}")
    # these losses are plain token xent on targets that carry their weights: without them, say so
    # (they trained plain xent silently; the classification losses refuse the same calls)
    if loss in ("weighted_xent", "multi_weak") and targets.weights is None:
        raise InvalidInputError(f"loss {loss!r} weighs each target sequence: give weights= (per-sequence "
                                "confidences, or λ per weak model on one row per item and weak model), or targets "
                                "that carry them (a WordPosterior with loss weighted_xent)")
    if loss == "token_weighted_xent" and not targets.token_weighted:
        raise InvalidInputError("loss 'token_weighted_xent' weighs tokens by a word posterior: give a WordPosterior")
    token_loss = "xent" if loss in ("xent", "weighted_xent", "token_weighted_xent", "multi_weak") else loss
    # "weights" (λ per weak model) shaped the targets already; every other setting is the token loss's own
    settings = {k: v for k, v in (loss_kwargs or {}).items() if k != "weights"}
    get_loss(token_loss, **settings)   # unknown settings fail here instead of being ignored
    evidential = settings if token_loss == "edl" else None
    return train_generation_student(model, targets, token_loss, config=config, seed=seed, evidential=evidential,
                                    prefer_offline=prefer_offline)


__all__ = ["train_student", "Student", "GenerationStudent", "GenerationTargets", "TrainConfig", "LOSSES", "get_loss", "resolve_targets", "Targets"]


def __getattr__(name):
    if name in ("GenerationStudent", "GenerationTargets", "train_generation_student"):
        from . import generation
        return getattr(generation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
