"""Posterior models over weak labels: Pyro models, EM / VB / SVI / NUTS, ArviZ diagnostics.

``fit_posterior`` is the functional entry point, for class labels and for word
hypotheses of generation tasks; :mod:`.estimators` puts crowd-kit-style classes
(``fit`` / ``fit_predict_proba``) on the same core; ``compare_posteriors`` ranks fits of the
same observations by LOO, ``choose_model`` any candidates (votes or probabilities) by a proper
score of gold items' hidden classes (:mod:`.selection`). Models live in :mod:`.models` (one
module each), inference in :mod:`.engine`.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, UnknownNameError, check_name_list
from .base import Posterior
from ..threads import intra_op_threads
from .engine import FITTERS, check_temperature, threads_for
from .inputs import (LabelMatrix, as_label_matrix, check_fit_settings, check_soft_outputs, fit_settings, gold_labels,
                     name_axes)
from .models import MODELS, get_model
from .selection import choose_model
from .words import WordPosterior, slot_table

#: model -> inference methods it supports, the first being its default
METHODS = {name: m.methods for name, m in MODELS.items()}


def available_posteriors() -> list[tuple[str, str]]:
    return sorted((m, me) for m, methods in METHODS.items() for me in methods)


def split_kwargs(model, method: str, kwargs: dict) -> tuple[dict, dict, dict]:
    """``kwargs`` → (priors, data settings, method settings); unknown names fail, naming all
    three groups."""
    priors_known = set(model.prior_defaults())
    data_known = set(model.data_settings)
    method_known = set(fit_settings(model.name, method)[1]) - data_known
    priors = {k: v for k, v in kwargs.items() if k in priors_known}
    data = {k: v for k, v in kwargs.items() if k in data_known}
    settings = {k: v for k, v in kwargs.items() if k in method_known}
    unknown = set(kwargs) - set(priors) - set(data) - set(settings)
    if unknown:
        raise InvalidInputError(
            f"unknown prior setting(s) or option(s) {sorted(unknown)} for {model.name}/{method}; priors: "
            f"{sorted(priors_known)}; data settings: {sorted(data_known)}; {method} settings: {sorted(method_known)}")
    return priors, data, settings


def fit_posterior(labels, model: str = "dawid_skene", method: str | None = None, *,
                  num_classes: int | None = None, label_names=None, model_names=None, item_ids=None,
                  gold=None, temperature: float = 1.0, **kwargs) -> Posterior | WordPosterior:
    """Fit a posterior over the true labels (or words) given weak labels (or hypotheses).

    Args:
        labels: a ``WeakLabels`` (soft ``[N, M, K]``; vote models use its argmax votes, the
            soft-label models its probabilities), an int array ``[N, M]`` of hard votes
            (``-1`` = abstain), or a long ``DataFrame`` with columns ``task, worker, label``
            (a worker may label a task more than once). For the word models: a
            ``WeakHypotheses`` or ``hypotheses[n][m]``, weak model m's output for item n
            (a string, a word list or ``WordScores`` with word log-probs).
        model: ``dawid_skene`` | ``one_coin`` | ``hierarchical`` | ``ebcc`` (votes);
            ``soft`` | ``logistic_t`` | ``logistic_t_hetero`` | ``logistic_t_pooled`` |
            ``logistic_t_anchored`` (probabilities);
            ``word_reliability`` |
            ``word_reliability_conf`` (word hypotheses; they return a :class:`WordPosterior`).
        method: ``em`` (closed-form MAP-EM) | ``vb`` (closed-form mean-field VB, conjugate
            models) | ``svi`` (``TraceEnum_ELBO``) | ``nuts`` (Pyro's; ``backend="numpyro"``: NumPyro's,
            compiled by JAX, for ``dawid_skene``, ``ebcc`` and ``hierarchical``) | ``hmc`` (static HMC, a
            quarter orbit of the whitened posterior); default: the model's first.
        num_classes / label_names: the class set, when it cannot be read off ``labels``.
        model_names / item_ids: axis labels of word hypotheses given as plain lists.
        gold: items whose true class is known, ``{item: label}`` (items by id or position,
            labels by name or index) or an ``[N]`` array with −1 (or masked, or NaN) for unknown;
            c is observed there (semi-supervised fitting). Classification models only.
        temperature: T of the item posterior p(c | y, θ) ∝ π_c p(y | c, θ)^{1/T}, applied to
            the fitted model (the globals are fitted at T = 1); T = 1 is the plain model, T > 1
            discounts evidence the model counts as independent but is not (correlated weak
            models). Choose it on gold items: :func:`bayes_w2s.posterior.calibration.choose_temperature`.
        **kwargs: priors of the model (e.g. ``beta_diag``), data settings (``eps``) and
            settings of the method (:mod:`.engine`'s ``fit_em``, ``fit_vb``, ``fit_svi``,
            ``fit_nuts``, ``fit_hmc``).
    """
    m = get_model(model)
    method = m.methods[0] if method is None else method
    if method not in m.methods:
        raise UnknownNameError(f"posterior model {model!r} has no method {method!r}; available: {list(m.methods)}")
    temperature = check_temperature(temperature)
    check_fit_settings(model, method, kwargs)
    priors, data_settings, settings = split_kwargs(m, method, kwargs)
    if method == "svi" and "guide" not in settings:
        settings["guide"] = m.default_guide
    point = method == "em" or (method == "svi" and settings.get("guide") == "delta")
    if point and not m.point_estimate:
        raise InvalidInputError(f"the {model!r} model has no posterior mode (its density is unbounded at the edge "
                                f"of the simplex; see the docstring of {m.fn.__module__}.{m.fn.__name__}), so "
                                f"{method} cannot fit it as a point estimate: use one of {list(m.methods)}"
                                + (" with guide='normal'" if "svi" in m.methods else ""))
    p = m.priors(priors, point_estimate=point)
    if m.observes == "words":
        if gold is not None:   # before any alignment work
            raise InvalidInputError(f"the word model {model!r} takes no gold: gold transcripts are not supported "
                                    "by the word posteriors yet")
        if hasattr(labels, "word_hypotheses"):     # WeakHypotheses: 1-best words of each weak model
            model_names = labels.model_names if model_names is None else model_names
            item_ids = labels.ids if item_ids is None else item_ids
            labels = labels.word_hypotheses()
        model_names = None if model_names is None else check_name_list(model_names, "model_names")
        item_ids = None if item_ids is None else check_name_list(item_ids, "item_ids")
        table = labels if hasattr(labels, "item_of_slot") else slot_table(labels, model_names, item_ids)
        if not table.candidates:
            raise InvalidInputError(f"no words to fit: the hypotheses of all {table.num_items} items are empty, so no "
                                    "weak model's reliability can be estimated")
        data = m.prepare(table, p, gold=gold)
    else:
        lm = name_axes(as_label_matrix(labels, num_classes=num_classes, label_names=label_names), model_names, item_ids)
        counts = p.get("prior_counts")
        if counts is not None and tuple(counts.shape) != (lm.counts.shape[2], lm.counts.shape[1], lm.counts.shape[2]):
            k, mm = lm.counts.shape[2], lm.counts.shape[1]   # a wrong shape broadcast or failed deep in torch
            raise InvalidInputError(f"prior_counts must have shape [K, M, K] = {[k, mm, k]} (true class, weak model, "
                                    f"given label), got {list(counts.shape)}")
        if m.observes == "probs":
            check_soft_outputs(lm, model)
        silent = [str(lm.model_names[j]) for j in np.flatnonzero(lm.counts.sum((0, 2)) == 0)]
        if silent and m.observes == "votes":
            warnings.warn(f"weak model(s) {silent} cast no vote: their reliability is the prior's alone (under "
                          "em its mode, which for Dawid–Skene's default prior is an error-free confusion), and "
                          "it decides any new item they label in predict_proba; leave them out, or fit with "
                          "method='vb'", RuntimeWarning, stacklevel=2)
        gold_index = gold_labels(gold, lm)
        data = m.prepare(lm, p, gold=gold_index, **data_settings)
    with intra_op_threads(threads_for(data)):
        fit = FITTERS[method](m, data, p, **settings)
    if method in ("em", "vb", "svi") and not fit.converged:   # MCMC reports R-hat through diagnostics()
        budget = "steps" if method == "svi" else "max_iter"
        warnings.warn(f"fit_posterior({model}/{method}) did not converge in {len(fit.history)} iterations; its "
                      f"results are the last iterate's (raise {budget}, or check the priors)", RuntimeWarning,
                      stacklevel=2)
    if data_settings:
        fit.info["data_settings"] = data_settings
    if gold is not None and m.observes != "words":
        fit.info["gold_items"] = int((data.fn_kwargs["gold"] >= 0).sum()) if "gold" in data.fn_kwargs else 0
    with intra_op_threads(threads_for(data)):
        post = m.summarise(data, fit, method, p, temperature)
    # the checks below diagnose the fit, whose reliabilities are fitted at T = 1: a T < 1 sharpens every
    # entry towards 0 (so the rule-out check reads θ at max(T, 1)) and a T > 1 moves labels towards the
    # class prior on purpose (so the collapse check reads the item posteriors at T = 1); neither is a collapse
    theta = np.asarray(post.draws.get("theta", np.empty(0)))
    if point and m.observes == "votes" and theta.ndim == 5 and not data_settings.get("soft_votes"):
        warn_if_labels_rule_out_classes(theta[0, 0], lm.counts, f"{model}/{method}", temperature=max(temperature, 1),
                                        skip=None if gold_index is None else gold_index >= 0,
                                        advice="method='vb'" + (" or beta_off > 1" if "beta_off" in p else ""))
    if m.observes != "words":
        plain = post.item_probs
        if temperature != 1.0:
            with intra_op_threads(threads_for(data)):
                plain = m.item_probs(data, fit, method, p, 1.0)
        warn_if_far_from_vote(plain, lm.counts.sum(1), f"{model}/{method}",
                              advice=VOTE_MODEL_ADVICE if m.observes == "votes" else soft_model_advice(model),
                              skip=None if gold_index is None else gold_index >= 0)   # gold may overrule
    return post


VOTE_MODEL_ADVICE = "a stronger diagonal prior (e.g. beta_diag=4) or another method"
def soft_model_advice(model: str) -> str:
    """What to try instead of a collapsed soft-label fit: the anchored logistic-t (many, small or
    empty classes), unless it is the one that collapsed, or a vote model."""
    other = "" if model == "logistic_t_anchored" else "another soft-label model (logistic_t_anchored) or "
    return other + "a vote model (dawid_skene)"


def warn_if_far_from_vote(item_probs: np.ndarray, votes: np.ndarray, name: str, min_items: int = 20,
                          advice: str = VOTE_MODEL_ADVICE, max_overruled: float = 0.03,
                          skip: np.ndarray | None = None) -> None:
    """Warn when a posterior's labels disagree with the weak models' clear majority (at least
    two votes, no tie) on more than half of those items, take a class the majorities use all
    but out (or label more than twice, and 0.1 more than, a class's majority share of the items), or
    overrule their unanimous vote (at least two votes, all for one class) on more than
    ``max_overruled`` of those items; each test needs ``min_items`` such items. Items in
    ``skip`` (gold items, whose class is observed) are left out.

    Reliabilities are learnt from the votes (or the outputs whose argmax they are), so a fit
    this far from them has usually collapsed — sparse annotators, whose few labels let the
    class prior run to one class under a weak diagonal prior; a soft-label mixture whose
    components follow patterns of the small probabilities instead of the classes, or whose
    small classes' wide scales absorb a large class's atypical items — rather than found that
    most majorities are wrong. (On this project's real weak labels the posteriors of the weak
    models alone overrule 0–1.8% of unanimous votes; the Dirichlet soft-label model, which
    falls below the vote, 3.7–6.6%: ``experiments/diagnose_target_errors.py``.)"""
    if skip is not None:
        item_probs, votes = item_probs[~skip], votes[~skip]
    top, total = votes.max(-1), votes.sum(-1)
    clear = (total >= 2) & ((votes == top[:, None]).sum(-1) == 1)
    unanimous = (total >= 2) & (top == total)
    pick = item_probs.argmax(-1)
    problems = []
    if clear.sum() >= min_items:
        agree = float((pick[clear] == votes[clear].argmax(-1)).mean())
        if agree < 0.5:
            problems.append(f"labels only {agree:.0%} of the {int(clear.sum())} items with a clear majority as "
                            "that majority")
        vote_shares = np.bincount(votes[clear].argmax(-1), minlength=votes.shape[-1]) / clear.sum()
        shares = item_probs.mean(0)
        vanished = (vote_shares >= 0.1) & (shares < vote_shares / 10)   # a class the majorities use, all but gone
        labelled = np.bincount(pick, minlength=votes.shape[-1]) / len(pick)
        swollen = labelled > np.maximum(2 * vote_shares, vote_shares + 0.1)   # a class that took others' items
        if (vanished | swollen).any():
            problems.append(f"gives the classes shares {', '.join(f'{x:.2f}' for x in shares)} (labels "
                            f"{', '.join(f'{x:.2f}' for x in labelled)}) where those majorities give "
                            f"{', '.join(f'{x:.2f}' for x in vote_shares)}")
    if unanimous.sum() >= min_items:
        overruled = float((pick[unanimous] != votes[unanimous].argmax(-1)).mean())
        if overruled > max_overruled:
            problems.append(f"overrules {overruled:.1%} of the {int(unanimous.sum())} items whose votes are "
                            f"unanimous ({int((pick[unanimous] != votes[unanimous].argmax(-1)).sum())}; more than "
                            f"{max_overruled:.0%})")
    if problems:
        warnings.warn(f"{name}: the posterior {'; '.join(problems)}: it has probably collapsed. Try {advice}, "
                      "or check the weak labels", RuntimeWarning, stacklevel=3)


def warn_if_labels_rule_out_classes(theta: np.ndarray, counts: np.ndarray, name: str, floor: float = 1e-10,
                                    temperature: float = 1.0, skip: np.ndarray | None = None,
                                    advice: str = "method='vb'") -> None:
    """Warn when a point fit of hard votes has a confusion entry θ[k, m, l] (``[K, M, K]``: true
    class, weak model, label) so small that a label l weak model m gives rules class k out: every
    item with that label gets p(c = k) ≈ 0 whatever the other models say. "So small" is
    θ^(1/T) < ``floor`` (MAP-EM only approaches 0; ``temperature`` T flattens it). Counted are the
    items where a weak model names the class ruled out. MAP-EM under Dawid–Skene's default
    prior (beta_off = 1) does this wherever the fit gives model m no item of class k labelled l:
    with many classes or few items that is common (ATIS, seed 0: 1,743 of 2,028 entries).
    Soft votes are not checked: there a label's weight is its probability, so a small entry
    discounts rather than rules out."""
    zero = theta < floor ** temperature
    if not zero.any():
        return
    given = counts > 0                                                             # [N, M, K]
    if skip is not None:
        given = given[~skip]
    ruled_out = np.einsum("nml,kml->nk", given.astype(float), zero.astype(float)) > 0
    hit = (ruled_out & given.any(1)).any(1)
    if hit.any():
        warnings.warn(f"{name}: {int(hit.sum())} item(s) ({hit.mean():.1%}) get probability ≈ 0 for a class a weak "
                      f"model names: {int(zero.sum())} of the fit's confusion entries are ≈ 0 (a label the fit never "
                      f"gives that model for that class); {advice} keeps them positive", RuntimeWarning, stacklevel=3)


def compare_posteriors(posteriors, names=None, ic: str = "loo") -> pd.DataFrame:
    """Rank fitted posteriors by expected log predictive density (``arviz.compare``).

    All must observe the same data (vote models with vote models, soft with soft: their
    likelihoods are over different observations) and carry posterior draws (NUTS, VB, or
    SVI with ``guide="normal"``); a point fit has no spread for PSIS-LOO.
    """
    import arviz as az

    posteriors = list(posteriors)
    if len(posteriors) < 2:
        raise InvalidInputError("compare_posteriors needs at least two fitted posteriors")
    strangers = [f"{i}: {type(p).__name__}" for i, p in enumerate(posteriors) if not isinstance(p, Posterior)]
    if strangers:
        raise InvalidInputError(f"compare_posteriors compares classification posteriors (fit_posterior's result "
                                f"for a vote or soft-label model; word posteriors are not supported), got "
                                f"{', '.join(strangers)}")
    if ic not in ("loo", "waic"):
        raise InvalidInputError(f"ic must be 'loo' or 'waic' (arviz.compare's criteria), got {ic!r}")
    names = list(names) if names is not None else [f"{p.model}/{p.method}" for p in posteriors]
    if len(names) != len(posteriors):   # zip would drop the unnamed posteriors without a word
        raise InvalidInputError(f"{len(names)} names for {len(posteriors)} posteriors")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"posterior names must be unique, got {names}; pass names=")
    for name, p in zip(names, posteriors):
        if p.num_draws < 2:
            raise InvalidInputError(f"{name}: LOO needs posterior draws; fit with method='nuts', 'hmc', 'vb' "
                                    "or method='svi', guide='normal'")
    first = posteriors[0]
    if any(p.observed.shape != first.observed.shape or not np.allclose(p.observed, first.observed)
           for p in posteriors):
        raise InvalidInputError("LOO compares models of the same observations: vote models and the soft-label "
                                "models see different data, and all fits must use the same items")
    return az.compare({n: p.to_inference_data() for n, p in zip(names, posteriors)}, ic=ic)


__all__ = ["Posterior", "WordPosterior", "slot_table", "fit_posterior", "compare_posteriors", "choose_model",
           "available_posteriors",
           "as_label_matrix", "LabelMatrix", "MODELS", "METHODS", "get_model"]
