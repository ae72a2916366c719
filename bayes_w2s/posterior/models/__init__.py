"""The posterior models, one module each; adding a model is one module and one line here.

Every model is a :class:`~bayes_w2s.posterior.engine.PosteriorModel` whose ``fn`` is a
plain Pyro function with named plates and sites, the single source of truth for its
density; its docstring gives the generative story and a citation.
"""
from __future__ import annotations

from ...errors import UnknownNameError
from ..engine import PosteriorModel
from ._classification import VoteCounts, confusion_prior, votes_log_coef, votes_log_lik
from .dawid_skene import DawidSkene, dawid_skene
from .ebcc import EBCC, ebcc
from .hierarchical import Hierarchical, hierarchical_dawid_skene
from .logistic_t import LogisticT, logistic_t
from .logistic_t_anchored import LogisticTAnchored, logistic_t_anchored
from .logistic_t_hetero import LogisticTHetero, logistic_t_hetero
from .logistic_t_pooled import LogisticTPooled, logistic_t_pooled
from .one_coin import OneCoin, one_coin, one_coin_theta
from .soft import SoftLabel, soft_label, soft_log_lik
from .word_reliability import WordReliability, WordReliabilityConf, word_reliability, word_reliability_conf

#: name -> model object
MODELS: dict[str, PosteriorModel] = {m.name: m for m in (
    DawidSkene(),
    OneCoin(),
    Hierarchical(),
    SoftLabel(),
    LogisticT(),
    LogisticTHetero(),
    LogisticTPooled(),
    LogisticTAnchored(),
    EBCC(),
    WordReliability(),
    WordReliabilityConf(),
)}


def get_model(name: str) -> PosteriorModel:
    if name not in MODELS:
        raise UnknownNameError(f"unknown posterior model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name]


__all__ = ["MODELS", "get_model", "PosteriorModel", "VoteCounts", "confusion_prior", "votes_log_lik",
           "votes_log_coef", "dawid_skene", "one_coin", "one_coin_theta", "hierarchical_dawid_skene", "soft_label",
           "soft_log_lik", "logistic_t", "logistic_t_hetero", "logistic_t_pooled", "logistic_t_anchored",
           "ebcc", "word_reliability",
           "word_reliability_conf"]
