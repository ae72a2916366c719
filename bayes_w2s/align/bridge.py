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
    whole (a byte of a multi-byte character: accents, CJK, emoji) shares the span of the
    token that completes the character, so its log-prob goes to that character's word,
    still counted once. ``text``, when given, must be what the ids decode to.
    """
    ids = [int(i) for i in ids]
    decoded = tokenizer.decode(ids, skip_special_tokens=False)
    if text is not None and decoded != text:
        raise InvalidInputError(f"the ids decode to {decoded!r}, not to the given text {text!r} (a tokenizer that "
                                "normalises text, such as WordPiece's lower-casing, cannot be mapped this way): "
                                "pass text=None to map them onto their own decoding")
    offsets, prev, partial = [], 0, []
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        if not decoded.startswith(prefix):
            partial.append(i)             # half a character: wait for the token that completes it
            offsets.append((prev, prev))
            continue
        end = len(prefix)
        offsets.append((prev, end))
        for j in partial:
            offsets[j] = (prev, end)
        partial, prev = [], end
    return decoded, offsets


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

    def __post_init__(self):
        self.logprobs = np.asarray(self.logprobs, dtype=float)
        if self.logprobs.shape != (len(self.words),):
            raise InvalidInputError(f"{len(self.words)} words but word log-probs of shape {list(self.logprobs.shape)}")
        check_logprobs(self.logprobs, f"the hypothesis {join_words(self.words)!r}")
        if not np.isfinite(self.rest):
            raise InvalidInputError(f"non-finite rest log-prob {self.rest} in the hypothesis {join_words(self.words)!r}")

    @property
    def text(self) -> str:
        return join_words(self.words)

    @property
    def total(self) -> float:
        return float(self.logprobs.sum() + self.rest)


def check_logprobs(logprobs: np.ndarray, where: str) -> None:
    """Log-probabilities must be finite and ≤ 0 (a token a model generated or scored has a
    probability in (0, 1]); ``where`` names the text they belong to in the error."""
    if np.isnan(logprobs).any():
        raise InvalidInputError(f"NaN log-prob in {where}")
    if np.isinf(logprobs).any():
        raise InvalidInputError(f"infinite log-prob in {where}: a generated or scored token has probability in "
                                "(0, 1]; clip zero probabilities (e.g. to a floor like -50) before passing them")
    if (logprobs > 1e-4).any():
        raise InvalidInputError(f"positive log-prob {float(logprobs.max()):.4g} in {where}: log-probabilities are ≤ 0 "
                                "(were these logits or scores rather than log-softmax values?)")


def tokens_to_words(text: str, offsets, token_logprobs) -> WordScores:
    """Sum token log-probs into word log-probs (see the module docstring for the rule)."""
    token_logprobs = np.asarray(token_logprobs, dtype=float)
    if token_logprobs.ndim != 1 or len(offsets) != len(token_logprobs):
        raise InvalidInputError(f"{len(offsets)} token offsets but token log-probs of shape "
                                f"{list(token_logprobs.shape)}: one log-prob per token")
    check_logprobs(token_logprobs, f"the tokens of {text!r}")
    if any(not 0 <= start <= end <= len(text) for start, end in offsets):
        raise InvalidInputError(f"token offsets outside the {len(text)} characters of {text!r}")
    owner = token_to_word(text, offsets)
    words = words_of(text)
    logprobs = np.zeros(len(words))
    np.add.at(logprobs, owner[owner >= 0], token_logprobs[owner >= 0])
    return WordScores(words, logprobs, float(token_logprobs[owner < 0].sum()))


def generated_to_words(tokenizer, ids, token_logprobs, eos_token_id=None) -> WordScores:
    """A generated continuation (ids + their log-probs, EOS possibly last) → words."""
    ids = [int(i) for i in ids]
    token_logprobs = np.asarray(token_logprobs, dtype=float)
    if token_logprobs.shape != (len(ids),):
        raise InvalidInputError(f"{len(ids)} generated ids but token log-probs of shape {list(token_logprobs.shape)}")
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
