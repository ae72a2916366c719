"""Choosing the posterior model on gold items, by held-out predictive log-likelihood.

Which posterior suits a task depends on the task: the logistic-t family reads the weak
probabilities best with a handful of classes, one-coin on soft votes is the one that
survives many rare classes, Dawid–Skene sits between (README, "Which model"). A user with
a new task cannot know which in advance, but the weak-to-strong setting gives them a gold
slice: items whose weak labels and true classes are both known. :func:`choose_model` asks it
what a statistician would. Every candidate is fitted with the gold items' weak labels seen
and their classes hidden, given its own gold-chosen temperature
(:func:`~.calibration.choose_temperature`), and scored by the gold items' mean −log p(true
class): the held-out log predictive density, which rewards both ranking and calibration
(Gelman, Hwang & Vehtari, 2014, "Understanding predictive information criteria"). The
lowest wins. One temperature per candidate is chosen on the same items, a one-parameter
optimism that every candidate shares.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .calibration import _integers, choose_temperature, log_loss

#: Candidates of :func:`choose_model` when none are named: one model per regime of the
#: README's "Which model" guide.
DEFAULT_CANDIDATES = ("dawid_skene", "one_coin:soft_votes=3", "logistic_t_pooled", "logistic_t_anchored")


def parse_candidate(spec: str) -> tuple[str, str | None, dict]:
    """``model[@method][:name=number,...]`` → ``(model, method or None, settings)``;
    integers stay integers (``one_coin@vb:soft_votes=3``)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidInputError(f"a posterior candidate is a string model[@method][:name=number,...], got {spec!r}")
    head, _, settings = spec.partition(":")
    model, _, method = head.partition("@")
    parsed = {}
    for item in filter(None, settings.split(",")):
        name, eq, value = item.partition("=")
        try:
            parsed[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            eq = ""
        if not (eq and name):
            raise InvalidInputError(f"posterior candidate {spec!r} is not model[@method][:name=number,...]: "
                                    f"{item!r} is not name=number")
    return model, method or None, parsed


@dataclass
class ModelSearch:
    """Result of :func:`choose_model`.

    Attributes:
        chosen: the candidate with the lowest gold log-loss at its temperature.
        temperature: the temperature chosen for it on the gold items.
        scores: one row per candidate (its spec as index): ``gold_log_loss`` at the chosen
            ``temperature``, ``plain_log_loss`` at T = 1, ``gold_accuracy`` (%, argmax),
            ``seconds`` of fitting, and ``warning`` / ``error`` (a candidate whose fit
            failed has NaN scores and is never chosen).
        fits: each fitted candidate's posterior, at T = 1.
        item_probs: each fitted candidate's ``[N, K]`` item posteriors at its chosen
            temperature (``item_probs[chosen]``: the chosen targets, gold classes hidden).
    """

    chosen: str
    temperature: float
    scores: pd.DataFrame = field(repr=False)
    fits: dict = field(default_factory=dict, repr=False)
    item_probs: dict = field(default_factory=dict, repr=False)


def choose_model(labels, gold_index, gold_labels, candidates=DEFAULT_CANDIDATES, *, temperature: bool = True,
                 **fit_kwargs) -> ModelSearch:
    """The candidate posterior whose fit best predicts the gold items' classes.

    Args:
        labels: weak labels of every item, the gold items among them (a ``WeakLabels`` when
            a candidate reads probabilities or soft votes; any layout ``fit_posterior`` takes).
        gold_index / gold_labels: positions of the gold items among ``labels``' items, and
            their classes (indices); the classes are never shown to the fits.
        candidates: ``model[@method][:name=number,...]`` strings (default
            :data:`DEFAULT_CANDIDATES`).
        temperature: choose each candidate's temperature on gold first (False: T = 1).
        **fit_kwargs: passed to every fit (``progress=False``, ``num_classes``).
    """
    from . import fit_posterior   # the package imports this module

    parsed = check_candidates(candidates)
    gold_index = _integers(gold_index, "gold_index", mask_ok=True)
    gold_labels = _integers(gold_labels, "gold_labels")
    if len(gold_index) == 0 or len(gold_index) != len(gold_labels):
        raise InvalidInputError(f"choose_model needs gold items: {len(gold_index)} positions for "
                                f"{len(gold_labels)} labels")
    rows, fits, item_probs = {}, {}, {}
    for spec, (model, method, settings) in parsed.items():
        row = dict(gold_log_loss=math.nan, plain_log_loss=math.nan, temperature=math.nan, gold_accuracy=math.nan,
                   seconds=math.nan, warning="", error="")
        rows[spec] = row
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                post = fit_posterior(labels, model, method, **settings, **fit_kwargs)
        except InvalidInputError as err:   # e.g. soft votes on hard votes: this candidate cannot read these labels
            row.update(error=str(err).split("\n")[0], seconds=time.perf_counter() - start)
            continue
        row["warning"] = "; ".join(sorted({str(w.message).split("\n")[0] for w in caught}))
        n, k = post.item_probs.shape
        if gold_index.max() >= n or gold_labels.max() >= k:
            raise InvalidInputError(f"gold items out of range: positions up to {int(gold_index.max())} for {n} "
                                    f"items, classes up to {int(gold_labels.max())} for {k} classes")
        t = 1.0
        if temperature:
            t = choose_temperature(lambda t: post.predict_proba(labels, temperature=t), gold_index,
                                   gold_labels).temperature
        fits[spec] = post
        item_probs[spec] = probs = post.predict_proba(labels, temperature=t) if t != 1.0 else post.item_probs
        gold_probs = probs[gold_index]
        row.update(gold_log_loss=log_loss(gold_probs, gold_labels), temperature=t,
                   plain_log_loss=log_loss(post.item_probs[gold_index], gold_labels),
                   gold_accuracy=100 * float((gold_probs.argmax(-1) == gold_labels).mean()),
                   seconds=time.perf_counter() - start)
    scores = pd.DataFrame.from_dict(rows, orient="index")
    scores.index.name = "candidate"
    if scores["gold_log_loss"].isna().all():
        raise InvalidInputError("no posterior candidate could be fitted: "
                                + "; ".join(f"{s}: {e}" for s, e in scores["error"].items()))
    chosen = str(scores["gold_log_loss"].idxmin())
    return ModelSearch(chosen, float(scores.loc[chosen, "temperature"]), scores, fits, item_probs)


def check_candidates(candidates) -> dict:
    """``{spec: (model, method, settings)}`` of a list of candidate specs, each naming a
    classification model, a method of it and settings it takes; checked before any fit."""
    from .inputs import check_fit_settings
    from .models import MODELS

    if isinstance(candidates, str) or not hasattr(candidates, "__len__") or not len(candidates):
        raise InvalidInputError(f"candidates must be a non-empty list of model[@method][:name=number] strings, "
                                f"got {candidates!r}")
    parsed = {spec: parse_candidate(spec) for spec in candidates}
    if len(parsed) != len(candidates):
        raise InvalidInputError(f"candidates repeat a spec: {list(candidates)}")
    for spec, (model, method, settings) in parsed.items():
        if model not in MODELS or MODELS[model].observes == "words":
            raise InvalidInputError(f"posterior candidate {spec!r}: unknown classification model {model!r}; "
                                    f"available: {sorted(n for n, m in MODELS.items() if m.observes != 'words')}")
        if method is not None and method not in MODELS[model].methods:
            raise InvalidInputError(f"posterior candidate {spec!r}: {model!r} has no method {method!r}; "
                                    f"it has {list(MODELS[model].methods)}")
        check_fit_settings(model, method or MODELS[model].methods[0], settings)
    return parsed

