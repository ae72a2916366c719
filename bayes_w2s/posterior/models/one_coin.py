"""One-coin Dawid–Skene: one accuracy per weak model, errors spread uniformly."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ..engine import scaled, CONCENTRATION, DTYPE, SIMPLEX, UNIT, Site
from ._classification import ClassModel, for_vindex, observe_votes, pi_counts, vote_start, votes_log_lik


def one_coin_theta(accuracy: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[..., K, M, K]`` confusion with the accuracies on the diagonal, the rest uniform.

    ``accuracy`` is ``[..., M]``.
    """
    k = num_classes
    eye = torch.eye(k, dtype=accuracy.dtype).unsqueeze(-2)                   # [K, 1, K]
    acc = accuracy.unsqueeze(-2).unsqueeze(-1)                               # [..., 1, M, 1]
    return eye * acc + (1 - eye) * (1 - acc) / (k - 1)


def one_coin_log_theta(log_acc: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[..., K, M, K]`` log θ from ``log_acc`` ``[..., M, 2]`` = (log a, log(1 − a))."""
    k = num_classes
    eye = torch.eye(k, dtype=log_acc.dtype).unsqueeze(-2).bool()             # [K, 1, K]
    right = log_acc[..., 0].unsqueeze(-2).unsqueeze(-1)                      # [..., 1, M, 1]
    wrong = (log_acc[..., 1] - math.log(k - 1)).unsqueeze(-2).unsqueeze(-1)
    return torch.where(eye, right, wrong)


def one_coin(counts: torch.Tensor, alpha_prior: float = 1.0, accuracy_a: float = 2.0, accuracy_b: float = 1.0,
             subsample_size: int | None = None, gold: torch.Tensor | None = None):
    r"""One-coin Dawid–Skene: one accuracy per weak model, errors spread uniformly.

    .. math::
        \pi \sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K),\quad
        a_m \sim \mathrm{Beta}(a_0, b_0),\quad
        \theta_{k,m,l} = a_m [l = k] + \tfrac{1 - a_m}{K - 1} [l \ne k],\quad
        c_n \sim \mathrm{Cat}(\pi),\quad y_{n,m} \sim \mathrm{Mult}(\theta_{c_n, m})

    K·(K−1) fewer parameters per model than Dawid–Skene, so better with few items per
    model (Ghosh, Kale & McAfee, 2011; crowd-kit's ``OneCoinDawidSkene``). The Beta(2, 1)
    default prefers accuracies above chance.
    """
    n, m, k = counts.shape
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=counts.dtype)))
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models:
        accuracy = pyro.sample("accuracy", dist.Beta(torch.tensor(float(accuracy_a), dtype=counts.dtype),
                                                      torch.tensor(float(accuracy_b), dtype=counts.dtype)))
    acc = accuracy.reshape(*accuracy.shape[:-2], m) if accuracy.dim() > 1 else accuracy   # plate layout [..., 1, M]
    log_acc = torch.stack([acc.log(), torch.log1p(-acc)], -1)                   # [..., M, 2]
    log_theta = one_coin_log_theta(log_acc, k)                                  # [..., K, M, K]
    return observe_votes(counts, lambda c: Vindex(for_vindex(log_theta))[..., c, torch.arange(m), :], pi,
                         weak_models, subsample_size, gold)


class OneCoin(ClassModel):
    name = "one_coin"
    fn = staticmethod(one_coin)
    sites = {"pi": Site(SIMPLEX, ("class",)), "accuracy": Site(UNIT, ("weak_model",))}
    methods = ("em", "vb", "svi", "nuts", "hmc")
    prior_specs = {"alpha_prior": CONCENTRATION, "accuracy_a": CONCENTRATION, "accuracy_b": CONCENTRATION}

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        log_theta = one_coin_log_theta(log_g["accuracy"], log_g["pi"].shape[-1])
        return log_g["pi"].unsqueeze(-2) + scaled(lik_weight, votes_log_lik(obs["counts"], log_theta))

    def expected_counts(self, obs, wq):
        counts = obs["counts"]
        right = torch.einsum("rk,rmk->m", wq, counts)
        total = torch.einsum("rk,rm->m", wq, counts.sum(-1))
        return {"pi": pi_counts(wq), "accuracy": torch.stack([right, total - right], -1)}

    def prior_concentration(self, p, shape_of):
        k, m = shape_of["pi"][0], shape_of["accuracy"][0]
        return {"pi": torch.full((k,), float(p["alpha_prior"]), dtype=DTYPE),
                "accuracy": torch.tensor([float(p["accuracy_a"]), float(p["accuracy_b"])], dtype=DTYPE).expand(m, 2)}

    def from_concentration_modes(self, modes):
        return {"pi": modes["pi"], "accuracy": modes["accuracy"][..., 0].clamp(1e-12, 1 - 1e-12)}

    def complete(self, g):
        return dict(g, theta=one_coin_theta(g["accuracy"], g["pi"].shape[-1]))

    def init(self, data, p, seed=0):
        return self.complete(self.m_step(data, vote_start(data), None, p))
