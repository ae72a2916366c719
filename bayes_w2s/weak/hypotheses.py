"""``WeakHypotheses``: the weak generators' n-best lists, validated, saved and loaded safely."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..align.bridge import WordScores, check_logprobs
from ..errors import CorruptCacheError, InvalidInputError, MissingDataError
from ..io import atomic_path


@dataclass
class Hypothesis:
    """One generated target: its words with word log-probabilities (via the word bridge),
    ``rest`` (log-prob outside any word: EOS), and ``num_tokens`` in the generator's own
    tokenization (for the mean token log-prob that joint decoding ranks by)."""

    words: list[str]
    logprobs: np.ndarray
    rest: float = 0.0
    num_tokens: int = 0

    def __post_init__(self):
        self.logprobs = np.asarray(self.logprobs, dtype=float)
        if len(self.words) != len(self.logprobs):
            raise InvalidInputError(f"a hypothesis has {len(self.words)} words but {len(self.logprobs)} log-probs")
        check_logprobs(self.logprobs, f"hypothesis {' '.join(self.words)!r}")
        if not np.isfinite(self.rest):   # rest may balance a tagger's shared tags (render_tags), so any finite value
            raise InvalidInputError(f"non-finite rest log-prob {self.rest} in hypothesis {' '.join(self.words)!r}")

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def logprob(self) -> float:
        return float(self.logprobs.sum() + self.rest)

    @property
    def mean_token_logprob(self) -> float:
        return self.logprob / max(self.num_tokens, 1)

    def word_scores(self) -> WordScores:
        return WordScores(list(self.words), self.logprobs, self.rest)

    def to_json(self) -> dict:
        return {"words": self.words, "logprobs": self.logprobs.tolist(), "rest": self.rest,
                "num_tokens": self.num_tokens}


@dataclass
class WeakHypotheses:
    """n-best lists of ``M`` weak generators on ``N`` items.

    Attributes:
        nbest: ``nbest[n][m]`` weak model m's hypotheses for item n, best first (≥ 1 each).
        model_names: the ``M`` generator names, in order.
        ids: the ``N`` item ids.
        meta: provenance (cards, configs, seeds).
    """

    nbest: list[list[list[Hypothesis]]]
    model_names: list[str]
    ids: list[str]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.nbest) != len(self.ids):
            raise InvalidInputError(f"{len(self.nbest)} items of hypotheses but {len(self.ids)} ids")
        m = len(self.model_names)
        for n, item in enumerate(self.nbest):
            if len(item) != m:
                raise InvalidInputError(f"item {self.ids[n]!r} has hypotheses from {len(item)} models, expected {m}")
            for j, hyps in enumerate(item):
                if not hyps:
                    raise InvalidInputError(f"{self.model_names[j]} gave no hypothesis for item {self.ids[n]!r}")

    @property
    def num_models(self) -> int:
        return len(self.model_names)

    def best(self, m: int) -> list[str]:
        """Weak model m's 1-best target text for every item."""
        return [item[m][0].text for item in self.nbest]

    def word_hypotheses(self) -> list[list[WordScores]]:
        """``[N][M]`` 1-best words with word log-probs: the word posterior's input."""
        return [[hyps[0].word_scores() for hyps in item] for item in self.nbest]

    def select(self, models: list[str]) -> "WeakHypotheses":
        unknown = [m for m in models if m not in self.model_names]
        if unknown:
            raise InvalidInputError(f"no weak model(s) {unknown} among {self.model_names}")
        idx = [self.model_names.index(m) for m in models]
        return WeakHypotheses([[item[i] for i in idx] for item in self.nbest], list(models), self.ids, self.meta)

    @classmethod
    def concat_models(cls, parts: list["WeakHypotheses"]) -> "WeakHypotheses":
        """Side by side: the same items, the models of every part."""
        if not parts:
            raise InvalidInputError("concat_models needs at least one WeakHypotheses")
        ids = parts[0].ids
        for p in parts[1:]:
            if p.ids != ids:
                raise InvalidInputError("cannot combine hypotheses of different items")
        nbest = [[h for p in parts for h in p.nbest[n]] for n in range(len(ids))]
        return cls(nbest, [m for p in parts for m in p.model_names], ids, {"parts": [p.meta for p in parts]})

    def save(self, path: str | Path) -> None:
        path = Path(path)
        payload = {"model_names": self.model_names, "ids": self.ids, "meta": self.meta,
                   "nbest": [[[h.to_json() for h in hyps] for hyps in item] for item in self.nbest]}
        with atomic_path(path) as tmp:   # a crash never leaves half a file; concurrent writers never collide
            with gzip.open(tmp, "wt") as fh:
                json.dump(payload, fh)

    @classmethod
    def load(cls, path: str | Path) -> "WeakHypotheses":
        if not Path(path).is_file():   # not a damaged cache: nothing to delete
            where = " (it is a folder)" if Path(path).is_dir() else ""
            raise MissingDataError(f"no weak-hypotheses file {path}{where}")
        try:
            with gzip.open(path, "rt") as fh:
                payload = json.load(fh)
            nbest = [[[Hypothesis(h["words"], np.asarray(h["logprobs"], dtype=float), h["rest"], h["num_tokens"])
                       for h in hyps] for hyps in item] for item in payload["nbest"]]
            return cls(nbest, payload["model_names"], payload["ids"], payload.get("meta", {}))
        except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
            raise CorruptCacheError(f"cannot read weak hypotheses from {path} ({err}); delete the file to "
                                    "regenerate it") from err
