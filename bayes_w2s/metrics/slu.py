"""SLU-F1 (Bastianelli et al., 2020, "SLURP: A Spoken Language Understanding Resource
Package", EMNLP), as SLURP's official evaluation computes it, plus exact match.

Each predicted entity whose type occurs among the unmatched gold entities is paired
with the gold entity of that type at the lowest distance ``d ∈ [0, 1+]`` from its filler;
the pair adds ``1`` to TP and ``d`` to both FP and FN (a near miss is partly right).
Other predictions add 1 to FP, leftover gold entities 1 to FN. Two distances give two
confusion tables:

* word: WER of the filler (word-level Levenshtein / number of gold words);
* char: character Levenshtein / the longer filler's length.

Word-F1 and Char-F1 are the F1 of each table; **SLU-F1 is the F1 of their sum**.
Counts are summed over the corpus (micro average), and so are the tables per type.
"""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from rapidfuzz.distance import Levenshtein

from ..errors import InvalidInputError
from ..tasks.generation import parse_slots


def word_distance(gold: str, pred: str) -> float:
    """WER of ``pred`` against ``gold`` (jiwer's definition, as the official script)."""
    ref = gold.split()
    if not ref:
        raise InvalidInputError("a gold slot filler is empty")
    return Levenshtein.distance(ref, pred.split()) / len(ref)


def char_distance(gold: str, pred: str) -> float:
    """Levenshtein distance / length of the longer string (textdistance's normalisation)."""
    return Levenshtein.normalized_distance(gold, pred)


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def _span_counts(gold: list[dict], pred: list[dict], distance) -> np.ndarray:
    """(TP, FP, FN) of one utterance under ``distance`` (the official greedy matching,
    in prediction order)."""
    tp = fp = fn = 0.0
    remaining = list(gold)
    for p in pred:
        candidates = [(distance(g["filler"], p["filler"]), i)
                      for i, g in enumerate(remaining) if g["type"] == p["type"]]
        if candidates:
            d, i = min(candidates)
            tp, fp, fn = tp + 1, fp + d, fn + d
            remaining.pop(i)
        else:
            fp += 1
    return np.array([tp, fp, fn + len(remaining)])


def _exact_counts(gold: list[dict], pred: list[dict]) -> np.ndarray:
    """(TP, FP, FN) of one utterance when only an identical (type, filler) counts."""
    remaining = list(gold)
    tp = 0
    for p in pred:
        if p in remaining:
            remaining.remove(p)
            tp += 1
    return np.array([tp, len(pred) - tp, len(remaining)], dtype=float)


def slu_scores(predictions, references) -> dict[str, float]:
    """Corpus-level SLU metrics of generated slot strings against reference targets.

    Args:
        predictions: generated strings (malformed JSON counts as "no entities").
        references: target strings (must be well-formed).

    Returns ``slu_f1``, ``slu_precision``, ``slu_recall``, ``word_f1``, ``char_f1``,
    ``span_f1`` (exact type + filler), ``exact_match`` (same entity multiset) and
    ``malformed`` (fraction of predictions that were not a JSON object of fillers) and
    ``no_slots`` (fraction of predictions that fill no slot, malformed ones included: a
    student that learns to say ``{}`` shows here first); all in [0, 1]. A corpus in which
    neither the references nor the predictions name any slot has F1 0, as SLURP's official
    scorer has it (its precision and recall are 0/0, taken as 0), while ``exact_match`` is 1;
    :func:`item_slu_f1`, a ranking utility, gives such an item 1.
    """
    pairs = _parsed_pairs(predictions, references)
    word = np.zeros(3)
    char = np.zeros(3)
    span = np.zeros(3)
    exact = malformed = no_slots = 0
    for gold, pred, ok in pairs:
        malformed += not ok
        no_slots += not pred
        word += _span_counts(gold, pred, word_distance)
        char += _span_counts(gold, pred, char_distance)
        span += _exact_counts(gold, pred)
        key = lambda e: (e["type"], e["filler"])  # noqa: E731
        exact += sorted(map(key, gold)) == sorted(map(key, pred))
    precision, recall, f1 = _prf(*(word + char))
    return {"slu_f1": f1, "slu_precision": precision, "slu_recall": recall,
            "word_f1": _prf(*word)[2], "char_f1": _prf(*char)[2], "span_f1": _prf(*span)[2],
            "exact_match": exact / len(pairs), "malformed": malformed / len(pairs), "no_slots": no_slots / len(pairs)}


def item_slu_f1(prediction: str, reference: str) -> float:
    """SLU-F1 of one utterance (word + char tables, as :func:`slu_scores`); 1 when neither
    has a slot (nothing to find and nothing claimed). A utility for ranking candidates, whose
    reference may be a posterior draw: a gold entity with an empty filler counts as absent."""
    (gold, pred, _), = _parsed_pairs([prediction], [reference], empty_fillers=True)
    gold = [e for e in gold if e["filler"]]
    if not gold and not pred:
        return 1.0
    counts = _span_counts(gold, pred, word_distance) + _span_counts(gold, pred, char_distance)
    return _prf(*counts)[2]


def per_slot_type(predictions, references) -> dict[str, dict[str, float]]:
    """SLU precision / recall / F1 per gold or predicted slot type (word + char tables)."""
    tables: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3))
    for gold, pred, _ in _parsed_pairs(predictions, references):
        for kind in {e["type"] for e in gold + pred}:
            g = [e for e in gold if e["type"] == kind]
            p = [e for e in pred if e["type"] == kind]
            tables[kind] += _span_counts(g, p, word_distance) + _span_counts(g, p, char_distance)
    return {kind: dict(zip(("precision", "recall", "f1"), _prf(*t))) for kind, t in sorted(tables.items())}


def _parsed_pairs(predictions, references, empty_fillers: bool = False) -> list[tuple[list[dict], list[dict], bool]]:
    """``(gold entities, predicted entities, prediction well-formed?)`` per item, after the
    checks every corpus metric needs: two lists of one length, references well-formed with
    no empty filler (named by index, before any scoring)."""
    for name, texts in (("predictions", predictions), ("references", references)):
        if isinstance(texts, (str, bytes)):
            raise InvalidInputError(f"{name} must be a list of strings, one per item, not a single string")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise InvalidInputError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise InvalidInputError("SLU-F1 of an empty set is undefined")
    pairs = []
    for i, (pred_text, ref_text) in enumerate(zip(predictions, references)):
        gold, ok = parse_slots(ref_text)
        if ok and not empty_fillers:   # a reference is data: all of it one JSON object, nothing after it
            try:
                json.loads(ref_text)
            except (json.JSONDecodeError, TypeError, RecursionError):
                ok = False
        if not ok:
            raise InvalidInputError(f"reference {i} is not a JSON object of slot fillers: {ref_text!r}")
        if not empty_fillers and any(not e["filler"] for e in gold):
            raise InvalidInputError(f"reference {i} has an empty slot filler (SLU-F1's word distance divides by "
                                    f"the gold filler's length): {ref_text!r}")
        pairs.append((gold, *parse_slots(pred_text)))
    return pairs
