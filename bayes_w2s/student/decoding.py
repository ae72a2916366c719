"""Decoding for generation students: output that is always well-formed slot JSON, and a
calibrated "no slot" decision.

* :class:`SlotGrammar` is a character automaton of the targets a student may write for one
  utterance: ``{}`` or ``{"<type>": "<filler>", …}`` (a repeated type as a list), every
  type one of the task's slot types and every filler a contiguous run of whole words of
  the utterance — exactly the shape of the task's targets (``tasks.generation.render_slots``).
  :class:`SlotJSONLogitsProcessor` keeps, at every step, only the tokens whose characters
  the automaton accepts (a joint walk of the automaton and a character trie of the
  vocabulary, so each step visits the few tokens that fit, not the whole vocabulary).
  The diagnosis of issue 14 found the SFT student copying fillers that are not in the
  utterance ("france" for "instagram") in 10–14% of its entities; under the grammar it
  cannot.
* A greedy student says ``{}`` far more often than its targets do (55% of test outputs
  against a posterior that expects 27–30%): the first token decides "no slot" against
  every slot-filled continuation at once. :func:`calibrated_no_slot` decides "no slot"
  per item from the student's own probability of ``{}``, thresholded so that the rate on
  strong_train matches a given rate (the word posterior's expected ``{}`` rate); the
  other items are decoded with ``{}`` forbidden.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from ..errors import InvalidInputError

_IDS = ""           # trie key of the token ids that end at a node ("" is never a character)
DONE = ("done",)


def _inner(text: str) -> str:
    """``text`` as it appears between the quotes of a JSON string (``render_slots``)."""
    return json.dumps(" ".join(str(text).split()), ensure_ascii=False)[1:-1]


class SlotGrammar:
    """Well-formed slot JSON for one utterance, as a deterministic character automaton.

    States are small hashable tuples; :meth:`step` gives the state after one character
    (``None``: the character is not allowed) and is memoised, as are the allowed tokens
    per state (:meth:`allowed`). A state's ``used`` set stops a type from being written
    twice as a key (a repeated type is a list, as in the targets).

    Args:
        text: the utterance; fillers must be runs of its whole words.
        slot_types: the allowed keys.
        allow_empty: whether ``{}`` may be written.
    """

    def __init__(self, text: str, slot_types: Sequence[str], allow_empty: bool = True):
        if not slot_types:
            raise InvalidInputError("constrained decoding needs the task's slot types")
        if isinstance(slot_types, str):   # its characters became the slot types
            raise InvalidInputError(f"slot_types must be a list of slot type names, got one string {slot_types!r}")
        self.utterance = _inner(text)
        u = self.utterance
        self.word_starts = frozenset(i for i in range(len(u)) if u[i] != " " and (i == 0 or u[i - 1] == " "))
        self.types = {_inner(t) for t in slot_types}
        self.prefixes = {t[:k] for t in self.types for k in range(len(t) + 1)}
        self.allow_empty = allow_empty
        self._step: dict = {}
        self._allowed: dict = {}

    initial = ("pre", 0)

    def _ends_word(self, positions) -> bool:
        u = self.utterance
        return any(p == len(u) or u[p] == " " for p in positions)

    def _next(self, s: tuple, c: str):
        kind = s[0]
        if kind == "pre":                         # the completion starts " {" (one optional space)
            return ("open",) if c == "{" else ("pre", 1) if c == " " and s[1] == 0 else None
        if kind == "open":
            if c == "}":
                return DONE if self.allow_empty else None
            return ("key", "", frozenset()) if c == '"' else None
        if kind == "key":
            prefix, used = s[1], s[2]
            if c == '"':
                return ("lit", ": ", ("value", used | {prefix})) if prefix in self.types and prefix not in used else None
            # only a prefix of a type not yet written: a key can always be finished
            return ("key", prefix + c, used) if prefix + c in self.prefixes and \
                any(t.startswith(prefix + c) for t in self.types - used) else None
        if kind == "lit":
            rest, after = s[1], s[2]
            return None if c != rest[0] else after if len(rest) == 1 else ("lit", rest[1:], after)
        if kind == "value":
            return ("span", None, False, s[1]) if c == '"' else \
                ("lit", '"', ("span", None, True, s[1])) if c == "[" else None
        if kind == "span":
            positions, in_list, used = s[1], s[2], s[3]
            if c == '"' and positions is not None and self._ends_word(positions):
                return ("list_next", used) if in_list else ("after", used)
            u = self.utterance
            starts = self.word_starts if positions is None else positions
            moved = frozenset(p + 1 for p in starts if p < len(u) and u[p] == c)
            return ("span", moved, in_list, used) if moved else None
        if kind == "list_next":
            return ("lit", ' "', ("span", None, True, s[1])) if c == "," else ("after", s[1]) if c == "]" else None
        if kind == "after":
            if c == ",":
                return ("lit", ' "', ("key", "", s[1])) if self.types - s[1] else None
            return DONE if c == "}" else None
        return None                               # done: nothing but EOS

    def step(self, state: tuple, char: str):
        key = (state, char)
        if key not in self._step:
            self._step[key] = self._next(state, char)
        return self._step[key]

    def run(self, text: str, state: tuple | None = None):
        """The state after ``text`` (from the start, or from ``state``), or ``None``."""
        state = self.initial if state is None else state
        for c in text:
            state = self.step(state, c)
            if state is None:
                return None
        return state

    def accepts(self, text: str) -> bool:
        return self.run(text) == DONE

    def close(self, text: str) -> str:
        """``text`` if the automaton accepts it; else (decoding stopped at the length limit
        mid-object) its longest prefix that ends after a whole entity, closed (``}`` or
        ``]}``), or ``{}``. The result is an accepted target, except ``{}`` under
        ``allow_empty=False`` when no entity was completed (there is no accepted prefix then)."""
        state, best = self.initial, ""
        for k, c in enumerate(text):
            state = self.step(state, c)
            if state is None:
                break
            if state[0] in ("after", "list_next", "open"):
                best = text[:k + 1] + {"after": "}", "list_next": "]}", "open": "}"}[state[0]]
            if state == DONE:
                return text[:k + 1]
        return best or " {}"

    def allowed(self, state: tuple, vocab: "TokenVocabulary") -> torch.Tensor:
        """Token ids allowed in ``state`` (EOS only once the object is closed)."""
        if state not in self._allowed:
            if state == DONE:
                ids = [vocab.eos_token_id]
            else:
                ids, stack = [], [(vocab.trie, state)]
                while stack:
                    node, st = stack.pop()
                    for ch, child in node.items():
                        if ch == _IDS:
                            continue
                        nxt = self.step(st, ch)
                        if nxt is not None:
                            ids.extend(child.get(_IDS, ()))
                            stack.append((child, nxt))
            self._allowed[state] = torch.as_tensor(sorted(ids), dtype=torch.long)
        return self._allowed[state]


class TokenVocabulary:
    """Each token's text and a character trie over them, built once per tokenizer.

    Needs a tokenizer whose tokens decode independently (byte-level BPE: GPT-2, SmolLM2,
    Llama-3, Qwen); checked on a probe string. Special tokens and tokens that are part of a
    multi-byte character are left out (they can never be written under the grammar)."""

    PROBE = ' {"time": "five am", "date": ["monday", "the twenty first"]}'

    def __init__(self, tokenizer):
        special = set(tokenizer.all_special_ids)
        self.eos_token_id = tokenizer.eos_token_id
        self.strings: list[str | None] = []
        for i in range(len(tokenizer)):
            s = None if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False)
            self.strings.append(s if s and "\ufffd" not in s else None)
        ids = tokenizer(self.PROBE, add_special_tokens=False)["input_ids"]
        if "".join(self.strings[i] or "" for i in ids) != self.PROBE:
            raise InvalidInputError(f"constrained decoding needs a tokenizer whose tokens decode one by one to the "
                                    f"text ({type(tokenizer).__name__} does not)")
        self.trie: dict = {}
        for i, s in enumerate(self.strings):
            if s:
                node = self.trie
                for ch in s:
                    node = node.setdefault(ch, {})
                node.setdefault(_IDS, []).append(i)

    def text(self, ids) -> str:
        return "".join(self.strings[i] or "" for i in ids)


class SlotJSONLogitsProcessor(LogitsProcessor):
    """Masks every token the row's :class:`SlotGrammar` does not allow next.

    Rows are ``[prompts × num_beams]`` of a left-padded batch whose prompts end at
    ``prompt_width``; a row that has written EOS is left alone (the generator pads it)."""

    def __init__(self, vocab: TokenVocabulary, grammars: list[SlotGrammar], prompt_width: int, num_beams: int = 1):
        self.vocab, self.grammars, self.width, self.beams = vocab, grammars, prompt_width, num_beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        eos = self.vocab.eos_token_id
        for row, ids in enumerate(input_ids[:, self.width:].tolist()):
            if eos in ids:
                continue
            grammar = self.grammars[row // self.beams]
            state = grammar.run(self.vocab.text(ids))
            if state is None:        # only if a step was not constrained (never under this processor)
                continue
            allowed = grammar.allowed(state, self.vocab).to(scores.device)
            if len(allowed):
                keep = scores[row, allowed].clone()
                scores[row] = float("-inf")
                scores[row, allowed] = keep
        return scores


class NoEmptyLogitsProcessor(LogitsProcessor):
    """Forbids only the empty object ``{}`` (unconstrained decoding with the no-slot
    decision taken elsewhere): tokens that would make the output start ``{}`` once whitespace
    is dropped, so ``{ }`` and ``{\\n}``, which parse as the same empty object, are banned too."""

    def __init__(self, vocab: TokenVocabulary, prompt_width: int, forbid: list[bool], num_beams: int = 1):
        self.vocab, self.width, self.forbid, self.beams = vocab, prompt_width, forbid, num_beams
        self._banned: dict[str, torch.Tensor] = {}

    def _banned_after(self, text: str) -> torch.Tensor:
        if text not in self._banned:
            self._banned[text] = torch.as_tensor(
                [i for i, s in enumerate(self.vocab.strings)
                 if s and "".join((text + s).split()).startswith("{}")], dtype=torch.long)
        return self._banned[text]

    def __call__(self, input_ids, scores):
        for row, ids in enumerate(input_ids[:, self.width:].tolist()):
            if not self.forbid[row // self.beams]:
                continue
            text = self.vocab.text(ids)
            if text.strip() in ("", "{"):
                scores[row, self._banned_after(text).to(scores.device)] = float("-inf")
        return scores


_VOCABS: dict[int, TokenVocabulary] = {}


def vocabulary(tokenizer) -> TokenVocabulary:
    """The (cached) :class:`TokenVocabulary` of ``tokenizer``."""
    if id(tokenizer) not in _VOCABS:
        _VOCABS[id(tokenizer)] = TokenVocabulary(tokenizer)
    return _VOCABS[id(tokenizer)]


def slot_processors(tokenizer, texts: list[str], slot_types: Sequence[str] | None, forbid_empty=None):
    """A ``processors(items, prompt_width, num_beams)`` callback for
    :meth:`CausalLMGenerator.generate`: the slot grammar (when ``slot_types`` is given)
    and/or a ban on ``{}`` for the items flagged in ``forbid_empty`` (``[len(texts)]``)."""
    vocab = vocabulary(tokenizer)
    forbid = np.zeros(len(texts), bool) if forbid_empty is None else np.asarray(forbid_empty, bool)
    if forbid.shape != (len(texts),):
        raise InvalidInputError(f"forbid_empty must have one flag per text ({len(texts)}), got {forbid.shape}")
    grammars = [SlotGrammar(t, slot_types, allow_empty=not f) for t, f in zip(texts, forbid)] if slot_types else None

    def processors(items, prompt_width: int, num_beams: int) -> list:
        if grammars is not None:
            return [SlotJSONLogitsProcessor(vocab, [grammars[i] for i in items], prompt_width, num_beams)]
        if forbid.any():
            return [NoEmptyLogitsProcessor(vocab, prompt_width, [bool(forbid[i]) for i in items], num_beams)]
        return []
    return processors


def close_all(texts: list[str], outputs: list[str], slot_types: Sequence[str]) -> list[str]:
    """:meth:`SlotGrammar.close` of each output (constrained decoding cut by the length
    limit), stripped like any generated target."""
    if len(texts) != len(outputs):   # zip cut the longer one short
        raise InvalidInputError(f"{len(outputs)} outputs for {len(texts)} texts")
    return [SlotGrammar(t, slot_types).close(" " + o.strip()).strip() for t, o in zip(texts, outputs)]


def empty_scores(generator, texts: list[str]) -> np.ndarray:
    """``[N]`` the generator's mean token log-prob of the target ``{}`` (then EOS) per text;
    every text's ``{}`` has the same tokens, so this ranks items by ``P({})``."""
    return np.array([s[0] for s in generator.score(list(texts), [["{}"]] * len(texts))])


def no_slot_threshold(calibration_scores: np.ndarray, rate: float) -> float:
    """The :func:`empty_scores` threshold at or above which a fraction ``rate`` of the
    calibration items (strong_train: no test labels are used) gets ``{}``."""
    if not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"the no-slot rate must be in [0, 1], got {rate}")
    scores = np.asarray(calibration_scores, dtype=float)
    if scores.ndim != 1 or not scores.size or np.isnan(scores).any():   # NaN: a threshold no item reaches
        raise InvalidInputError(f"the no-slot threshold needs a non-empty 1-D array of scores without NaN, got "
                                f"{scores.shape[0] if scores.ndim else 0} score(s) of shape {scores.shape}")
    return float(np.quantile(scores, 1.0 - rate)) if rate > 0 else float("inf")


def calibrated_no_slot(generator, texts: list[str], calibration_texts: list[str], rate: float):
    """Which ``texts`` get ``{}``: those whose ``P({})`` under the generator reaches the
    :func:`no_slot_threshold` of ``calibration_texts`` for ``rate``. Returns ``(flags [N],
    threshold)``."""
    threshold = no_slot_threshold(empty_scores(generator, calibration_texts), rate)
    return empty_scores(generator, texts) >= threshold, threshold
