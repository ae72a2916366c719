"""bayes_w2s — Bayesian WeakS-to-Strong generalisation.

Pipeline: ``tasks → weak → posterior → student → metrics → report``.

>>> from bayes_w2s import load_task, WeakEnsemble, fit_posterior, train_student  # doctest: +SKIP

Names are imported on first use (PEP 562), so ``from bayes_w2s import fit_posterior``
does not pay for transformers (~10 s): that matters in notebooks and in NUTS worker
processes.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_task": "tasks", "Task": "tasks", "WeakEnsemble": "weak", "WeakLabels": "weak",
    "fit_posterior": "posterior", "compare_posteriors": "posterior", "choose_model": "posterior",
    "Posterior": "posterior",
    "train_student": "student", "Student": "student", "GenerationStudent": "student", "TrainConfig": "train_config",
    "ExperimentConfig": "config",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
