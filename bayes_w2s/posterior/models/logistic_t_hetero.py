"""Heteroscedastic logistic-t: the logistic-t model with a scale matrix per class."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ..engine import CORR_CHOLESKY, DTYPE, POSITIVE_SUPPORT, REAL_SUPPORT, SIMPLEX, Site, dirichlet_mode, scaled
from ._classification import for_vindex, pi_counts, true_class
from .logistic_t import (LogisticT, fit_covariance, mahalanobis, pooled_covariance, prior_means, scatter,
                         t_log_density)
from .soft import evidence_mask, evidence_weights, with_evidence


def logistic_t_hetero(logits: torch.Tensor, alpha_prior: float = 1.0, df: float = 1.0, mean_offset: float = 2.0,
                      mean_scale: float = 3.0, scale_shape: float = 2.0, scale_rate: float = 0.5,
                      lkj_concentration: float = 2.0, subsample_size: int | None = None,
                      gold: torch.Tensor | None = None, informative: torch.Tensor | None = None):
    r"""Heteroscedastic logistic-t soft-label model: as :func:`.logistic_t`, but every
    class has its own scale matrix.

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K),\quad
        \mu_k \sim \mathcal N(m_k, \tau^2 I),\quad
        \sigma_{k,d} \sim \mathrm{Gamma}(a, b),\quad
        L_{\Omega,k} \sim \mathrm{LKJCholesky}(\eta) \\
        c_n &\sim \mathrm{Cat}(\pi),\qquad
        z_n \sim t_\nu\big(\mu_{c_n},\ \mathrm{diag}(\sigma_{c_n}) L_{\Omega,c_n}
            L_{\Omega,c_n}^\top \mathrm{diag}(\sigma_{c_n})\big)

    Why: the weak models' log-odds are not equally spread in every class (on SST-2's weak
    labels the widest class's interquartile range is 1.14–1.31× the narrowest's). A mixture
    with one shared scale must explain the wider class's edge items by moving the boundary
    into that class, so its unsupervised fit gives the tighter class too large a share
    (π̂ 0.57 for a true share of 0.46) and falls below the majority vote (80.7% vs 81.9%),
    while the same likelihood fitted on the true labels is above it (83.0%) — and explains the
    weak labels *less* well than the unsupervised optimum (−12,654 vs −12,642 nats): the
    likelihood, not the optimiser (section 4 of
    ``experiments/results/soft_label_diagnosis/sst2/result.md``, seed 0). A scale matrix per class
    — the unrestricted mixture of t of Peel & McLachlan (2000) — lets each class have its
    own spread and correlation. The priors are independent per class (no pooling towards a
    shared scale; :func:`.logistic_t_pooled` adds it) and are what keeps a class that few
    items support from collapsing onto them.

    A property of every mixture of t (here and in :func:`.logistic_t`): far out in the
    tails the class posterior no longer follows the direction of z but the classes'
    scales, since t densities decay polynomially. Items on which all weak models are
    extremely sure (log-odds beyond ±10) get a less confident posterior than moderately
    sure ones; tempering and gold do not change this.
    """
    k, d = logits.shape[-1] + 1, logits.shape[-2] * logits.shape[-1]
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=logits.dtype)))
    mu, sigma, omega = class_scales(k, d, logits.dtype, mean_offset, mean_scale, scale_shape, scale_rate,
                                    lkj_concentration)
    return observe_log_odds(logits, pi, mu, sigma.unsqueeze(-1) * omega, df, subsample_size, gold, informative)


def class_scales(k: int, d: int, dtype, mean_offset, mean_scale, scale_shape, scale_rate, lkj_concentration):
    """The ``classes`` plate's sites: each class's mean log-odds μ_k, scales σ_k and correlation
    Cholesky factor L_Ω,k under their independent priors."""
    with pyro.plate("classes", k, dim=-1):
        mu = pyro.sample("mu", dist.Normal(prior_means(k, d // (k - 1), mean_offset, dtype),
                                           torch.tensor(float(mean_scale), dtype=dtype)).to_event(1))   # [K, D]
        sigma = pyro.sample("sigma", dist.Gamma(torch.full((k, d), float(scale_shape), dtype=dtype),
                                                torch.tensor(float(scale_rate), dtype=dtype)).to_event(1))
        omega = pyro.sample("omega", dist.LKJCholesky(d, torch.tensor(float(lkj_concentration), dtype=dtype)))
    return mu, sigma, omega


def observe_log_odds(logits, pi, mu, tril, df, subsample_size, gold, informative):
    """The ``items`` plate: c_n ~ Cat(π) (observed on gold items), z_n ~ t_ν(μ_c, L_c L_cᵀ);
    items whose every weak output is uniform inform π only."""
    n = logits.shape[0]
    flat = logits.reshape(n, -1)
    with pyro.plate("items", n, dim=-1, subsample_size=subsample_size) as idx:
        c = true_class(pi, gold, idx, items_dim=-1)
        loc = Vindex(for_vindex(mu, 2, nest=1))[..., c, :]
        scale_tril = Vindex(for_vindex(tril, 3, nest=1))[..., c, :, :]
        with pyro.poutine.mask(mask=evidence_mask(informative, idx, items_dim=-1)):
            pyro.sample("y", dist.MultivariateStudentT(torch.tensor(float(df), dtype=logits.dtype), loc, scale_tril),
                        obs=flat[idx])
    return c


def classwise_mahalanobis(z, mu, sigma, omega):
    """``([..., R, K] squared Mahalanobis distances of z_r from μ_k under Σ_k, [..., K] log |L_k|)``."""
    parts = [mahalanobis(z, mu[..., k:k + 1, :], sigma[..., k, :], omega[..., k, :, :]) for k in range(mu.shape[-2])]
    return torch.cat([m for m, _ in parts], -1), torch.stack([ld for _, ld in parts], -1)


def classwise_log_lik(z, mu, sigma, omega, df: float) -> torch.Tensor:
    """``[..., R, K]`` log t_ν(z_r; μ_k, Σ_k), each class under its own scale matrix."""
    mahal, log_det = classwise_mahalanobis(z, mu, sigma, omega)
    return t_log_density(mahal, log_det.unsqueeze(-2), z.shape[-1], df)


class LogisticTHetero(LogisticT):
    """``log_prior`` and ``confusion`` are :class:`.LogisticT`'s: its prior terms sum over
    the per-class σ and L_Ω as they do over the shared ones."""

    name = "logistic_t_hetero"
    fn = staticmethod(logistic_t_hetero)
    sites = {"pi": Site(SIMPLEX, ("class",)), "mu": Site(REAL_SUPPORT, ("true_class", "log_ratio_coord")),
             "sigma": Site(POSITIVE_SUPPORT, ("true_class", "log_ratio_coord")),
             "omega": Site(CORR_CHOLESKY, ("true_class", "log_ratio_coord", "log_ratio_coord_"))}

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        z = obs["logits"].reshape(len(obs["logits"]), -1)
        log_lik = classwise_log_lik(z, g["mu"], g["sigma"], g["omega"], float(p["df"]))
        return log_g["pi"].unsqueeze(-2) + with_evidence(obs, scaled(lik_weight, log_lik))

    def m_step(self, data, q, g, p, steps: int = 30):
        """ECM as in :meth:`.LogisticT.m_step`, one class at a time: each (item, class) gets
        the expected precision weight u = (ν + D) / (ν + its Mahalanobis distance under Σ_k);
        then μ_k at its conditional mode given Σ_k, then Σ_k by L-BFGS on that class's
        u-weighted scatter. The first step (no globals yet) takes u = 1 and starts every
        class's μ_k and its L-BFGS at the pooled within-class covariance."""
        z = data.obs["logits"].reshape(data.num_rows, -1)
        wq = q * data.weight.unsqueeze(-1)
        k, d = wq.shape[-1], z.shape[-1]
        df = float(p["df"])
        pi = dirichlet_mode(pi_counts(wq) + float(p["alpha_prior"]))
        lik_w = evidence_weights(data.obs, wq)          # masked items inform π only
        if g is None:
            wu = lik_w
            sigma, omega = pooled_covariance(z, lik_w)
            sigma, omega = sigma.expand(k, d), omega.expand(k, d, d)
        else:
            sigma, omega = g["sigma"], g["omega"]
            mahal, _ = classwise_mahalanobis(z, g["mu"], sigma, omega)
            wu = lik_w * (df + d) / (df + mahal)
        tau2 = float(p["mean_scale"]) ** 2
        m0 = prior_means(k, d // (k - 1), p["mean_offset"])
        eye = torch.eye(d, dtype=DTYPE)
        prior_scatter, prior_total = self.scale_prior_scatter(g, p, (sigma[0], omega[0]))
        anchor = self.mean_anchor(g, p)
        mus, sigmas, omegas = [], [], []
        for c in range(k):
            precision = torch.cholesky_inverse(sigma[c].unsqueeze(-1) * omega[c])
            if anchor is None:
                a = wu[:, c].sum() * precision + eye / tau2
                mu_c = torch.linalg.solve(a, precision @ (wu[:, c] @ z) + m0[c] / tau2)
            else:   # the anchor weighs like κ items at t_k (a branch of its own: unanchored fits stay bit for bit)
                kappa, targets = anchor
                a = (wu[:, c].sum() + kappa) * precision + eye / tau2
                mu_c = torch.linalg.solve(a, precision @ (wu[:, c] @ z + kappa * targets[c]) + m0[c] / tau2)
            class_scatter = scatter(z, mu_c.unsqueeze(0), wu[:, c:c + 1])
            if prior_scatter is not None:
                class_scatter = class_scatter + prior_scatter
            if anchor is not None:
                class_scatter = class_scatter + kappa * torch.outer(mu_c - targets[c], mu_c - targets[c])
            sigma_c, omega_c = fit_covariance(class_scatter, lik_w[:, c].sum() + prior_total,
                                              sigma[c], omega[c], p, steps)
            mus.append(mu_c)
            sigmas.append(sigma_c)
            omegas.append(omega_c)
        return {"pi": pi, "mu": torch.stack(mus), "sigma": torch.stack(sigmas), "omega": torch.stack(omegas)}

    def scale_prior_scatter(self, g, p, start):
        """``(S₀, W₀)``: what the scale matrices' prior adds to each class's scatter and weight in
        the M-step (none here: the priors on σ_k and L_Ω,k are :meth:`fit_covariance`'s own).
        ``start`` is the pooled covariance where the first M-step begins."""
        return None, 0.0

    def mean_anchor(self, g, p):
        """``None``, or ``(κ, [K, D] targets t_k)``: a factor exp(−κ/2 (μ_k − t_k)ᵀ Σ_k⁻¹ (μ_k − t_k)) on
        each class mean (none here; :class:`.LogisticTAnchored` has one)."""
        return None
