"""Weak supervisors and their outputs.

Classification: ``WeakEnsemble`` → ``WeakLabels``. Generation: ``GenerationEnsemble``
(causal LMs and taggers, :mod:`.generators`) → ``WeakHypotheses``. The ensembles need
transformers and are imported on first use, so that ``weak.labels`` stays light for the
posterior layer.
"""
from .hypotheses import Hypothesis, WeakHypotheses
from .labels import WeakLabels, check_probs

__all__ = ["WeakEnsemble", "WeakLabels", "check_probs", "GenerationEnsemble", "GeneratorConfig",
           "WeakHypotheses", "Hypothesis"]


def __getattr__(name):
    if name == "WeakEnsemble":
        from .ensemble import WeakEnsemble
        return WeakEnsemble
    if name == "GenerationEnsemble":
        from .generation_ensemble import GenerationEnsemble
        return GenerationEnsemble
    if name == "GeneratorConfig":
        from .generators import GeneratorConfig
        return GeneratorConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
