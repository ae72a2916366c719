"""The word bridge: every tokenizer's tokens ↔ one shared segmentation into words.

Weak generators use different tokenizers, so their token log-probabilities cannot be
compared token by token. Words can: a *word* is a maximal run of non-whitespace
characters of the text (for a JSON target ``{"time": "five am"}`` the words are
``{"time":``, ``"five`` and ``am"}``), and every token is assigned to exactly one word:

* the word that contains the token's first non-whitespace character;
* a token made only of whitespace (SentencePiece ``▁▁``) joins the next word (the last
  word when it ends the text);
* a token that covers no character (EOS, BOS) belongs to no word and is reported as
  ``rest``.

So a word's log-probability is the sum of its tokens', and the word log-probs plus
``rest`` sum to the sequence log-probability exactly: no mass is lost or counted twice.
A token that straddles a space (rare: multi-word SentencePiece pieces) is counted in the
word where it starts.

Character offsets come from a fast tokenizer's ``offset_mapping``; for ids a model
*generated*, they come from decoding growing prefixes, which is exact for the
tokenization the model actually produced and also works for slow tokenizers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

_WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the whitespace-separated words of ``text``."""
    return [m.span() for m in _WORD.finditer(text)]


def words_of(text: str) -> list[str]:
    return text.split()


def join_words(words: list[str]) -> str:
    """Inverse of :func:`words_of` for texts with single spaces (our rendered targets)."""
    return " ".join(words)


def offsets_from_tokenizer(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """``(token ids, character offsets)`` of ``text`` without special tokens.

    Needs a fast tokenizer (offset mapping); a slow one gets a clear error naming the
    fallback (:func:`offsets_by_decoding` on the ids).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError(
            f"{type(tokenizer).__name__} has no character offsets (not a fast tokenizer); load it with "
            "use_fast=True, or map ids with offsets_by_decoding(tokenizer, ids, text)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def offsets_by_decoding(tokenizer, ids, text: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Character offsets of ``ids`` in their decoded text, from decoding growing prefixes.

    Returns ``(text, offsets)``. A token whose prefix does not decode to a prefix of the
    whole (half of a multi-byte character) gets an empty span at the current position;
    its log-prob then goes to the next word, still counted once.
    """
    ids = [int(i) for i in ids]
    full = tokenizer.decode(ids, skip_special_tokens=False) if text is None else text
    offsets, prev = [], 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        end = len(prefix) if full.startswith(prefix) else prev
        offsets.append((prev, end))
        prev = end
    return full, offsets


def token_to_word(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """For each token, the index of its word in ``words_of(text)``, or ``-1`` (no characters)."""
    spans = word_spans(text)
    starts = np.array([s for s, _ in spans], dtype=int)
    owner = np.full(len(offsets), -1, dtype=int)
    if not spans:
        return owner
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        piece = text[start:end]
        stripped = len(piece) - len(piece.lstrip())
        if stripped == len(piece):          # whitespace only: joins the next word
            nxt = int(np.searchsorted(starts, end))
            owner[t] = min(nxt, len(spans) - 1)
        else:
            first = start + stripped
            owner[t] = int(np.searchsorted(starts, first, side="right")) - 1
    return owner


@dataclass
class WordScores:
    """A hypothesis on the word level: ``words``, their log-probabilities (sums of their
    tokens'), and ``rest`` = the log-prob of tokens outside any word (EOS)."""

    words: list[str]
    logprobs: np.ndarray
    rest: float = 0.0

    @property
    def text(self) -> str:
        return join_words(self.words)

    @property
    def total(self) -> float:
        return float(self.logprobs.sum() + self.rest)


def tokens_to_words(text: str, offsets, token_logprobs) -> WordScores:
    """Sum token log-probs into word log-probs (see the module docstring for the rule)."""
    token_logprobs = np.asarray(token_logprobs, dtype=float)
    if len(offsets) != len(token_logprobs):
        raise InvalidInputError(f"{len(offsets)} token offsets but {len(token_logprobs)} token log-probs")
    if np.isnan(token_logprobs).any():
        raise InvalidInputError("token log-probs contain NaN")
    owner = token_to_word(text, offsets)
    words = words_of(text)
    logprobs = np.zeros(len(words))
    np.add.at(logprobs, owner[owner >= 0], token_logprobs[owner >= 0])
    return WordScores(words, logprobs, float(token_logprobs[owner < 0].sum()))


def generated_to_words(tokenizer, ids, token_logprobs, eos_token_id=None) -> WordScores:
    """A generated continuation (ids + their log-probs, EOS possibly last) → words."""
    ids = [int(i) for i in ids]
    token_logprobs = np.asarray(token_logprobs, dtype=float)
    rest = 0.0
    if eos_token_id is not None and ids and ids[-1] == eos_token_id:
        ids, rest = ids[:-1], float(token_logprobs[-1])
        token_logprobs = token_logprobs[:-1]
    text, offsets = offsets_by_decoding(tokenizer, ids)
    scores = tokens_to_words(text, offsets, token_logprobs)
    # words are whitespace-split, so the decoded text's own spacing does not matter
    scores.rest += rest
    return scores


def words_to_tokens(tokenizer, words: list[str]) -> tuple[list[int], np.ndarray]:
    """The strong model's tokens of ``join_words(words)`` and each token's word index."""
    text = join_words(words)
    ids, offsets = offsets_from_tokenizer(tokenizer, text)
    return ids, token_to_word(text, offsets)
