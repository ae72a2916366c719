"""Hierarchical Dawid–Skene: a population confusion that each weak model deviates from."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from ..engine import scaled, CONCENTRATION, DTYPE, POSITIVE, POSITIVE_SUPPORT, SIMPLEX, Site, dirichlet_log_density
from ._classification import (ClassModel, confusion_prior, indexed_log_theta, jax_votes_log_lik, observe_votes,
                              pi_log_prior, sparse_votes, votes_log_lik)
from .dawid_skene import DawidSkene


def hierarchical_dawid_skene(counts: torch.Tensor, alpha_prior: float = 1.0, beta_diag: float = 2.0,
                             beta_off: float = 1.0, concentration_shape: float = 2.0,
                             concentration_rate: float = 0.1, subsample_size: int | None = None,
                             gold: torch.Tensor | None = None):
    r"""Hierarchical Dawid–Skene: a population confusion that each weak model deviates from.

    .. math::
        \mu_k &\sim \mathrm{Dir}(\beta_\text{off}\mathbf 1_K + (\beta_\text{diag}-\beta_\text{off}) e_k)
            \quad\text{(population confusion row)} \\
        \kappa &\sim \mathrm{Gamma}(s, r) \quad\text{(how closely models follow the population)} \\
        \theta_{k,m} &\sim \mathrm{Dir}(\kappa\,\mu_k) \\
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K),\quad c_n \sim \mathrm{Cat}(\pi),\quad
        y_{n,m} \sim \mathrm{Mult}(\theta_{c_n, m})

    Weak models that labelled few items borrow strength from the others (Paun et al., 2018,
    "Comparing Bayesian models of annotation", the hierarchical ``HierDS`` family).

    No posterior mode: wherever κ μ_kl < 1 (small off-diagonal population mass, typical)
    and weak model m never gave label l to class k (typical for sparse annotators), the
    density of θ_kml grows without bound as θ_kml → 0, so a MAP optimiser (EM, SVI with a
    delta guide) runs θ to the edge of the simplex and the log density to +∞ (NaN after
    a few hundred steps on sparse crowd data). The model is therefore fitted by mean-field
    SVI (``guide="normal"``, whose ELBO includes the log-Jacobian and stays bounded) or NUTS.
    """
    n, m, k = counts.shape
    dtype = counts.dtype
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=dtype)))
    kappa = pyro.sample("kappa", dist.Gamma(torch.tensor(float(concentration_shape), dtype=dtype),
                                            torch.tensor(float(concentration_rate), dtype=dtype)))
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with pyro.plate("classes", k, dim=-2):
        mu = pyro.sample("mu", dist.Dirichlet(confusion_prior(k, beta_diag, beta_off, dtype).unsqueeze(1)))  # [K, 1, K]
        with weak_models:
            theta = pyro.sample("theta", dist.Dirichlet(kappa.unsqueeze(-1) * mu))
    return observe_votes(counts, indexed_log_theta(theta, m), pi, weak_models, subsample_size, gold)


class Hierarchical(ClassModel):
    name = "hierarchical"
    fn = staticmethod(hierarchical_dawid_skene)
    sites = {"pi": Site(SIMPLEX, ("class",)), "kappa": Site(POSITIVE_SUPPORT, ()),
             "mu": Site(SIMPLEX, ("true_class", "_", "weak_label")),
             "theta": Site(SIMPLEX, ("true_class", "weak_model", "weak_label"))}
    methods = ("svi", "nuts", "hmc")
    point_estimate = False
    default_guide = "normal"
    prior_specs = {"alpha_prior": CONCENTRATION, "beta_diag": CONCENTRATION, "beta_off": CONCENTRATION,
                   "concentration_shape": POSITIVE, "concentration_rate": POSITIVE}

    def log_prior(self, g, log_g, p):
        k = log_g["pi"].shape[-1]
        shape, rate = float(p["concentration_shape"]), float(p["concentration_rate"])
        out = pi_log_prior(log_g["pi"], p["alpha_prior"])
        out = out + shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * log_g["kappa"] - rate * g["kappa"]
        out = out + dirichlet_log_density(confusion_prior(k, p["beta_diag"], p["beta_off"]).unsqueeze(1),
                                          log_g["mu"]).sum()
        return out + dirichlet_log_density(g["kappa"] * g["mu"], log_g["theta"]).sum()

    def jax_observation(self, obs):
        return sparse_votes(obs["counts"])

    def jax_log_joint(self, obs, log_g, num_rows):
        """The JAX twin of :meth:`log_joint` (``method="nuts", backend="numpyro"``)."""
        return log_g["pi"] + jax_votes_log_lik(obs, log_g["theta"], num_rows)

    @staticmethod
    def jax_log_prior(g, log_g, p):
        """The JAX twin of :meth:`log_prior`."""
        import jax.numpy as jnp
        from jax.scipy.special import gammaln

        def log_dirichlet(alpha, log_x):
            return (gammaln(alpha.sum(-1)) - gammaln(alpha).sum(-1) + ((alpha - 1.0) * log_x).sum(-1)).sum()
        k = log_g["pi"].shape[-1]
        shape, rate = float(p["concentration_shape"]), float(p["concentration_rate"])
        beta_off = float(p["beta_off"])
        mu_conc = beta_off + (float(p["beta_diag"]) - beta_off) * jnp.eye(k)
        return (log_dirichlet(jnp.full(k, float(p["alpha_prior"])), log_g["pi"])
                + shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * log_g["kappa"] - rate * g["kappa"]
                + log_dirichlet(mu_conc[:, None, :], log_g["mu"])
                + log_dirichlet(g["kappa"] * g["mu"], log_g["theta"]))

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        return log_g["pi"].unsqueeze(-2) + scaled(lik_weight, votes_log_lik(obs["counts"], log_g["theta"]))

    def init(self, data, p, seed=0):
        """Dawid–Skene's MAP, lifted off the simplex's edge where it touches it."""
        ds = DawidSkene()
        base = ds.init(data, ds.priors({n: p[n] for n in ("alpha_prior", "beta_diag", "beta_off")}))
        theta = off_the_edge(base["theta"])
        return {"pi": off_the_edge(base["pi"]), "theta": theta, "mu": theta.mean(1, keepdim=True),
                "kappa": torch.tensor(20.0, dtype=DTYPE)}


def off_the_edge(x: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Simplex rows (last axis) with an entry below ``floor``: ``floor`` added to every entry and the
    row renormalised; other rows unchanged. A MAP entry at 0 (a class no item votes for, a label a weak model never
    gives some class) is −∞ in unconstrained coordinates: SVI's mean-field guide started there
    diverged to NaN on ATIS intent (26 classes, 5 with no item)."""
    lifted = (x + floor) / (1.0 + floor * x.shape[-1])
    return torch.where((x < floor).any(-1, keepdim=True), lifted, x)
