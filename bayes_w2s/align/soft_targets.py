"""Word posteriors → token-level soft targets for the strong model's tokenizer.

The student is trained by teacher forcing on the consensus target, tokenised by the
strong model's tokenizer: completion = ``" " + consensus``, then EOS. Where the word
posterior is uncertain, the target at a token is the distribution of the *next token*
implied by the word distribution, given the consensus prefix (a trie over the
candidates' token sequences):

* at the ``k``-th token of consensus word ``c`` in slot ``s``, every candidate word ``a`` of
  ``s`` whose tokens agree with ``c``'s first ``k`` tokens puts its posterior mass on its
  own ``k``-th token; candidates that disagree earlier are off the teacher-forced path
  and drop out (the rest is renormalised);
* ε (no word) in slot ``s`` puts its mass, at ``c``'s first token, on the token that
  would come instead: the first token of the next consensus word (or EOS);
* a slot whose most probable word is ε is not in the consensus, but its other
  candidates may be inserted before the next consensus word: their mass goes to their
  first tokens at that position.

Every candidate is tokenised as ``" " + word`` on its own; where that differs from the
consensus word's tokens in context, the word gets hard targets (never seen with the
byte-level BPEs here, but tokenizers differ). Targets are kept sparse: the ``top_k``
most probable tokens per position.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import InvalidInputError
from .bridge import offsets_from_tokenizer, token_to_word
from .confusion_network import EPS


def _insert(dist: dict[int, float], pending: dict[int, float]) -> None:
    """Mix insertion mass into a position's target: ``(1 − Σ pending)·dist + pending``."""
    if pending:
        scale = max(0.0, 1.0 - sum(pending.values())) / max(sum(dist.values()), 1e-12)
        for tok_id in list(dist):
            dist[tok_id] *= scale
        for tok_id, p in pending.items():
            dist[tok_id] += p
        pending.clear()


def _spread_slot(targets: list, consensus: list[int], slot: dict[str, float], toks, skip_token: int):
    """Add one slot's word posterior to the targets of its consensus word's tokens: at the
    word's k-th token, each candidate word that shares the first k tokens adds its
    probability to its own k-th token; ε (skip the slot) adds to ``skip_token``, the token
    that follows, at the first position."""
    for k, target in enumerate(targets):
        for word, p in slot.items():
            if p <= 0:
                continue
            if word == EPS:
                if k == 0:
                    target[skip_token] += p
                continue
            cand = toks(word)
            if len(cand) > k and cand[:k] == consensus[:k]:
                target[cand[k]] += p


def token_soft_targets(tokenizer, slots: list[dict[str, float]], top_k: int = 8,
                       eos_token_id: int | None = None, path: list[str] | None = None,
                       return_weights: bool = False):
    """Soft targets for one item.

    Args:
        slots: the item's slots in order, each ``{word: posterior probability}`` (ε = ``""``),
            as :meth:`WordPosterior.word_posteriors` gives them.
        top_k: tokens kept per position.
        eos_token_id: appended as the last target (default: the tokenizer's EOS).
        path: the word to teacher-force in each slot (default: its most probable word), e.g.
            :meth:`WordPosterior.target_words`; each must be one of the slot's candidates.

    Returns ``(completion_ids, targets)``: the token ids of ``" " + consensus`` plus EOS,
    and per id a sparse distribution ``(token ids, probabilities)`` that contains that id.
    With ``return_weights``, also per id a confidence weight: the posterior probability of
    the teacher-forced word its token belongs to (1 for EOS).
    """
    _check_slots(slots, top_k)
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    best = teacher_path(slots, path)
    kept = [i for i, w in enumerate(best) if w != EPS]
    words = [best[i] for i in kept]
    text = " " + " ".join(words)
    if not words:
        return ([eos], [([eos], [1.0])], [1.0]) if return_weights else ([eos], [([eos], [1.0])])
    ids, offsets = offsets_from_tokenizer(tokenizer, text)
    owner = token_to_word(text, offsets)
    cache: dict[str, list[int]] = {}

    def toks(word: str) -> list[int]:
        if word not in cache:
            cache[word] = offsets_from_tokenizer(tokenizer, " " + word)[0]
        return cache[word]

    next_first = [toks(w)[0] for w in words[1:]] + [eos]          # the token after consensus word j
    targets: list[dict[int, float]] = [defaultdict(float) for _ in range(len(ids) + 1)]
    weights = np.ones(len(ids) + 1)
    pending: dict[int, float] = defaultdict(float)                 # insertion mass from ε-won slots
    j = 0
    for s, slot in enumerate(slots):
        if best[s] == EPS:
            for word, p in slot.items():
                if word != EPS and p > 0:
                    pending[toks(word)[0]] += p
            continue
        positions = np.flatnonzero(owner == j)
        if not len(positions):
            raise InvalidInputError(f"the strong tokenizer gives the word {words[j]!r} no token of its own in {text!r}")
        weights[positions] = slot[best[s]]
        consensus = [ids[t] for t in positions]
        if consensus != toks(words[j]):
            for t in positions:
                targets[t][ids[t]] = 1.0
        else:
            _spread_slot([targets[t] for t in positions], consensus, slot, toks, next_first[j])
        _insert(targets[positions[0]], pending)     # insertions compete with this word's first token
        j += 1
    ids = list(ids) + [eos]
    targets[len(ids) - 1][eos] = 1.0
    _insert(targets[len(ids) - 1], pending)         # … or, after the last word, with EOS
    out = [top_k_target(dist, tok_id, top_k, f"token {t} of {text!r}") for t, (tok_id, dist) in
           enumerate(zip(ids, targets))]
    return (ids, out, weights[:len(ids)].tolist()) if return_weights else (ids, out)


