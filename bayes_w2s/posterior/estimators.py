"""crowd-kit-style estimators over the same core as :func:`~bayes_w2s.posterior.fit_posterior`.

One class per posterior model, with scikit-learn verbs and fitted attributes ending in
``_``, so a crowd-kit user can swap one in::

    >>> import pandas as pd
    >>> from bayes_w2s.aggregation import DawidSkene
    >>> df = pd.DataFrame({"task": ["t1", "t1", "t2", "t2"], "worker": ["a", "b", "a", "b"],
    ...                    "label": ["pos", "pos", "neg", "pos"]})
    >>> DawidSkene(method="em").fit_predict_proba(df).round(2).columns.tolist()
    ['neg', 'pos']

``fit`` takes what ``fit_posterior`` takes: a long DataFrame (``task, worker, label``),
an ``[N, M]`` vote array or ``WeakLabels``. Results are indexed by task (sorted, as in
crowd-kit).
"""
from __future__ import annotations

from typing import ClassVar

import pandas as pd

from . import fit_posterior
from .base import Posterior


class PosteriorEstimator:
    """Base class: ``fit`` a posterior model; read the results off attributes.

    Args:
        method: ``em`` | ``vb`` | ``svi`` | ``nuts`` | ``hmc`` (default: the model's first).
        temperature: the likelihood's temperature (1 = the plain model).
        **settings: the model's priors and the method's settings (as ``fit_posterior``).

    Attributes (after ``fit``):
        posterior_: the fitted :class:`~bayes_w2s.posterior.Posterior` (ArviZ export, diagnostics).
        probas_: ``DataFrame`` task × label, each task's posterior over its true label.
        labels_: ``Series`` task → its most probable label.
        priors_: ``Series`` label → class prior π.
        confusions_: ``[M, K, K]`` each worker's confusion (row: true label, column: given label).
        errors_: the same in crowd-kit's ``errors_`` layout: a ``DataFrame`` indexed by
            (worker, given label), columns true labels; each column sums to 1.
        loss_history_: the objective per iteration (EM log joint, VB ELBO, SVI loss).
    """

    model: ClassVar[str]

    def __init__(self, method: str | None = None, *, temperature: float = 1.0, **settings):
        self.method, self.temperature, self.settings = method, temperature, settings

    def fit(self, data, gold=None) -> "PosteriorEstimator":
        """Fit on ``data``; ``gold`` = ``{task: label}`` known true labels (observed)."""
        post = fit_posterior(data, model=self.model, method=self.method, gold=gold, temperature=self.temperature,
                             **self.settings)
        self._set_attributes(post)
        return self

    def fit_predict_proba(self, data, gold=None) -> pd.DataFrame:
        return self.fit(data, gold).probas_

    def fit_predict(self, data, gold=None) -> pd.Series:
        return self.fit(data, gold).labels_

    def predict_proba(self, data) -> pd.DataFrame:
        """New tasks' posteriors under the fitted worker reliabilities, without refitting
        (the workers must be the fitted ones)."""
        from .inputs import as_label_matrix

        post = self._fitted()
        lm = as_label_matrix(data, label_names=post.label_names, min_models=1,   # a new batch may be one worker's,
                             allow_unlabelled=True)                         # or have tasks nobody labelled
        probs = post.predict_proba(lm)          # which puts the workers in the fitted order
        ids = lm.item_ids if lm.item_ids is not None else range(len(probs))
        index = pd.Index(ids, name="task", tupleize_cols=False)      # tuple task ids stay one level
        return pd.DataFrame(probs, index=index, columns=list(post.label_names))

    def predict(self, data) -> pd.Series:
        proba = self.predict_proba(data)
        return proba.idxmax(axis=1).rename("agg_label")

    # -- attributes ------------------------------------------------------------------------
    def _fitted(self) -> Posterior:
        if not hasattr(self, "posterior_"):
            from ..errors import InvalidInputError
            raise InvalidInputError(f"{type(self).__name__} is not fitted yet: call fit() first")
        return self.posterior_

    def _set_attributes(self, post: Posterior) -> None:
        self.posterior_ = post
        self.probas_ = post.to_frame()
        self.labels_ = self.probas_.idxmax(axis=1).rename("agg_label")
        labels = list(post.label_names)
        self.priors_ = pd.Series(post.class_prior, index=pd.Index(labels, name="label"), name="prior")
        self.confusions_ = post.confusion
        index = pd.MultiIndex.from_product([list(post.model_names), labels], names=["worker", "label"])
        self.errors_ = pd.DataFrame(post.confusion.transpose(0, 2, 1).reshape(-1, len(labels)), index=index,
                                    columns=labels)
        self.loss_history_ = list(post.history)

    # scikit-learn's estimator protocol (clone, grid search): the constructor's arguments
    def get_params(self, deep: bool = True) -> dict:
        return {"method": self.method, "temperature": self.temperature, **self.settings}

    def set_params(self, **params) -> "PosteriorEstimator":
        for key, value in params.items():
            if key in ("method", "temperature"):
                setattr(self, key, value)
            else:
                self.settings[key] = value
        return self

    def __repr__(self) -> str:
        args = [f"method={self.method!r}"] if self.method else []
        if self.temperature != 1.0:
            args.append(f"temperature={self.temperature!r}")
        args += [f"{k}={v!r}" for k, v in self.settings.items()]
        return f"{type(self).__name__}({', '.join(args)})"


class DawidSkene(PosteriorEstimator):
    """Dawid–Skene (:func:`bayes_w2s.posterior.models.dawid_skene`); ``method="em"`` with
    ``beta_diag=1, beta_off=1`` is crowd-kit's maximum-likelihood ``DawidSkene``."""

    model = "dawid_skene"


class OneCoinDawidSkene(PosteriorEstimator):
    """One-coin Dawid–Skene (:func:`bayes_w2s.posterior.models.one_coin`)."""

    model = "one_coin"


class HierarchicalDawidSkene(PosteriorEstimator):
    """Hierarchical Dawid–Skene (:func:`bayes_w2s.posterior.models.hierarchical_dawid_skene`)."""

    model = "hierarchical"


class EBCC(PosteriorEstimator):
    """EBCC, worker correlation through latent subtypes (:func:`bayes_w2s.posterior.models.ebcc`)."""

    model = "ebcc"


class SoftLabel(PosteriorEstimator):
    """Dirichlet soft-label model; ``fit`` takes ``WeakLabels`` (probabilities)."""

    model = "soft"


class LogisticT(PosteriorEstimator):
    """Logistic-t soft-label model; ``fit`` takes ``WeakLabels`` (probabilities)."""

    model = "logistic_t"


class LogisticTHetero(PosteriorEstimator):
    """Logistic-t with a scale matrix per class; ``fit`` takes ``WeakLabels`` (probabilities)."""

    model = "logistic_t_hetero"


class LogisticTPooled(PosteriorEstimator):
    """Logistic-t with per-class scale matrices pooled towards a shared one; ``fit`` takes ``WeakLabels``."""

    model = "logistic_t_pooled"


class LogisticTAnchored(PosteriorEstimator):
    """Pooled logistic-t with class means anchored to "the weak models name k"; ``fit`` takes ``WeakLabels``."""

    model = "logistic_t_anchored"


__all__ = ["PosteriorEstimator", "DawidSkene", "OneCoinDawidSkene", "HierarchicalDawidSkene", "EBCC", "SoftLabel",
           "LogisticT", "LogisticTHetero",
           "LogisticTPooled", "LogisticTAnchored"]
