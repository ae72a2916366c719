"""Posterior models over weak labels.

``fit_posterior`` is the single entry point; the full Pyro layer (one-coin,
hierarchical and soft-label models, SVI and NUTS, ArviZ) plugs in behind it.
"""
from __future__ import annotations

from ..errors import UnknownNameError
from .base import Posterior
from .dawid_skene import fit_dawid_skene_em
from .inputs import LabelMatrix, as_label_matrix

#: (model, method) -> fitting function(LabelMatrix, **kwargs) -> Posterior
_FITTERS = {("dawid_skene", "em"): fit_dawid_skene_em}


def available_posteriors() -> list[tuple[str, str]]:
    return sorted(_FITTERS)


def fit_posterior(labels, model: str = "dawid_skene", method: str = "em", *,
                  num_classes: int | None = None, label_names=None, **kwargs) -> Posterior:
    """Fit a posterior over the true labels given weak labels.

    Args:
        labels: a ``WeakLabels`` (its votes are used by vote-based models), an int array
            ``[N, M]`` of hard votes (``-1`` = abstain), or a long ``DataFrame`` with
            columns ``task, worker, label``.
        model: posterior model, e.g. ``"dawid_skene"``.
        method: inference method, e.g. ``"em"``.
        num_classes / label_names: the class set, when it cannot be read off ``labels``.
        **kwargs: prior and optimiser settings of the chosen fitter.
    """
    models = sorted({m for m, _ in _FITTERS})
    if model not in models:
        raise UnknownNameError(f"unknown posterior model {model!r}; available: {models}")
    if (model, method) not in _FITTERS:
        methods = sorted(me for mo, me in _FITTERS if mo == model)
        raise UnknownNameError(f"posterior model {model!r} has no method {method!r}; available: {methods}")
    lm = as_label_matrix(labels, num_classes=num_classes, label_names=label_names)
    return _FITTERS[(model, method)](lm, **kwargs)


__all__ = ["Posterior", "fit_posterior", "available_posteriors", "as_label_matrix", "LabelMatrix"]
