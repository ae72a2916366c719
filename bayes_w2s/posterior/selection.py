"""Choosing the posterior model on gold items, by a proper score of their hidden classes.

Which posterior suits a task depends on the task: the logistic-t family reads the weak
probabilities best with a handful of classes, one-coin on soft votes is the one that
survives many rare classes, Dawid–Skene sits between (README, "Which model"). A user with
a new task cannot know which in advance, but the weak-to-strong setting gives them a gold
slice: items whose weak labels and true classes are both known. :func:`choose_model` asks it
what a statistician would. Every candidate is fitted with the gold items' weak labels seen
and their classes hidden, given its own gold-chosen temperature
(:func:`~.calibration.choose_temperature`), and scored on the gold classes no fit saw by a
proper scoring rule, which rewards ranking and calibration both (Gneiting & Raftery, 2007).
The lowest wins.

The default score is Brier's (Σ_k (p_k − 1[k = c])², bounded by 2), not the log score. The
log score is unbounded, and a MAP class prior puts exactly 0 on classes the fit gave no item:
on ATIS (26 intents, most of them rare) one-coin's soft-vote posterior gives 4 of 200 gold items
probability 0 for their true intent, which alone adds 0.55 nats to its gold log-loss, and the
log score prefers the hard-vote one-coin (85.7% right on strong_train) to it (88.8%); Brier
ranks them as accuracy does. ``score="log"`` is there for those who want the log predictive.

It is not a fully held-out score: each temperature is tuned on the same items, a
one-parameter optimism every candidate shares, and with a few hundred gold items small gaps are
noise, which the paired standard error ``dse`` in :attr:`ModelSearch.scores` shows (as
``az.compare``'s). LOO (:func:`~bayes_w2s.posterior.compare_posteriors`) cannot make this
choice: it compares models of the same observations, and a vote model and a model of the
probabilities observe different things.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import joblib
import numpy as np
import pandas as pd

from ..candidates import candidate_fit, parse_candidate
from ..errors import InvalidInputError
from .calibration import choose_temperature, gold_items, log_loss

#: Candidates of :func:`choose_model` when none are named: one model per regime of the
#: README's "Which model" guide.
DEFAULT_CANDIDATES = ("dawid_skene", "one_coin:soft_votes=3", "logistic_t_pooled", "logistic_t_anchored")


@dataclass
class ModelSearch:
    """Result of :func:`choose_model`.

    Attributes:
        chosen: the candidate with the lowest gold score at its temperature.
        score: the score that chose it (``brier`` or ``log``).
        temperature: the temperature of the chosen candidate (chosen on the gold items, or the
            one given).
        scores: one row per candidate (its spec as index): ``gold_brier`` and ``gold_log_loss``
            (mean over the gold items) at its ``temperature``, ``dse`` (the standard error of its
            per-item difference in the choosing score from the chosen candidate: a gap of less
            than about 2 ``dse`` is one the gold slice cannot resolve), ``plain_log_loss`` at
            T = 1, ``gold_accuracy`` (%, argmax), ``seconds`` of fitting, and ``warning`` /
            ``error`` (a candidate whose fit failed has NaN scores and is never chosen).
        fits: each fitted candidate's posterior, at T = 1.
        item_probs: each fitted candidate's ``[N, K]`` item posteriors at its temperature
            (``item_probs[chosen]``: the chosen targets, gold classes hidden).
    """

    chosen: str
    temperature: float
    score: str
    scores: pd.DataFrame = field(repr=False)
    fits: dict = field(default_factory=dict, repr=False)
    item_probs: dict = field(default_factory=dict, repr=False)


def choose_model(labels, gold_index=None, gold_labels=None, candidates=DEFAULT_CANDIDATES, *, gold=None,
                 temperature="gold", score: str = "brier", n_jobs: int = 1, **fit_kwargs) -> ModelSearch:
    """The candidate posterior whose fit best predicts the gold items' classes.

    Args:
        labels: weak labels of every item, the gold items among them (a ``WeakLabels`` when
            a candidate reads probabilities or soft votes; any layout ``fit_posterior`` takes).
        gold_index / gold_labels: positions (or a boolean mask) of the gold items among
            ``labels``' items, and their classes (indices); the classes are never shown to the fits.
        gold: or the gold items as ``fit_posterior`` takes them — ``{item: label}`` (items by id,
            labels by name or index) or an ``[N]`` array with −1 for unknown — e.g. for a crowd
            frame, whose item order is the fit's and not the frame's.
        candidates: ``model[@method][:name=value,...]`` strings (default
            :data:`DEFAULT_CANDIDATES`).
        temperature: ``"gold"`` — each candidate is scored at the temperature it is given on the
            gold items — or a number T > 0, at which all are scored.
        score: ``"brier"`` (default) or ``"log"`` (mean −log p(true class)); see the module
            docstring for why not the log score by default.
        n_jobs: candidates fitted at once in joblib's worker processes (−1: one per core, at most
            one per candidate; progress bars off). The fits are those of ``n_jobs=1`` (bit for bit on SST-2,
            AG News and ATIS, ``experiments/results/bench_choose_model``; on inputs large enough for
            torch to use several threads the last bits may differ). Loky's workers do not re-run
            the calling script, so it needs no ``if __name__ == "__main__":`` guard.
        **fit_kwargs: passed to every fit (``progress=False``, ``num_classes``); not ``gold`` or
            ``temperature``, nor a setting a candidate names itself.
    """
    from .engine import check_temperature

    parsed = check_candidates(candidates)
    if score not in SCORES:
        raise InvalidInputError(f"choose_model: score must be one of {sorted(SCORES)}, got {score!r}")
    if temperature != "gold":
        temperature = check_temperature(temperature)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or not (n_jobs >= 1 or n_jobs == -1):
        raise InvalidInputError(f"choose_model: n_jobs must be a positive integer or -1 (one per core), got {n_jobs!r}")
    if "temperature" in fit_kwargs:   # a keyword-only argument of its own: only a misspelt call gets here
        raise InvalidInputError("choose_model: temperature is choose_model's own argument, not a fit setting")
    for spec, (_, _, settings) in parsed.items():
        if set(settings) & set(fit_kwargs):
            raise InvalidInputError(f"choose_model: candidate {spec!r} sets {sorted(set(settings) & set(fit_kwargs))}"
                                    " and so do the keyword arguments; set it in one place")
    if gold is not None:
        if gold_index is not None or gold_labels is not None:
            raise InvalidInputError("choose_model: give the gold items as gold= or as gold_index / gold_labels, "
                                    "not both")
        gold_index, gold_labels = _gold_positions(labels, gold, fit_kwargs)
    elif gold_index is None or gold_labels is None:
        raise InvalidInputError("choose_model needs the gold items: gold_index and gold_labels, or gold=")
    gold_index, gold_labels, mask_length = gold_items(gold_index, gold_labels, "choose_model")
    jobs = [(spec, model, method, {**settings, **fit_kwargs}) for spec, (model, method, settings) in parsed.items()]
    run = partial(_fit_candidate, labels, gold_index=gold_index, gold_labels=gold_labels, mask_length=mask_length,
                  temperature=temperature)
    workers = min(joblib.effective_n_jobs(n_jobs), len(jobs))
    if workers == 1:
        outcomes = [run(*job[1:]) for job in jobs]
    else:
        # loky, never threads: fits share process state (Pyro's param store, torch's thread count, the warnings
        # filter). max_nbytes=None: inputs are pickled, not memmapped read-only (torch warns on those).
        # Progress bars off: several workers' bars would overwrite each other.
        outcomes = joblib.Parallel(n_jobs=workers, backend="loky", max_nbytes=None)(
            joblib.delayed(run)(model, method, {**settings, "progress": False}) for _, model, method, settings in jobs)
    rows, fits, item_probs, item_loss = {}, {}, {}, {}
    for (spec, *_), outcome in zip(jobs, outcomes):
        row = dict(gold_brier=math.nan, gold_log_loss=math.nan, dse=math.nan, plain_log_loss=math.nan,
                   temperature=math.nan, gold_accuracy=math.nan, seconds=outcome.seconds, warning=outcome.warning,
                   error=outcome.error)
        rows[spec] = row
        if outcome.error:
            continue
        post, probs, t = outcome.posterior, outcome.probs, outcome.temperature
        fits[spec], item_probs[spec] = post, probs
        gold_probs = probs[gold_index]
        per_item = {name: rule(gold_probs, gold_labels) for name, rule in SCORES.items()}
        item_loss[spec] = per_item[score]
        row.update(gold_brier=float(per_item["brier"].mean()), gold_log_loss=float(per_item["log"].mean()),
                   temperature=float(t),
                   plain_log_loss=log_loss(post.item_probs[gold_index], gold_labels),
                   gold_accuracy=100 * float((gold_probs.argmax(-1) == gold_labels).mean()))
    scores = pd.DataFrame.from_dict(rows, orient="index")
    scores.index.name = "candidate"
    if not fits:
        raise InvalidInputError("no posterior candidate could be fitted: "
                                + "; ".join(f"{s}: {e}" for s, e in scores["error"].items()))
    chosen = str(scores[SCORE_COLUMNS[score]].idxmin())
    for spec, loss in item_loss.items():   # the paired standard error of each gap, as az.compare's dse
        scores.loc[spec, "dse"] = float(np.std(loss - item_loss[chosen], ddof=1) / np.sqrt(len(loss))) \
            if len(loss) > 1 else math.nan
    if scores.loc[chosen, "warning"]:
        warnings.warn(f"choose_model: the chosen posterior {chosen!r} warned while fitting: "
                      f"{scores.loc[chosen, 'warning']}", stacklevel=2)
    return ModelSearch(chosen, float(scores.loc[chosen, "temperature"]), score, scores, fits, item_probs)


@dataclass
class _Outcome:
    """One candidate's fit, or why it failed."""
    seconds: float
    posterior: object = None
    probs: np.ndarray | None = None
    temperature: float = math.nan
    warning: str = ""
    error: str = ""


