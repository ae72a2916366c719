"""EBCC: Dawid–Skene whose confusions depend on a latent subtype of each true class."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ..engine import scaled, CONCENTRATION, DTYPE, PriorSpec, SIMPLEX, Site
from ._classification import (ClassModel, VoteCounts, confusion_prior, for_vindex, true_class,
                              vote_start, votes_log_lik, sparse_votes, jax_votes_log_lik)

NEST = 3   # plates: classes (−3), subtypes (−2), weak_models (−1); items reuse −2


def ebcc(counts: torch.Tensor, alpha_prior: float = 1.0, subtype_prior: float = 0.1, beta_diag: float = 4.0,
         beta_off: float = 1.0, num_subtypes: int = 4, subsample_size: int | None = None,
         gold: torch.Tensor | None = None):
    r"""Enhanced Bayesian classifier combination (Li, Rubinstein & Cohn, ICML 2019,
    "Exploiting worker correlation for label aggregation in crowdsourcing").

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K),\quad
        \nu_k \sim \mathrm{Dir}(a_\nu \mathbf 1_L) \quad\text{(subtype weights of class k)} \\
        \theta_{k,l,m} &\sim \mathrm{Dir}(\beta_\text{off}\mathbf 1_K + (\beta_\text{diag}-\beta_\text{off}) e_k) \\
        c_n &\sim \mathrm{Cat}(\pi),\quad g_n \mid c_n \sim \mathrm{Cat}(\nu_{c_n}),\quad
        y_{n,m} \sim \mathrm{Mult}(\theta_{c_n, g_n, m})

    Each true class has L latent subtypes and every weak model's confusion depends on the
    subtype, so weak models that err together on some kind of item are explained by a
    shared subtype ("hard positives") instead of counted as independent votes: marginally
    over g, the weak models' labels are correlated given c. The sparse subtype prior
    (a_ν = 0.1, the paper's) leaves unused subtypes empty. With L = 1 this is Dawid–Skene.
    The paper fits it by mean-field VB (``method="vb"``, the default); the posterior mode
    does not exist for a_ν < 1, so there is no EM. Subtypes make the ELBO multimodal, so
    VB keeps the best of 10 seeded starts; L = 4 (the paper uses 10) because more
    subtypes need more starts to find the planted structure (tests/posterior/test_engine.py).
    """
    n, m, k = counts.shape
    big_l = int(num_subtypes)
    dtype = counts.dtype
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=dtype)))
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with pyro.plate("classes", k, dim=-3):
        nu = pyro.sample("nu", dist.Dirichlet(torch.full((big_l,), float(subtype_prior), dtype=dtype)))  # [K,1,1,L]
        with pyro.plate("subtypes", big_l, dim=-2), weak_models:
            conc = confusion_prior(k, beta_diag, beta_off, dtype).reshape(k, 1, 1, k)
            theta = pyro.sample("theta", dist.Dirichlet(conc))                       # [K, L, M, K]
    nu_flat = nu.reshape(*nu.shape[:-4], k, big_l)
    log_theta = theta.clamp_min(torch.finfo(dtype).tiny).log()
    with pyro.plate("items", n, dim=-2, subsample_size=subsample_size) as idx:
        c = true_class(pi, gold, idx)
        g = pyro.sample("g", dist.Categorical(Vindex(for_vindex(nu_flat, 2, NEST))[..., c, :]),
                        infer={"enumerate": "parallel"})
        with weak_models:
            rows = Vindex(for_vindex(log_theta, 4, NEST))[..., c, g, torch.arange(m), :]
            pyro.sample("y", VoteCounts(rows), obs=counts[idx])
    return c


class EBCC(ClassModel):
    name = "ebcc"
    fn = staticmethod(ebcc)
    max_plate_nesting = NEST
    sites = {"pi": Site(SIMPLEX, ("class",)), "nu": Site(SIMPLEX, ("true_class", "_", "_", "subtype")),
             "theta": Site(SIMPLEX, ("true_class", "subtype", "weak_model", "weak_label"))}
    methods = ("vb", "svi", "nuts", "hmc")
    point_estimate = False
    vb_starts = 10
    default_guide = "normal"
    prior_specs = {"alpha_prior": CONCENTRATION, "subtype_prior": CONCENTRATION, "beta_diag": CONCENTRATION,
                   "beta_off": CONCENTRATION, "num_subtypes": PriorSpec(low=1, closed=True, high=1000, integer=True)}

    def num_latent(self, k, p):
        return k * int(p["num_subtypes"])

    def latent_class_of(self, k, p):
        return torch.arange(k).repeat_interleave(int(p["num_subtypes"]))      # latent index = class · L + subtype

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        k = log_g["pi"].shape[-1]
        big_l = log_g["nu"].shape[-1]
        lead = log_g["theta"].shape[:-4]
        log_theta = log_g["theta"].reshape(*lead, k * big_l, *log_g["theta"].shape[-2:])   # [..., K·L, M, K]
        log_nu = log_g["nu"].reshape(*lead, k * big_l)
        latent_prior = log_g["pi"].repeat_interleave(big_l, -1) + log_nu
        return latent_prior.unsqueeze(-2) + scaled(lik_weight, votes_log_lik(obs["counts"], log_theta))

    def jax_observation(self, obs):
        return sparse_votes(obs["counts"])

    def jax_log_joint(self, obs, log_g, num_rows):
        """The JAX twin of :meth:`log_joint` (``method="nuts", backend="numpyro"``)."""
        import jax.numpy as jnp

        k, big_l = log_g["pi"].shape[-1], log_g["nu"].shape[-1]
        log_theta = log_g["theta"].reshape(k * big_l, *log_g["theta"].shape[-2:])
        latent_prior = jnp.repeat(log_g["pi"], big_l) + log_g["nu"].reshape(k * big_l)
        return latent_prior + jax_votes_log_lik(obs, log_theta, num_rows)

    def expected_counts(self, obs, wq):
        counts = obs["counts"]
        r, m, k = counts.shape
        big_l = wq.shape[-1] // k
        theta = (wq.T @ counts.reshape(r, m * k)).reshape(k, big_l, m, k)
        per = wq.sum(0).reshape(k, big_l)
        return {"pi": per.sum(-1), "nu": per.reshape(k, 1, 1, big_l), "theta": theta}

    def prior_concentration(self, p, shape_of):
        k, big_l, m = shape_of["theta"][:3]
        return {"pi": torch.full((k,), float(p["alpha_prior"]), dtype=DTYPE),
                "nu": torch.full((k, 1, 1, big_l), float(p["subtype_prior"]), dtype=DTYPE),
                "theta": confusion_prior(k, p["beta_diag"], p["beta_off"]).reshape(k, 1, 1, k).expand(k, big_l, m, k)}

    #: subtypes are exchangeable (a chain may permute them): R-hat and ESS are computed on
    #: π and the effective confusion, which do not depend on the subtypes' order
    identified_sites = ("pi", "effective_theta")
    derived_dims = {"effective_theta": ("true_class", "weak_model", "weak_label")}

    def complete(self, g):
        nu = g["nu"]
        nu = nu.reshape(*nu.shape[:-4], nu.shape[-4], nu.shape[-1])                 # [..., K, L]
        return dict(g, effective_theta=(nu.unsqueeze(-1).unsqueeze(-1) * g["theta"]).sum(-3))

    def confusion(self, g, data, item_probs):
        """The effective confusion Σ_l ν_kl θ_klm: what a weak model does given the class."""
        return g["effective_theta"] if "effective_theta" in g else self.complete(g)["effective_theta"]

    def init(self, data, p, seed=0):
        """The soft majority vote, each row split over subtypes at random (seeded): subtypes
        are exchangeable, so a symmetric start would keep them identical forever."""
        q_class = vote_start(data)                                                   # [R, K]
        big_l = int(p["num_subtypes"])
        gen = torch.Generator().manual_seed(seed)
        split = torch._standard_gamma(torch.ones(data.num_rows, big_l, dtype=DTYPE), generator=gen)
        split = split / split.sum(-1, keepdim=True)
        q = (q_class.unsqueeze(-1) * split.unsqueeze(1)).reshape(data.num_rows, -1)
        counts = self.expected_counts(data.obs, q * data.weight.unsqueeze(-1))
        conc = self.prior_concentration(p, {s: c.shape for s, c in counts.items()})
        # posterior means (the modes may not exist for a sparse subtype prior)
        return {s: (conc[s] + counts[s]) / (conc[s] + counts[s]).sum(-1, keepdim=True) for s in counts}
