"""The grammar of a posterior candidate, ``model[@method][:name=value,...]``.

Shared by :mod:`bayes_w2s.config`, which checks a YAML file's ``posterior_candidates``
without importing torch, and :mod:`bayes_w2s.posterior.selection`, which fits them, so that
both read a spec the same way.
"""
from __future__ import annotations

import re

from .errors import InvalidInputError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: settings whose values are arrays, which a one-line spec cannot hold
ARRAY_SETTINGS = ("prior_counts",)


def _value(text: str):
    """A setting's value: an int, a float, true / false, or a bare word (``backend=numpyro``);
    ``None`` for anything else (``nan`` and ``inf`` are words, refused by the setting's check)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text if _WORD.fullmatch(text) else None


def parse_candidate(spec: str) -> tuple[str, str | None, dict]:
    """``model[@method][:name=value,...]`` → ``(model, method or None, settings)``; integers
    stay integers (``one_coin@vb:soft_votes=3``), ``true`` / ``false`` are booleans and a bare
    word is a string (``dawid_skene@nuts:backend=numpyro``). Whether the model, method and
    settings exist is checked by whoever fits it."""
    grammar = "model[@method][:name=value,...]"
    if not isinstance(spec, str) or not spec:
        raise InvalidInputError(f"a posterior candidate is a string {grammar}, got {spec!r}")
    head, colon, settings = spec.partition(":")
    model, at, method = head.partition("@")
    if not _NAME.fullmatch(model):
        raise InvalidInputError(f"posterior candidate {spec!r} is not {grammar}: {model!r} is not a model name")
    if at and not _NAME.fullmatch(method):
        raise InvalidInputError(f"posterior candidate {spec!r} is not {grammar}: {method!r} is not a method name")
    if colon and not settings:
        raise InvalidInputError(f"posterior candidate {spec!r} is not {grammar}: nothing after ':'")
    parsed = {}
    for item in settings.split(",") if colon else []:
        name, eq, text = item.partition("=")
        value = _value(text) if eq and _NAME.fullmatch(name) else None
        if value is None:
            raise InvalidInputError(f"posterior candidate {spec!r} is not {grammar}: {item!r} is not name=value "
                                    "(a number, true / false or a word)")
        if name in parsed:
            raise InvalidInputError(f"posterior candidate {spec!r} sets {name!r} twice")
        if name in ARRAY_SETTINGS:
            raise InvalidInputError(f"posterior candidate {spec!r}: {name} is an array, which a candidate spec "
                                    "cannot hold; fit that posterior with fit_posterior(..., prior_counts=...) "
                                    "or a method's posterior_kwargs")
        parsed[name] = value
    return model, method or None, parsed


def candidate_fit(spec: str, default_method) -> tuple:
    """What ``spec`` fits: ``(model, method, settings)``, the method resolved by
    ``default_method(model)``, the settings sorted. Two specs fit the same posterior when
    these are equal (``soft_votes=3`` and ``soft_votes=3.0``, ``dawid_skene`` and
    ``dawid_skene@em``; ``true`` is not ``1``)."""
    model, method, settings = parse_candidate(spec)
    keyed = tuple(sorted((name, (type(v) is bool, v)) for name, v in settings.items()))
    return model, method or default_method(model), keyed
