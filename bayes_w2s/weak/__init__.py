"""Weak supervisors and their labels.

``WeakEnsemble`` (which needs transformers) is imported on first use, so that
``weak.labels`` stays light for the posterior layer.
"""
from .labels import WeakLabels, check_probs

__all__ = ["WeakEnsemble", "WeakLabels", "check_probs"]


def __getattr__(name):
    if name == "WeakEnsemble":
        from .ensemble import WeakEnsemble
        return WeakEnsemble
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
