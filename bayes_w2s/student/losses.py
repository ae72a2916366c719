"""Weak-to-strong training losses.

Every loss is ``loss(logits [B, K], batch, progress) -> scalar`` where ``batch`` holds
``target_probs [B, K]`` (soft or one-hot), optionally ``weight [B]`` and
``weak_probs [B, M, K]``, and ``progress ∈ [0, 1]`` is the fraction of training done
(for warm-up and annealing). Each loss also says how its logits become probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import global_share
from ..errors import InvalidInputError, UnknownNameError
from ..weak.labels import TIE_TOL


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-item ``−Σ_k y_k log softmax(z)_k`` ``[B]``."""
    return -(target_probs * F.log_softmax(logits, -1)).sum(-1)


def xent(logits, batch, progress=0.0):
    """Cross-entropy on hard or soft targets: ``L = (1/B) Σ_i −Σ_k y_ik log p_ik``."""
    return soft_cross_entropy(logits, batch["target_probs"]).mean()


def weighted_xent(logits, batch, progress=0.0):
    """Confidence-weighted cross-entropy: ``L = Σ_i w_i CE_i / Σ_i w_i``.

    ``w_i`` is typically the posterior confidence of item ``i``; normalising by ``Σ w``
    keeps the loss scale (and so the learning rate) comparable to plain cross-entropy.
    Under DDP ``Σ w`` is the whole batch's, not this rank's slice's
    (:func:`~bayes_w2s.distributed.global_share`).
    """
    if "weight" not in batch:
        raise InvalidInputError("weighted_xent needs per-item weights (e.g. posterior confidence)")
    w = batch["weight"]
    return (w * soft_cross_entropy(logits, batch["target_probs"])).sum() / global_share(w.sum()).clamp_min(1e-8)


@dataclass
class AuxConfidence:
    """Auxiliary confidence loss (Burns et al., 2023, eq. 1)::

        L = (1 − α_t) CE(f, y_weak) + α_t CE(f, f̂_t),   α_t = α_max · min(1, progress / warmup)

    where ``f̂_t`` is the student's own prediction hardened to one-hot (argmax, no
    gradient). It lets a confident strong student overrule the weak labels.
    """

    alpha_max: float = 0.75
    warmup: float = 0.2

    def __post_init__(self):
        _check_number("aux_conf", "alpha_max", self.alpha_max, 0.0, 1.0)
        _check_number("aux_conf", "warmup", self.warmup, 0.0, float("inf"))

    def __call__(self, logits, batch, progress=0.0):
        alpha = self.alpha_max * min(1.0, progress / self.warmup) if self.warmup > 0 else self.alpha_max
        hard_self = F.one_hot(logits.detach().argmax(-1), logits.shape[-1]).to(logits.dtype)
        return ((1 - alpha) * soft_cross_entropy(logits, batch["target_probs"])
                + alpha * soft_cross_entropy(logits, hard_self)).mean()


