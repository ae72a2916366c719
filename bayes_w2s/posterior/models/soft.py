"""Soft-label model with a Dirichlet likelihood on each weak model's probability vector."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ...errors import InvalidInputError
from ..engine import scaled, CONCENTRATION, DTYPE, POSITIVE, POSITIVE_SUPPORT, SIMPLEX, Site, dirichlet_mode
from ._classification import (ClassModel, confusion_prior, for_vindex, masked, pi_counts, pi_log_prior,
                              present_models, true_class)


def soft_label(probs: torch.Tensor, alpha_prior: float = 1.0, diag_shape: float = 4.0, off_shape: float = 1.0,
               rate: float = 1.0, subsample_size: int | None = None, gold: torch.Tensor | None = None,
               informative: torch.Tensor | None = None):
    r"""Soft-label model: each weak model's whole probability vector is the observation.

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K) \\
        \lambda_{k,m,l} &\sim \mathrm{Gamma}(s_\text{diag} [l=k] + s_\text{off} [l\ne k],\ r) \\
        c_n &\sim \mathrm{Cat}(\pi) \\
        p_{n,m} &\sim \mathrm{Dir}(\lambda_{c_n, m}) \quad\text{(weak model m's predicted distribution)}

    A proper density on the simplex, so how confident a weak model is counts, and the
    reliability λ_{k,m} is learnt per true class. Its log-density is linear in log p_nml,
    so the item posterior weighs *every* class's log-probability, the tiny ones included.
    Measured on AG News (``experiments/diagnose_soft_label.py``): the unsupervised optimum
    explains the probability vectors better than globals fitted on the true classes, yet
    classifies worse than the vote, and clipping harder makes it worse: the likelihood is
    misspecified (it rewards classes organised around the pattern of the small
    probabilities), not badly optimised,
    which is why :mod:`.logistic_t` exists. Probabilities are clipped to [ε, 1] and
    renormalised (``eps``) because a Dirichlet density is unbounded at exact zeros.
    Related: the Dirichlet calibration map of Kull et al. (2019) and the soft-label
    aggregation of Cui et al. (2025, §3). A weak model whose output on an item is uniform is
    missing there (``informative[n, m]``, :func:`present_models`): the likelihood factorises
    over models, so its term is simply left out; an item with no such term gets π.
    """
    n, m, k = probs.shape
    dtype = probs.dtype
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=dtype)))
    shape = confusion_prior(k, diag_shape, off_shape, dtype).unsqueeze(1).expand(k, m, k)
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models, pyro.plate("classes", k, dim=-2):
        lam = pyro.sample("concentration", dist.Gamma(shape, torch.full_like(shape, float(rate))).to_event(1))
    with pyro.plate("items", n, dim=-2, subsample_size=subsample_size) as idx:
        c = true_class(pi, gold, idx)
        with weak_models, pyro.poutine.mask(mask=True if informative is None else informative[idx]):
            pyro.sample("y", dist.Dirichlet(Vindex(for_vindex(lam))[..., c, torch.arange(m), :]), obs=probs[idx])
    return c


def soft_log_lik(probs: torch.Tensor, concentration: torch.Tensor,
                 present: torch.Tensor | None = None) -> torch.Tensor:
    """``[..., R, K]`` Σ_m present_rm log Dir(p_rm | λ_k,m), ``concentration`` ``[..., K, M, K]``,
    ``present`` ``[R, M]`` (1 = observed, 0 = missing; default all observed)."""
    lam = concentration
    log_p = probs.log()                                                      # [R, M, L]
    norm = torch.lgamma(lam.sum(-1)) - torch.lgamma(lam).sum(-1)             # [..., K, M]
    r, m, k = probs.shape
    flat = (lam - 1).reshape(*lam.shape[:-3], k, m * k).transpose(-1, -2)    # [..., M·L, K]
    if present is None:
        return log_p.reshape(r, m * k) @ flat + norm.sum(-1).unsqueeze(-2)
    return (log_p * present.unsqueeze(-1)).reshape(r, m * k) @ flat + present @ norm.transpose(-1, -2)


def informative_items(lm) -> torch.Tensor:
    """``[N]`` 1.0 where some weak model's output is not uniform, 0.0 where all are: the
    logistic-t models' missing items.

    A uniform output says nothing about the class, but a soft-label likelihood reads it as
    a point like any other (for logistic-t, log-odds 0), so an item whose outputs are all
    uniform was put near-certainly in whichever class centres nearest it, and pulled that
    class's fit and so the other items' posteriors (``tests/posterior/test_models.py`` now
    holds them to a fit without the uniform items). Such an item is missing, not evidence:
    its observation is masked and its posterior is the class prior. Logistic-t still reads
    an item on which only some outputs are uniform whole (marginalising one model out of its
    joint t needs a sub-covariance per pattern of missing models); the Dirichlet model, whose
    terms factorise, drops each uniform output alone (:func:`present_models`). The true class
    of a masked item is still c ~ Cat(π) (observed on a gold item), so it still informs π;
    the M-steps leave it out of the likelihood's statistics (:func:`evidence_weights`)."""
    return (present_models(lm) > 0).any(-1).to(DTYPE)


def evidence_mask(informative: torch.Tensor | None, idx: torch.Tensor, items_dim: int):
    """``poutine.mask``'s mask for the observation site: the subsampled items' ``informative``
    flags at the items plate's dim (True when every item is)."""
    if informative is None:
        return True
    return informative[idx].reshape(-1, *([1] * (-1 - items_dim)))


def evidence_weights(obs: dict, wq: torch.Tensor) -> torch.Tensor:
    """``[R, K]`` the M-step's item weights for the likelihood's statistics: 0 on masked rows."""
    return wq if "informative" not in obs else wq * obs["informative"].unsqueeze(-1)


def with_evidence(obs: dict, log_lik: torch.Tensor) -> torch.Tensor:
    """``[..., R, K]`` item log-likelihoods, 0 on rows without evidence (their posterior is π)."""
    return log_lik if "informative" not in obs else log_lik * obs["informative"].unsqueeze(-1)


def soft_observation(lm, eps: float) -> torch.Tensor:
    """Each weak model's probabilities, clipped to [ε, 1] and renormalised."""
    if lm.soft is None:
        raise InvalidInputError("this posterior observes each weak model's probabilities: pass a WeakLabels, "
                                "not hard votes")
    if not 0 < eps < 1.0 / lm.soft.shape[-1]:
        raise InvalidInputError(f"eps must lie in (0, 1/K), got {eps}")
    p = torch.as_tensor(lm.soft, dtype=DTYPE).clamp_min(eps)
    return p / p.sum(-1, keepdim=True)


class SoftLabel(ClassModel):
    name = "soft"
    fn = staticmethod(soft_label)
    observes = "probs"
    compress = False
    data_args = ("probs",)
    data_settings = {"eps": 1e-4}
    sites = {"pi": Site(SIMPLEX, ("class",)),
             "concentration": Site(POSITIVE_SUPPORT, ("true_class", "weak_model", "weak_label"))}
    methods = ("em", "svi", "nuts", "hmc")
    prior_specs = {"alpha_prior": CONCENTRATION, "diag_shape": POSITIVE, "off_shape": POSITIVE, "rate": POSITIVE}

    def observation(self, lm, eps: float = 1e-4):
        # per (item, model): the Dirichlet terms factorise, so one missing model drops out alone.
        # Without a missing output the unmasked arithmetic runs (committed fits stay bit for bit)
        probs = soft_observation(lm, eps)          # first: it refuses hard votes with a clear error
        present = present_models(lm)
        return {"probs": probs, **({} if present.all() else {"informative": present})}

    def log_prior(self, g, log_g, p):
        k = log_g["pi"].shape[-1]
        shape = confusion_prior(k, p["diag_shape"], p["off_shape"]).unsqueeze(1)
        rate = float(p["rate"])
        lam, log_lam = g["concentration"], log_g["concentration"]
        gamma = (shape * math.log(rate) - torch.lgamma(shape) + (shape - 1) * log_lam - rate * lam)
        return pi_log_prior(log_g["pi"], p["alpha_prior"]) + gamma.expand_as(lam).sum()

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        log_lik = soft_log_lik(obs["probs"], g["concentration"], obs.get("informative"))
        return log_g["pi"].unsqueeze(-2) + scaled(lik_weight, log_lik)

    def confusion(self, g, data, item_probs):
        lam = g["concentration"]
        return lam / lam.sum(-1, keepdim=True)

    def observed(self, data):
        return data.fn_args[0].numpy()

    def init(self, data, p, seed=0):
        return self.m_step(data, masked(data.obs["probs"].mean(1), data.mask), None, p)

    def m_step(self, data, q, g, p, steps: int = 25):
        """π at its conditional mode; λ maximises the expected complete log joint in log
        space by L-BFGS on sufficient statistics (generalised EM)."""
        probs = data.obs["probs"]
        wq = q * data.weight.unsqueeze(-1)
        pi = dirichlet_mode(pi_counts(wq) + float(p["alpha_prior"]))
        r, m, k = probs.shape
        present = data.obs.get("informative")                                    # [R, M], None: all observed
        if present is None:
            weight = wq.sum(0).unsqueeze(-1)                                      # [K, 1]
            stats = (wq.T @ probs.log().reshape(r, m * k)).reshape(k, m, k)      # Σ_r q_rk log p_rml
        else:
            weight = wq.T @ present                                               # [K, M] Σ_r q_rk [m observed]
            stats = torch.einsum("rk,rm,rml->kml", wq, present, probs.log())     # … over observed outputs
        shape = confusion_prior(k, p["diag_shape"], p["off_shape"]).unsqueeze(1)
        rate = float(p["rate"])
        init = g["concentration"] if g is not None else shape.expand(k, m, k) / rate
        log_lam = init.log().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([log_lam], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            lam = log_lam.exp()
            value = (weight * (torch.lgamma(lam.sum(-1)) - torch.lgamma(lam).sum(-1))).sum() \
                + ((lam - 1) * stats).sum() + ((shape - 1) * log_lam - rate * lam).sum()
            loss = -value
            loss.backward()
            return loss
        opt.step(closure)
        return {"pi": pi, "concentration": log_lam.detach().exp()}
