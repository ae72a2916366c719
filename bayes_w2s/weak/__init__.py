"""Weak supervisors and their labels."""
from .ensemble import WeakEnsemble
from .labels import WeakLabels, check_probs

__all__ = ["WeakEnsemble", "WeakLabels", "check_probs"]
