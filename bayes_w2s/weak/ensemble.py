"""The weak ensemble: several small models, each fine-tuned on ground truth."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from scipy.special import softmax

from .. import distributed
from ..backbones import texts_fingerprint
from ..cards import cache_dir, load_card
from ..errors import CorruptCacheError, InvalidInputError, check_name_list, check_seed
from ..io import warn_unreadable
from ..tasks.base import check_text_split, split_kind
from ..training import Classifier, TrainConfig
from .labels import WeakLabels

log = logging.getLogger(__name__)


def _ground_truth_xent(logits, batch, progress=0.0):
    import torch.nn.functional as F
    return -(batch["target_probs"] * F.log_softmax(logits, -1)).sum(-1).mean()


def _check_config(config, models: list[str]) -> None:
    """``config`` is None, one training config, or ``{model name: config}`` (a
    :class:`TrainConfig`, or a :class:`~.generators.GeneratorConfig` for generation)."""
    def is_config(c):
        return dataclasses.is_dataclass(c) and not isinstance(c, type) and hasattr(c, "key")

    if config is None or is_config(config):
        return
    if isinstance(config, dict):
        for name, c in config.items():
            if not is_config(c):
                raise InvalidInputError(f"WeakEnsemble config[{name!r}] must be a TrainConfig, got "
                                        f"{type(c).__name__} {c!r}")
        return
    hint = f"; for a training mode write TrainConfig(mode={config!r})" if isinstance(config, str) else ""
    raise InvalidInputError(f"WeakEnsemble config must be a TrainConfig or {{model name: TrainConfig}}, got "
                            f"{type(config).__name__} {config!r}{hint}")


class WeakEnsemble:
    """Weak supervisors, fitted on ground truth, predicting soft labels.

    Predictions are cached on disk, keyed by model card, training config, seed and the
    fingerprints of the training and the predicted texts; a rerun (or a run after a
    crash) loads what is finished and trains only what is missing.

    Args:
        models: model card names (``models/*.yaml``), hub ids or local folders.
        config: one :class:`TrainConfig` for all, or a dict ``{name: TrainConfig}``.
        seed: training seed.
        cache: the cache folder (default ``$BAYES_W2S_CACHE/weak_labels``); ``False`` disables it.

    Attributes (after ``fit``):
        label_names: the classes seen in ``fit``.
        classifiers_: ``{name: Classifier}`` trained so far (lazily: only when a
            prediction is not cached).
    """

    def __init__(self, models: list[str], config: TrainConfig | dict | None = None, seed: int = 0,
                 cache: str | Path | None | bool = None, prefer_offline: bool = True):
        if isinstance(models, (str, Path)):   # iterating a string would look up one card per character
            raise InvalidInputError(f"WeakEnsemble models must be a list of model names, got the string "
                                    f"{str(models)!r}; use [{str(models)!r}]")
        models = list(models)
        if len(models) == 0:
            raise InvalidInputError("a weak ensemble needs at least one model")
        bad = [m for m in models if not isinstance(m, (str, Path))]
        if bad:
            raise InvalidInputError(f"WeakEnsemble models must be model names (str), got {bad[0]!r}")
        models = [str(m) for m in models]
        _check_config(config, models)
        seed = check_seed(seed, "WeakEnsemble")
        if not (cache is None or cache is False or isinstance(cache, (str, os.PathLike))):
            raise InvalidInputError(f"WeakEnsemble cache must be a folder path, or False for none, got {cache!r}")
        self.cards = [load_card(m) for m in models]   # fails early on unknown names
        self.model_names = [c.name for c in self.cards]
        if len(set(self.model_names)) != len(self.model_names):
            raise InvalidInputError(f"duplicate weak models in {self.model_names}")
        if isinstance(config, dict):   # a misspelt key silently trained that model with the default config
            unknown = [k for k in config if k not in set(models) | set(self.model_names)]
            if unknown:
                raise InvalidInputError(f"WeakEnsemble config names no model of this ensemble: {unknown}; "
                                        f"the models are {self.model_names}")
        self._raw_config, self._raw_cache, self._models = config, cache, models
        self.generation_ = None
        self.configs = {c.name: (config.get(c.name, config.get(m, TrainConfig())) if isinstance(config, dict)
                                 else (config or TrainConfig())) for m, c in zip(models, self.cards)}
        self.seed = seed
        self.prefer_offline = prefer_offline
        self.cache = None if cache is False else Path(cache) if cache else cache_dir("weak_labels")
        self.classifiers_: dict[str, Classifier] = {}
        self._train = None
        self.label_names = None

    def fit(self, train_data, label_names: list | None = None) -> "WeakEnsemble":
        """Remember the ground-truth training data; models train on first use.

        A generation split (a ``target`` column, e.g. SLURP) makes this a generation
        ensemble: ``label_names`` are then the slot types, ``config`` may hold
        :class:`~.generators.GeneratorConfig` s, and ``predict`` returns
        :class:`~.hypotheses.WeakHypotheses` (see :class:`~.generation_ensemble.GenerationEnsemble`).
        """
        check_text_split(train_data, "WeakEnsemble.fit data",
                         ("text", "label") if split_kind(train_data) != "generation" else ("text",))
        if len(train_data) == 0:
            raise InvalidInputError("the weak models' training data is empty")
        if split_kind(train_data) == "generation":
            from .generation_ensemble import GenerationEnsemble
            if label_names is None:
                raise InvalidInputError("a generation ensemble needs the task's slot types: fit(data, task.slot_types)")
            config = self._raw_config
            if isinstance(config, dict):   # keyed by card name or by the name / path the model was given as
                config = {c.name: config[k] for m, c in zip(self._models, self.cards)
                          for k in (m, c.name) if k in config}   # the card name wins
            # the models as given: a card given by its YAML path is found again by that path
            self.generation_ = GenerationEnsemble(self._models, label_names, config,
                                                  seed=self.seed, cache=self._raw_cache,
                                                  prefer_offline=self.prefer_offline).fit(train_data)
            return self
        if label_names is not None:   # checked before any model trains (predict refused them after)
            label_names = check_name_list(label_names, "label_names")
        labels = np.asarray(train_data["label"])
        if not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(f"the weak models' training labels must be class indices (ints), "
                                    f"got dtype {labels.dtype}")
        self.label_names = list(label_names) if label_names is not None else \
            list(getattr(train_data, "label_names", None) or range(int(labels.max()) + 1))
        k = len(self.label_names)
        if labels.min() < 0 or labels.max() >= k:
            raise InvalidInputError(f"ground-truth labels outside 0..{k - 1} (label_names {self.label_names})")
        if len(np.unique(labels)) < 2:
            raise InvalidInputError(f"the weak models' training data holds one class only "
                                    f"({self.label_names[int(labels[0])]!r}); they need at least two")
        self._train = (list(train_data["text"]), labels)
        self._train_fp = texts_fingerprint(self._train[0]) + hashlib.sha256(labels.tobytes()).hexdigest()[:8]
        return self

    def _key(self, name: str, texts: list[str]) -> Path:
        card = self.cards[self.model_names.index(name)]
        raw = f"{card.fingerprint()}|{self.configs[name].key()}|{self.seed}|{self._train_fp}|{texts_fingerprint(texts)}"
        return self.cache / f"{card.name}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}.npz"

    def _load_cached(self, path: Path, n: int) -> np.ndarray | None:
        """One model's cached ``[N, K]`` probabilities, or None when absent or unusable
        (an unreadable or mismatched file is recomputed, with a warning naming it)."""
        if not path.is_file():   # absent (or a folder in its place): computed afresh
            return None
        try:
            wl = WeakLabels.load(path)
        except CorruptCacheError as exc:
            warn_unreadable(path, exc.__cause__ or exc)
            return None
        if wl.num_items != n or wl.num_models != 1 or wl.label_names != self.label_names:
            warn_unreadable(path, f"holds {wl.num_items} items x {wl.num_models} model(s) over "
                                  f"{wl.label_names}, expected {n} x 1 over {self.label_names}")
            return None
        if wl.meta.get("key", path.stem.rsplit("-", 1)[-1]) != path.stem.rsplit("-", 1)[-1]:
            warn_unreadable(path, f"it was written for another key ({wl.meta['key']})")
            return None
        return wl.probs[:, 0]

    def _classifier(self, name: str) -> Classifier:
        if name not in self.classifiers_:
            texts, labels = self._train
            k = len(self.label_names)
            clf = Classifier(self.cards[self.model_names.index(name)], k, self.configs[name], self.prefer_offline)
            log.info("training weak model %s on %d items", name, len(texts))
            clf.fit(texts, np.eye(k)[labels], _ground_truth_xent, seed=self.seed)
            self.classifiers_[name] = clf
        return self.classifiers_[name]

    def predict(self, data, **kwargs):
        """Each weak model's class probabilities on ``data`` → :class:`WeakLabels`
        (for a generation ensemble: n-best hypotheses → ``WeakHypotheses``; ``kwargs``
        such as ``n_best`` go to :meth:`GenerationEnsemble.predict`)."""
        if self.generation_ is not None:
            return self.generation_.predict(data, **kwargs)
        if self._train is None:
            raise InvalidInputError("call fit(weak_train) before predict()")
        check_text_split(data, "WeakEnsemble.predict data")
        texts = list(data["text"])
        if not texts:
            raise InvalidInputError("cannot predict on an empty dataset")
        probs = []
        for name in self.model_names:
            path = self._key(name, texts) if self.cache else None
            # rank 0 reads the cache it alone writes; every rank gets its answer
            cached = distributed.on_main(self._load_cached, path, len(texts)) if path is not None else None
            if cached is not None:
                probs.append(cached)
                continue
            p = softmax(self._classifier(name).predict_logits(texts).astype(np.float64), -1)
            if path is not None and distributed.is_main():
                try:
                    WeakLabels(p[:, None], [name], self.label_names, None,
                               {"card": name, "config": self.configs[name].key(), "seed": self.seed,
                                "key": path.stem.rsplit("-", 1)[-1]}).save(path)
                except OSError as exc:   # a cache that cannot be written costs time, not results
                    log.warning("could not write the weak-label cache %s (%s); continuing without it", path, exc)
            probs.append(p)
        ids = list(data["id"]) if "id" in getattr(data, "column_names", []) else None
        return WeakLabels(np.stack(probs, 1), self.model_names, self.label_names, ids,
                          {"seed": self.seed, "configs": {m: c.key() for m, c in self.configs.items()}})