def _check_slots(slots: list[dict[str, float]], top_k: int) -> None:
    """Each slot a non-empty ``{word: probability}`` of single words (ε = ``""``) with finite,
    non-negative probabilities of positive sum; ``top_k`` ≥ 1."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InvalidInputError(f"top_k must be an integer ≥ 1, got {top_k!r}")
    for i, slot in enumerate(slots):
        if not isinstance(slot, dict) or not slot:
            raise InvalidInputError(f"slot {i} must be a non-empty {{word: probability}} dict, got {slot!r}")
        for word, p in slot.items():
            if not isinstance(word, str) or (word != EPS and (not word.strip() or len(word.split()) != 1
                                                              or word != word.strip())):
                raise InvalidInputError(f"slot {i}: {word!r} is not one word (no whitespace; ε is \"\")")
            if not (isinstance(p, (int, float, np.integer, np.floating)) and np.isfinite(p) and p >= 0):
                raise InvalidInputError(f"slot {i}: the probability of {word!r} must be finite and ≥ 0, got {p!r}")
        if not sum(slot.values()) > 0:
            raise InvalidInputError(f"slot {i}: its probabilities sum to 0")


def teacher_path(slots: list[dict[str, float]], path: list[str] | None) -> list[str]:
    """The word teacher-forced in each slot: ``path`` checked against the slots' candidates,
    or each slot's most probable word."""
    if path is None:
        return [max(s, key=s.get) for s in slots]
    if len(path) != len(slots) or any(w not in s for w, s in zip(path, slots)):
        raise InvalidInputError("path must give one of each slot's candidate words, one per slot")
    return list(path)


def top_k_target(dist: dict[int, float], tok_id: int, top_k: int, where: str) -> tuple[list[int], list[float]]:
    """``dist`` cut to its ``top_k`` most probable tokens and renormalised, always keeping the
    teacher-forced ``tok_id`` (a one-hot on it when ``dist`` gives it no mass)."""
    if not dist or dist.get(tok_id, 0.0) <= 0:
        dist = {tok_id: 1.0}
    top = sorted(dist.items(), key=lambda kv: -kv[1])[:top_k]
    if tok_id not in dict(top):       # the teacher-forced token must stay in the target
        top = top[:-1] + [(tok_id, dist[tok_id])]
    total = sum(p for _, p in top)
    if not total > 0:
        raise InvalidInputError(f"empty soft target at {where}")
    return [i for i, _ in top], [p / total for _, p in top]


def hard_targets(tokenizer, target: str, eos_token_id: int | None = None):
    """One-hot targets for a target string (same layout as :func:`token_soft_targets`)."""
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    ids = offsets_from_tokenizer(tokenizer, " " + target)[0] + [eos] if target.strip() else [eos]
    return ids, [([i], [1.0]) for i in ids]
