"""ROVER-style word confusion networks (Fiscus, 1997, "A post-processing system to yield
reduced word error rates: Recognizer Output Voting Error Reduction (ROVER)", ASRU).

The weak hypotheses of one item are aligned word by word into *slots*: slot ``s`` holds
the word each weak model put there, or :data:`EPS` (the empty word) where a model has
no word. Hypotheses are added one at a time: each is aligned to the network so far by
edit distance, where matching a word that some earlier hypothesis put in a slot is free,
any other word costs 1, skipping a slot costs 1 unless the slot already has an ε, and
an extra word opens a new slot (ε for every earlier hypothesis).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

#: The empty word: "this hypothesis has no word in this slot".
EPS = ""


@dataclass
class ConfusionNetwork:
    """Aligned hypotheses of one item.

    Attributes:
        words: ``[S][M]`` the word of each of the ``M`` hypotheses in each of ``S`` slots
            (``EPS`` where it has none).
        logprobs: ``[S, M]`` each placed word's log-probability (NaN for ``EPS`` and where
            the hypothesis came without scores).
    """

    words: list[list[str]]
    logprobs: np.ndarray

    @property
    def num_slots(self) -> int:
        return len(self.words)

    def candidates(self, s: int) -> list[str]:
        """Distinct words of slot ``s`` in order of first appearance (ε included if present)."""
        return list(dict.fromkeys(self.words[s]))

    def hypothesis(self, m: int) -> list[str]:
        return [slot[m] for slot in self.words if slot[m] != EPS]

    def text_of(self, choice: list[str]) -> str:
        """The text of one word per slot (ε skipped)."""
        return " ".join(w for w in choice if w != EPS)


def _align(slots: list[list[str]], words: list[str]) -> list[tuple[int | None, int | None]]:
    """Edit-distance alignment of ``words`` to existing slots: pairs (slot, word index),
    with ``None`` for a skipped slot or an inserted word."""
    S, W = len(slots), len(words)
    sets = [set(slot) for slot in slots]
    cost = np.zeros((S + 1, W + 1))
    cost[:, 0] = [sum(EPS not in sets[k] for k in range(s)) for s in range(S + 1)]
    cost[0, :] = np.arange(W + 1)
    for s in range(1, S + 1):
        skip = 0.0 if EPS in sets[s - 1] else 1.0
        for w in range(1, W + 1):
            match = 0.0 if words[w - 1] in sets[s - 1] else 1.0
            cost[s, w] = min(cost[s - 1, w - 1] + match, cost[s - 1, w] + skip, cost[s, w - 1] + 1.0)
    path, s, w = [], S, W
    while s > 0 or w > 0:   # backtrack, preferring a match, then a skipped slot, then an insertion
        if s > 0 and w > 0 and cost[s, w] == cost[s - 1, w - 1] + (0.0 if words[w - 1] in sets[s - 1] else 1.0):
            path.append((s - 1, w - 1))
            s, w = s - 1, w - 1
        elif s > 0 and cost[s, w] == cost[s - 1, w] + (0.0 if EPS in sets[s - 1] else 1.0):
            path.append((s - 1, None))
            s -= 1
        else:
            path.append((None, w - 1))
            w -= 1
    return path[::-1]


def align_hypotheses(hypotheses: list[list[str]], logprobs: list | None = None) -> ConfusionNetwork:
    """Align ``M`` word sequences (one per weak model) into a :class:`ConfusionNetwork`.

    Args:
        hypotheses: each weak model's words (an empty list is an empty hypothesis,
            which is allowed: it places ε in every slot).
        logprobs: optional per-hypothesis word log-probabilities, aligned with the words.
    """
    if not hypotheses:
        raise InvalidInputError("no hypotheses to align")
    if logprobs is None:
        logprobs = [np.full(len(h), np.nan) for h in hypotheses]
    if len(logprobs) != len(hypotheses):
        raise InvalidInputError(f"{len(hypotheses)} hypotheses but {len(logprobs)} log-prob arrays")
    for m, (h, lp) in enumerate(zip(hypotheses, logprobs)):
        if len(h) != len(lp):
            raise InvalidInputError(f"hypothesis {m} has {len(h)} words but {len(lp)} word log-probs")
        if any(w == EPS or any(c.isspace() for c in w) for w in h):
            raise InvalidInputError(f"hypothesis {m} has an empty word or a word with whitespace: {h!r}")
    slots: list[list[str]] = []
    scores: list[list[float]] = []
    for m, (h, lp) in enumerate(zip(hypotheses, logprobs)):
        new_slots, new_scores = [], []
        for s, w in _align(slots, list(h)):
            if s is None:
                new_slots.append([EPS] * m + [h[w]])
                new_scores.append([np.nan] * m + [float(lp[w])])
            else:
                new_slots.append(slots[s] + [h[w] if w is not None else EPS])
                new_scores.append(scores[s] + [float(lp[w]) if w is not None else np.nan])
        slots, scores = new_slots, new_scores
    return ConfusionNetwork(slots, np.array(scores, dtype=float).reshape(len(slots), len(hypotheses)))