@dataclass
class MultiWeak:
    """Naive multi-weak loss: one cross-entropy term per weak model::

        L = (1/B) Σ_i Σ_m λ_m CE(f(x_i), y_im),   Σ_m λ_m = 1 (uniform by default)

    ``lambdas`` are relative weights, normalised to sum to 1 ([1, 1] is [0.5, 0.5]: unnormalised
    they scaled the loss, and so the step size). ``hard``: each weak model's argmax as its label,
    a tie split evenly among the tied classes (a tied output is no vote for the first of them).
    """

    lambdas: list[float] | None = None
    hard: bool = True

    def __post_init__(self):
        if self.lambdas is not None:
            if isinstance(self.lambdas, (str, bytes)) or not hasattr(self.lambdas, "__len__"):
                raise InvalidInputError(f"loss multi_weak: lambdas must be a list of weights, got {self.lambdas!r}")
            self.lambdas = [v.item() if isinstance(v, np.generic) else v for v in self.lambdas]   # numpy scalars
            for lam in self.lambdas:
                _check_number("multi_weak", "lambdas", lam, 0.0, float("inf"))
            if sum(float(v) for v in self.lambdas) <= 0:
                raise InvalidInputError(f"loss multi_weak: lambdas must not all be zero, got {list(self.lambdas)}")
            total = math.fsum(float(v) for v in self.lambdas)   # in float64: [3e38, 3e38] overflowed float32
            self._weights = [float(v) / total for v in self.lambdas]
        if not isinstance(self.hard, bool):
            raise InvalidInputError(f"loss multi_weak: hard must be true or false, got {self.hard!r}")

    def check_num_models(self, num_models: int) -> None:
        """One λ per weak model (checked before training as well as in each batch)."""
        if self.lambdas is not None and len(self.lambdas) != num_models:
            raise InvalidInputError(f"{len(self.lambdas)} multi-weak weights λ for {num_models} weak models")

    def __call__(self, logits, batch, progress=0.0):
        if "weak_probs" not in batch:
            raise InvalidInputError("the multi_weak loss needs every weak model's probabilities (weak_probs)")
        weak = batch["weak_probs"]                                   # [B, M, K]
        if self.hard:
            top = (weak >= weak.amax(-1, keepdim=True) - TIE_TOL).to(logits.dtype)   # ties as in votes()
            weak = top / top.sum(-1, keepdim=True)
        m = weak.shape[1]
        self.check_num_models(m)
        lam = torch.full((m,), 1.0 / m) if self.lambdas is None else torch.as_tensor(self._weights, dtype=logits.dtype)
        logp = F.log_softmax(logits, -1).unsqueeze(1)                 # [B, 1, K]
        per_model = -(weak * logp).sum(-1)                            # [B, M]
        return (per_model * lam.to(per_model)).sum(-1).mean()


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(α) ‖ Dir(1))`` per row ``[B]``::

        log Γ(Σα) − log Γ(K) − Σ_k log Γ(α_k) + Σ_k (α_k − 1)(ψ(α_k) − ψ(Σα))
    """
    k = alpha.shape[-1]
    s = alpha.sum(-1)
    return (torch.lgamma(s) - torch.lgamma(torch.tensor(float(k), dtype=alpha.dtype))
            - torch.lgamma(alpha).sum(-1)
            + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s).unsqueeze(-1))).sum(-1))


@dataclass
class Evidential:
    """Evidential deep learning loss (Sensoy et al., 2018), as used by Cui et al. (2025)::

        e = exp(z),  α = e + 1,  S = Σ_k α_k
        L = (1/B) Σ_i [ Σ_k y_ik (log S_i − log α_ik) + λ_t KL(Dir(α̃_i) ‖ Dir(1)) ]
        α̃ = (α − 1)(1 − y) + 1,   λ_t = λ_max · min(1, progress / anneal)

    Predicted probabilities are the Dirichlet mean ``α / S``. Logits are clamped at
    ``max_logit`` before ``exp`` so evidence cannot overflow.
    """

    kl_max: float = 1.0
    anneal: float = 0.5
    max_logit: float = 20.0

    def __post_init__(self):
        _check_number("edl", "kl_max", self.kl_max, 0.0, float("inf"))
        _check_number("edl", "anneal", self.anneal, 0.0, float("inf"))
        _check_number("edl", "max_logit", self.max_logit, 0.0, 80.0, low_open=True)   # exp(80) is near float32's max

    def evidence_alpha(self, logits):
        return logits.clamp(max=self.max_logit).exp() + 1.0

    def per_row(self, logits, y, progress=0.0):
        """``[B]`` the loss of each row (the token-level generation loss weights and masks them)."""
        alpha = self.evidence_alpha(logits)
        s = alpha.sum(-1, keepdim=True)
        fit = (y * (s.log() - alpha.log())).sum(-1)
        lam = self.kl_max * min(1.0, progress / self.anneal) if self.anneal > 0 else self.kl_max
        alpha_tilde = (alpha - 1) * (1 - y) + 1
        return fit + lam * dirichlet_kl_to_uniform(alpha_tilde)

    def __call__(self, logits, batch, progress=0.0):
        return self.per_row(logits, batch["target_probs"], progress).mean()

    def predict_proba(self, logits):
        alpha = self.evidence_alpha(logits)
        return alpha / alpha.sum(-1, keepdim=True)


def softmax_proba(logits):
    return F.softmax(logits, -1)


@dataclass
class LossSpec:
    fn: Callable
    needs_weights: bool = False
    needs_weak_probs: bool = False
    predict_proba: Callable = field(default=softmax_proba)


def _check_number(loss: str, name: str, value, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise InvalidInputError(f"loss {loss}: {name} must be a number in {bounds}, got {value!r}")


#: the settings each loss takes (``loss_kwargs``); xent and weighted_xent take none
LOSS_SETTINGS = {"xent": (), "weighted_xent": (), "aux_conf": ("alpha_max", "warmup"),
                 "multi_weak": ("lambdas", "hard"), "edl": ("kl_max", "anneal", "max_logit")}


def get_loss(name: str, **kwargs) -> LossSpec:
    """A loss by name: xent, weighted_xent, aux_conf, multi_weak, edl.

    ``kwargs`` are the loss's settings (:data:`LOSS_SETTINGS`); a setting the loss does
    not take is an error, not silently ignored.
    """
    if name in LOSS_SETTINGS:
        unknown = sorted(set(kwargs) - set(LOSS_SETTINGS[name]))
        if unknown:
            takes = f"it takes {list(LOSS_SETTINGS[name])}" if LOSS_SETTINGS[name] else "it takes none"
            raise InvalidInputError(f"loss {name!r} has no setting(s) {unknown} (loss_kwargs); {takes}")
    if name == "xent":
        return LossSpec(xent)
    if name == "weighted_xent":
        return LossSpec(weighted_xent, needs_weights=True)
    if name == "aux_conf":
        return LossSpec(AuxConfidence(**kwargs))
    if name == "multi_weak":
        return LossSpec(MultiWeak(**kwargs), needs_weak_probs=True)
    if name == "edl":
        edl = Evidential(**kwargs)
        return LossSpec(edl, predict_proba=edl.predict_proba)
    raise UnknownNameError(f"unknown loss {name!r}; available: {LOSSES}")


LOSSES = ["xent", "weighted_xent", "aux_conf", "multi_weak", "edl"]
