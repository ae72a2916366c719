"""The weak generation ensemble: generators with different tokenizers, fitted on ground
truth, producing cached n-best lists, plus the joint-decoding baseline."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .. import distributed
from ..backbones import texts_fingerprint
from ..cards import cache_dir, load_card
from ..errors import CorruptCacheError, InvalidInputError
from ..io import warn_unreadable, write_text
from .generators import CausalLMGenerator, GeneratorConfig, TaggerGenerator
from .hypotheses import WeakHypotheses

log = logging.getLogger(__name__)


def _write_cache(path: Path, write) -> None:
    try:
        write(path)
    except OSError as err:   # a cache that cannot be written costs time, not results
        log.warning("could not write the cache file %s (%s); continuing without it", path, err)


def _load_scores(path: Path, candidates: list[list[str]]) -> list[np.ndarray] | None:
    """Cached joint-decoding scores (one array per item, one score per candidate), or None."""
    if not path.exists():
        return None
    try:
        with open(path) as fh:
            part = [np.asarray(s, dtype=float) for s in json.load(fh)]
    except (OSError, ValueError, TypeError) as err:
        warn_unreadable(path, err)
        return None
    if [len(s) for s in part] != [len(c) for c in candidates]:
        warn_unreadable(path, "it holds scores of other candidate lists")
        return None
    return part


class GenerationEnsemble:
    """Weak generators for a generation task; the generation counterpart of ``WeakEnsemble``.

    A decoder card becomes a :class:`CausalLMGenerator`, an encoder card a
    :class:`TaggerGenerator`. Hypotheses are cached on disk keyed by card, config, seed,
    training data and predicted texts, so a rerun trains and generates only what is missing.

    Args:
        models: model card names.
        slot_types: the task's slot types (the taggers' label set).
        config: one :class:`GeneratorConfig` or ``{name: GeneratorConfig}``.
        seed: training seed; cache: folder (default ``$BAYES_W2S_CACHE/weak_hypotheses``) or ``False``.
    """

    def __init__(self, models: list[str], slot_types: list[str], config: GeneratorConfig | dict | None = None,
                 seed: int = 0, cache: str | Path | bool | None = None, prefer_offline: bool = True):
        if len(models) < 1:
            raise InvalidInputError("a weak generation ensemble needs at least one model")
        self.cards = [load_card(m) for m in models]
        self.model_names = [c.name for c in self.cards]
        if len(set(self.model_names)) != len(self.model_names):
            raise InvalidInputError(f"duplicate weak models in {self.model_names}")
        self.slot_types = list(slot_types)
        self.configs = {c.name: (config.get(c.name, GeneratorConfig()) if isinstance(config, dict)
                                 else (config or GeneratorConfig())) for c in self.cards}
        self.seed = seed
        self.prefer_offline = prefer_offline
        self.cache = None if cache is False else Path(cache) if cache else cache_dir("weak_hypotheses")
        self.generators_: dict = {}
        self._train = None

    def fit(self, train_data) -> "GenerationEnsemble":
        """Remember the ground-truth (text, target) pairs; generators train on first use."""
        if len(train_data) == 0:
            raise InvalidInputError("the weak generators' training data is empty")
        self._train = (list(train_data["text"]), list(train_data["target"]))
        raw = "\n".join(a + "\t" + b for a, b in zip(*self._train))
        self._train_fp = hashlib.sha256(raw.encode()).hexdigest()[:16]
        return self

    def _key(self, name: str, kind: str, texts: list[str], extra: str = "", suffix: str = ".json.gz") -> Path:
        card = self.cards[self.model_names.index(name)]
        raw = (f"{card.fingerprint()}|{self.configs[name].key()}|{self.seed}|{self._train_fp}|"
               f"{texts_fingerprint(texts)}|{sorted(self.slot_types)}|{extra}")
        return self.cache / f"{kind}-{card.name}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}{suffix}"

    @staticmethod
    def _load_hypotheses(path: Path, ids: list[str]) -> WeakHypotheses | None:
        """Cached hypotheses of ``ids``, or None when absent or unusable (recomputed, with a warning)."""
        if not path.is_file():
            return None
        try:
            part = WeakHypotheses.load(path)
        except CorruptCacheError as err:
            warn_unreadable(path, err.__cause__ or err)
            return None
        if part.ids != ids:
            warn_unreadable(path, "it holds hypotheses for other items")
            return None
        return part

    def generator(self, name: str):
        """The trained generator ``name`` (trained now if it is not yet)."""
        if self._train is None:
            raise InvalidInputError("call fit(weak_train) before using the generators")
        if name not in self.generators_:
            card = self.cards[self.model_names.index(name)]
            cfg = self.configs[name]
            gen = (CausalLMGenerator(card, cfg, self.prefer_offline) if card.architecture == "decoder"
                   else TaggerGenerator(card, self.slot_types, cfg, self.prefer_offline))
            log.info("training weak generator %s on %d items", name, len(self._train[0]))
            self.generators_[name] = gen.fit(*self._train, seed=self.seed)
        return self.generators_[name]

    def predict(self, data, n_best: int | None = None, progress: bool = True) -> WeakHypotheses:
        """Each weak generator's n-best hypotheses on ``data`` (a dataset with ``text``, ``id``)."""
        texts = list(data["text"])
        if not texts:
            raise InvalidInputError("cannot generate for an empty dataset")
        ids = list(data["id"]) if "id" in getattr(data, "column_names", []) else [str(i) for i in range(len(texts))]
        parts = []
        for name in self.model_names:
            k = n_best or self.configs[name].n_best
            path = self._key(name, "hyp", texts, f"n_best={k}") if self.cache else None
            # rank 0 reads the cache it alone writes; every rank gets its answer
            part = distributed.on_main(self._load_hypotheses, path, ids) if path is not None else None
            if part is None:
                nbest = self.generator(name).generate(texts, n_best=k, progress=progress)
                part = WeakHypotheses([[h] for h in nbest], [name], ids,
                                      {"card": name, "config": self.configs[name].key(), "seed": self.seed})
                if path is not None and distributed.is_main():
                    _write_cache(path, part.save)
            parts.append(part)
        return WeakHypotheses.concat_models(parts)

    def score_candidates(self, data, candidates: list[list[str]], weights=None, progress: bool = True) -> list[np.ndarray]:
        """Per item, each candidate's weighted sum over weak models (weights ``λ_m``, default
        equal) of its mean token log-prob under that model, each with its own tokenizer.
        Scores are cached per weak model, data and candidate lists."""
        texts = list(data["text"]) if hasattr(data, "column_names") or isinstance(data, dict) else list(data)
        if len(candidates) != len(texts):
            raise InvalidInputError(f"{len(candidates)} candidate lists for {len(texts)} items")
        if any(len(c) == 0 for c in candidates):
            raise InvalidInputError("every item needs at least one candidate to score")
        m = len(self.model_names)
        lam = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=float)
        if lam.shape != (m,) or (lam < 0).any() or not np.isfinite(lam).all():
            raise InvalidInputError(f"scoring needs {m} non-negative weights, got {weights!r}")
        scores = []
        for name in self.model_names:
            path = self._key(name, "joint", texts, json.dumps(candidates), ".json") if self.cache else None
            part = distributed.on_main(_load_scores, path, candidates) if path is not None else None
            if part is None:
                part = self.generator(name).score(texts, candidates, progress=progress)
                if path is not None and distributed.is_main():
                    _write_cache(path, lambda p: write_text(p, json.dumps([s.tolist() for s in part])))
            scores.append(part)
        return [sum(lam[j] * scores[j][n] for j in range(m)) for n in range(len(texts))]

    def joint_decode(self, data, hypotheses: WeakHypotheses, weights=None, progress: bool = True) -> list[str]:
        """Joint decoding: every weak model's n-best candidates are rescored by *every* weak
        model with its own tokenizer (mean token log-prob); the candidate with the highest
        weighted sum (weights ``λ_m``, default equal) is the single target per item."""
        candidates = [list(dict.fromkeys(h.text for hyps in item for h in hyps)) for item in hypotheses.nbest]
        totals = self.score_candidates(data, candidates, weights, progress)
        return [cands[int(np.argmax(total))] for cands, total in zip(candidates, totals)]
