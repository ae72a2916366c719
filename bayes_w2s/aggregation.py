"""crowd-kit-style label aggregation: ``from bayes_w2s.aggregation import DawidSkene``.

The estimators live in :mod:`bayes_w2s.posterior.estimators`; this module is the short
import path a crowd-kit user expects.
"""
from .posterior.estimators import (EBCC, DawidSkene, HierarchicalDawidSkene, LogisticT, LogisticTHetero,
                                   LogisticTAnchored, LogisticTPooled, OneCoinDawidSkene, PosteriorEstimator, SoftLabel)

__all__ = ["PosteriorEstimator", "DawidSkene", "OneCoinDawidSkene", "HierarchicalDawidSkene", "EBCC", "SoftLabel",
           "LogisticT", "LogisticTHetero", "LogisticTPooled", "LogisticTAnchored"]
