"""Posterior models over weak labels: Pyro models, EM / SVI / NUTS, ArviZ diagnostics.

``fit_posterior`` is the single entry point, for class labels (:mod:`.models`) and for
word hypotheses of generation tasks (:mod:`.word_models`); ``compare_posteriors`` ranks
fits by LOO.
"""
from __future__ import annotations

import pandas as pd

from ..errors import InvalidInputError, UnknownNameError
from .base import Posterior
from .inference import fit_em, fit_nuts, fit_svi
from .inputs import LabelMatrix, as_label_matrix, check_fit_settings
from .models import MODELS
from .word_models import WORD_MODELS
from .words import WORD_FITTERS, WordPosterior, slot_table

#: model -> inference methods it supports (hierarchical has no closed-form M-step)
METHODS = {"dawid_skene": ("em", "svi", "nuts"), "one_coin": ("em", "svi", "nuts"),
           "hierarchical": ("svi", "nuts"), "soft": ("em", "svi", "nuts"),
           "word_reliability": ("em", "svi", "nuts"), "word_reliability_conf": ("em", "svi", "nuts")}
_FITTERS = {"em": fit_em, "svi": fit_svi, "nuts": fit_nuts}


def available_posteriors() -> list[tuple[str, str]]:
    return sorted((m, me) for m, methods in METHODS.items() for me in methods)


def fit_posterior(labels, model: str = "dawid_skene", method: str = "em", *,
                  num_classes: int | None = None, label_names=None, model_names=None, item_ids=None,
                  **kwargs) -> Posterior | WordPosterior:
    """Fit a posterior over the true labels (or words) given weak labels (or hypotheses).

    Args:
        labels: a ``WeakLabels`` (soft ``[N, M, K]``; vote models use its argmax votes, the
            ``soft`` model its probabilities), an int array ``[N, M]`` of hard votes
            (``-1`` = abstain), or a long ``DataFrame`` with columns ``task, worker, label``
            (a worker may label a task more than once). For the word models: a
            ``WeakHypotheses`` or ``hypotheses[n][m]``, weak model m's output for item n
            (a string, a word list or ``WordScores`` with word log-probs).
        model: ``dawid_skene`` | ``one_coin`` | ``hierarchical`` | ``soft``
            (:mod:`bayes_w2s.posterior.models`); ``word_reliability`` |
            ``word_reliability_conf`` (:mod:`bayes_w2s.posterior.word_models`), which
            return a :class:`WordPosterior`.
        method: ``em`` (closed-form MAP-EM) | ``svi`` (``TraceEnum_ELBO``) | ``nuts``.
        num_classes / label_names: the class set, when it cannot be read off ``labels``.
        model_names / item_ids: axis labels of word hypotheses given as plain lists.
        **kwargs: priors of the model (e.g. ``beta_diag``) and settings of the method
            (:func:`~.inference.fit_em`, :func:`~.inference.fit_svi`, :func:`~.inference.fit_nuts`).
    """
    if model not in METHODS:
        raise UnknownNameError(f"unknown posterior model {model!r}; available: {sorted(METHODS)}")
    if method not in METHODS[model]:
        raise UnknownNameError(f"posterior model {model!r} has no method {method!r}; available: {list(METHODS[model])}")
    check_fit_settings(model, method, kwargs)
    if model in WORD_MODELS:
        if hasattr(labels, "word_hypotheses"):     # WeakHypotheses: 1-best words of each weak model
            model_names = model_names or labels.model_names
            item_ids = item_ids or labels.ids
            labels = labels.word_hypotheses()
        table = labels if hasattr(labels, "item_of_slot") else slot_table(labels, model_names, item_ids)
        return WORD_FITTERS[method](table, model, **kwargs)
    lm = as_label_matrix(labels, num_classes=num_classes, label_names=label_names)
    return _FITTERS[method](lm, model, **kwargs)


def compare_posteriors(posteriors, names=None, ic: str = "loo") -> pd.DataFrame:
    """Rank fitted posteriors by expected log predictive density (``arviz.compare``).

    All must observe the same data (vote models with vote models, soft with soft: their
    likelihoods are over different observations) and carry posterior draws (NUTS, or SVI
    with ``guide="normal"``); a point fit has no spread for PSIS-LOO.
    """
    import arviz as az
    import numpy as np

    posteriors = list(posteriors)
    if len(posteriors) < 2:
        raise InvalidInputError("compare_posteriors needs at least two fitted posteriors")
    names = list(names) if names is not None else [f"{p.model}/{p.method}" for p in posteriors]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"posterior names must be unique, got {names}; pass names=")
    for name, p in zip(names, posteriors):
        if p.num_draws < 2:
            raise InvalidInputError(f"{name}: LOO needs posterior draws; fit with method='nuts' "
                                    "or method='svi', guide='normal'")
    kinds = {MODELS[p.model][1] for p in posteriors}
    if len(kinds) > 1 or any(p.observed.shape != posteriors[0].observed.shape
                             or not np.allclose(p.observed, posteriors[0].observed) for p in posteriors):
        raise InvalidInputError("LOO compares models of the same observations: vote models and the soft-label "
                                "model see different data, and all fits must use the same items")
    return az.compare({n: p.to_inference_data() for n, p in zip(names, posteriors)}, ic=ic)


__all__ = ["Posterior", "WordPosterior", "slot_table", "fit_posterior", "compare_posteriors", "available_posteriors", "as_label_matrix",
           "LabelMatrix", "MODELS", "METHODS"]
