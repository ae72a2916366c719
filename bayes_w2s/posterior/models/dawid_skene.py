"""Dawid–Skene: a full confusion matrix per weak model."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from ..engine import scaled, CONCENTRATION, DTYPE, SIMPLEX, CountsSpec, Site
from ._classification import (ClassModel, confusion_prior, indexed_log_theta, observe_votes, pi_counts,
                              vote_start, votes_log_lik, sparse_votes, jax_votes_log_lik)


def dawid_skene(counts: torch.Tensor, alpha_prior: float = 1.0, beta_diag: float = 2.0, beta_off: float = 1.0,
                prior_counts: torch.Tensor | None = None, subsample_size: int | None = None,
                gold: torch.Tensor | None = None):
    r"""Dawid–Skene: a full confusion matrix per weak model (Dawid & Skene, 1979).

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K) \\
        \theta_{k,m} &\sim \mathrm{Dir}(\beta_\text{off}\mathbf 1_K + (\beta_\text{diag}-\beta_\text{off}) e_k)
            \quad\text{(row k of weak model m's confusion)} \\
        c_n &\sim \mathrm{Cat}(\pi) \\
        y_{n,m} &\sim \mathrm{Mult}(\theta_{c_n, m}) \quad\text{(the votes of model m on item n)}

    The diagonal-heavy prior (β_diag > β_off) prefers the mode in which weak models beat
    chance, which is what breaks the K!-fold label-switching symmetry. ``prior_counts``
    ``[K, M, K]`` (optional) adds pseudo-counts to θ's concentrations: a gold-informed
    prior, each weak model's confusion counts on labelled items it never trained on
    (:func:`bayes_w2s.posterior.calibration.gold_confusion_counts`). Bayesian treatment as
    in Kim & Ghahramani (2012), "Bayesian classifier combination".
    """
    n, m, k = counts.shape
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=counts.dtype)))
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models, pyro.plate("classes", k, dim=-2):
        conc = confusion_prior(k, beta_diag, beta_off, counts.dtype).unsqueeze(1).expand(k, m, k)
        if prior_counts is not None:
            conc = conc + prior_counts
        theta = pyro.sample("theta", dist.Dirichlet(conc))                   # [K, M, K]
    return observe_votes(counts, indexed_log_theta(theta, m), pi, weak_models, subsample_size, gold)


class DawidSkene(ClassModel):
    name = "dawid_skene"
    fn = staticmethod(dawid_skene)
    sites = {"pi": Site(SIMPLEX, ("class",)),
             "theta": Site(SIMPLEX, ("true_class", "weak_model", "weak_label"))}
    methods = ("em", "vb", "svi", "nuts", "hmc")
    prior_specs = {"alpha_prior": CONCENTRATION, "beta_diag": CONCENTRATION, "beta_off": CONCENTRATION,
                   "prior_counts": CountsSpec("gold confusion counts [K, M, K]")}

    def theta_concentration(self, p, k):
        conc = confusion_prior(k, p["beta_diag"], p["beta_off"]).unsqueeze(1)
        return conc if p.get("prior_counts") is None else conc + p["prior_counts"]

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        return log_g["pi"].unsqueeze(-2) + scaled(lik_weight, votes_log_lik(obs["counts"], log_g["theta"]))

    def jax_observation(self, obs):
        return sparse_votes(obs["counts"])

    def jax_log_joint(self, obs, log_g, num_rows):
        """The JAX twin of :meth:`log_joint` (``method="nuts", backend="numpyro"``)."""
        return log_g["pi"] + jax_votes_log_lik(obs, log_g["theta"], num_rows)

    def expected_counts(self, obs, wq):
        counts = obs["counts"]
        r, m, k = counts.shape
        theta = (wq.T @ counts.reshape(r, m * k)).reshape(k, m, k)
        return {"pi": pi_counts(wq), "theta": theta}

    def prior_concentration(self, p, shape_of):
        k, m = shape_of["theta"][0], shape_of["theta"][1]
        return {"pi": torch.full((k,), float(p["alpha_prior"]), dtype=DTYPE),
                "theta": self.theta_concentration(p, k).expand(k, m, k)}

    def init(self, data, p, seed=0):
        return self.m_step(data, vote_start(data), None, p)