def _fit_candidate(labels, model, method, settings, *, gold_index, gold_labels, mask_length, temperature) -> _Outcome:
    """Fit one candidate with the gold classes hidden and give it its temperature. Gold input that
    no candidate can read raises; anything else that stops this candidate is recorded in the outcome."""
    from . import fit_posterior   # the package imports this module

    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            post = fit_posterior(labels, model, method, **settings)
        n, k = post.item_probs.shape
        if gold_index.max() >= n or gold_labels.max() >= k or mask_length not in (None, n):
            mask = "" if mask_length is None else f" (a mask of {mask_length})"
            raise _GoldOutOfRange(f"gold items out of range: positions up to {int(gold_index.max())}{mask} for {n} "
                                  f"items, classes up to {int(gold_labels.max())} for {k} classes")
        t = temperature
        if t == "gold":
            t = choose_temperature(lambda t: post.predict_proba(labels, temperature=t), gold_index,
                                   gold_labels).temperature
        probs = post.predict_proba(labels, temperature=t) if t != post.temperature else post.item_probs
    except _GoldOutOfRange as err:
        raise InvalidInputError(str(err)) from None
    # this candidate cannot read these labels (soft votes on hard votes), or its fit broke down numerically
    except (InvalidInputError, ValueError, RuntimeError, FloatingPointError) as err:
        return _Outcome(time.perf_counter() - start,
                        error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return _Outcome(time.perf_counter() - start, post, probs, float(t),
                    warning="; ".join(sorted({str(w.message).split("\n")[0] for w in caught})))


def _gold_positions(labels, gold, fit_kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """``gold`` as ``fit_posterior`` reads it → (positions among the fit's items, class indices)."""
    from .inputs import as_label_matrix, gold_labels, name_axes

    lm = name_axes(as_label_matrix(labels, num_classes=fit_kwargs.get("num_classes"),
                                   label_names=fit_kwargs.get("label_names")),
                   fit_kwargs.get("model_names"), fit_kwargs.get("item_ids"))
    classes = gold_labels(gold, lm)
    if classes is None or not (classes >= 0).any():
        raise InvalidInputError("choose_model needs gold items: gold names none")
    index = np.flatnonzero(classes >= 0)
    return index, classes[index]


def _brier(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[N]`` Σ_k (p_k − 1[k = c])² per item."""
    return ((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(-1)


def _log_score(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[N]`` −log p(true class) per item, probabilities clipped at 1e-12 (as ``log_loss``)."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))


#: per-item scoring rules of :func:`choose_model` (lower is better), and their columns in ``scores``
SCORES = {"brier": _brier, "log": _log_score}
SCORE_COLUMNS = {"brier": "gold_brier", "log": "gold_log_loss"}


class _GoldOutOfRange(InvalidInputError):
    """Bad gold input, which no candidate can fix: raised, not recorded as a failed candidate."""


def check_candidates(candidates) -> dict:
    """``{spec: (model, method, settings)}`` of a list of candidate specs, each naming a
    classification model, a method of it and settings it takes, priors in their ranges;
    checked before any fit."""
    from . import split_kwargs
    from .inputs import check_fit_settings
    from .models import MODELS

    if isinstance(candidates, str) or not hasattr(candidates, "__len__") or not len(candidates):
        raise InvalidInputError(f"candidates must be a non-empty list of model[@method][:name=value] strings, "
                                f"got {candidates!r}")
    parsed = {spec: parse_candidate(spec) for spec in candidates}
    fits = [candidate_fit(spec, lambda m: MODELS[m].methods[0] if m in MODELS else None) for spec in candidates]
    if len(parsed) != len(candidates) or len(set(fits)) != len(fits):
        raise InvalidInputError(f"candidates repeat a fit: {list(candidates)}")
    for spec, (model, method, settings) in parsed.items():
        if model not in MODELS or MODELS[model].observes == "words":
            raise InvalidInputError(f"posterior candidate {spec!r}: unknown classification model {model!r}; "
                                    f"available: {sorted(n for n, m in MODELS.items() if m.observes != 'words')}")
        if method is not None and method not in MODELS[model].methods:
            raise InvalidInputError(f"posterior candidate {spec!r}: {model!r} has no method {method!r}; "
                                    f"it has {list(MODELS[model].methods)}")
        method = method or MODELS[model].methods[0]
        try:    # setting names and values, then prior ranges (beta_diag = -1 would fail only when fitted)
            check_fit_settings(model, method, settings)
            priors, _, fit_settings = split_kwargs(MODELS[model], method, settings)
            guide = fit_settings.get("guide", getattr(MODELS[model], "default_guide", None))
            MODELS[model].priors(priors, point_estimate=method == "em" or (method == "svi" and guide == "delta"))
        except InvalidInputError as err:
            raise InvalidInputError(f"posterior candidate {spec!r}: {err}") from None
    return parsed

