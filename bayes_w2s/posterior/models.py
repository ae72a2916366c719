"""Generative models of weak supervisors, as plain Pyro functions.

Every model shares one layout so that EM, SVI, NUTS and ArviZ treat them alike:

* plate ``"weak_models"`` (dim −1, size M) and plate ``"classes"`` (dim −2, size K) hold
  the global reliability parameters, stored as ``[K, M, ...]`` so that indexing them with
  the true class lines up with the observation plates;
* plate ``"items"`` (dim −2, size N, subsampled for large N) holds the true class
  ``c_n``, a discrete site enumerated in parallel (``TraceEnum_ELBO``, NUTS) or drawn by
  ``infer_discrete``;
* the observation site ``"y"`` sits in ``items × weak_models``.

Vote models observe ``counts[n, m, l]``, how often weak model m gave item n label l.
All-zero rows are abstentions (or models that never saw the item) and contribute
nothing; a worker who labelled an item twice contributes both votes. The site is a
multinomial whose total count is that row's sum (:class:`VoteCounts`): its log-density
is ``Σ_l counts·log θ`` plus a constant, exactly the Dawid–Skene likelihood.

Each model also has a closed-form ``*_log_lik`` giving ``log p(y_n | c_n = k, globals)``
as ``[..., N, K]``: EM, the item posteriors and the pointwise log-likelihood for LOO
use it, and a test checks it against the Pyro model's own trace.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import constraints


def confusion_prior(num_classes: int, beta_diag: float, beta_off: float, dtype=torch.float64) -> torch.Tensor:
    """``[K, K]`` Dirichlet concentrations of the confusion rows: β_diag on the diagonal."""
    k = num_classes
    return torch.full((k, k), float(beta_off), dtype=dtype) + torch.eye(k, dtype=dtype) * (beta_diag - beta_off)


def _for_vindex(table: torch.Tensor) -> torch.Tensor:
    """``[*B, K, M, K] -> [*B, 1, 1, K, M, K]``: outer-plate batch dims ``B`` (draws, particles)
    sit left of the items/weak_models dims that the index tensors broadcast over."""
    return table.reshape(table.shape[:-3] + (1, 1) + table.shape[-3:])


class VoteCounts(dist.TorchDistribution):
    """Multinomial over vote counts whose total may differ per (item, model) row.

    ``log_prob = Σ_l counts_l log p_l + log multinomial coefficient``; 0 for an all-zero
    row (abstention). Unlike ``torch``'s ``Multinomial`` it needs no single total count,
    and it computes the coefficient on the observed counts alone rather than on their
    broadcast against every enumerated class and posterior draw (where ``lgamma`` alone
    was half the cost of ``infer_discrete``). It takes log-probabilities, so that the log
    is taken on the small confusion table before indexing. Observation only: no sampler.
    """

    arg_constraints = {"log_probs": constraints.real_vector}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, log_probs: torch.Tensor, validate_args=None):
        self.log_probs = log_probs
        super().__init__(log_probs.shape[:-1], log_probs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return VoteCounts(self.log_probs.expand(torch.Size(batch_shape) + self.event_shape), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        coef = torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1)
        return (value * self.log_probs).sum(-1) + coef


def _observe_votes(counts: torch.Tensor, theta: torch.Tensor, pi: torch.Tensor, weak_models: pyro.plate,
                   subsample_size: int | None):
    """Shared tail of the vote models: c_n ~ Cat(π); counts_n,m ~ Mult(θ[c_n, m])."""
    n, m, _ = counts.shape
    with pyro.plate("items", n, dim=-2, subsample_size=subsample_size) as idx:
        c = pyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
        with weak_models:
            log_theta = theta.clamp_min(torch.finfo(theta.dtype).tiny).log()
            log_probs = Vindex(_for_vindex(log_theta))[..., c, torch.arange(m), :]             # [..., N, M, K]
            pyro.sample("y", VoteCounts(log_probs), obs=counts[idx])
    return c


def dawid_skene(counts: torch.Tensor, alpha_prior: float = 1.0, beta_diag: float = 2.0, beta_off: float = 1.0,
                subsample_size: int | None = None):
    r"""Dawid–Skene: a full confusion matrix per weak model (Dawid & Skene, 1979).

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K) \\
        \theta_{k,m} &\sim \mathrm{Dir}(\beta_\text{off}\mathbf 1_K + (\beta_\text{diag}-\beta_\text{off}) e_k)
            \quad\text{(row k of weak model m's confusion)} \\
        c_n &\sim \mathrm{Cat}(\pi) \\
        y_{n,m} &\sim \mathrm{Mult}(\theta_{c_n, m}) \quad\text{(the votes of model m on item n)}

    The diagonal-heavy prior (β_diag > β_off) prefers the mode in which weak models beat
    chance, which is what breaks the K!-fold label-switching symmetry. Bayesian treatment
    as in Kim & Ghahramani (2012), "Bayesian classifier combination".
    """
    n, m, k = counts.shape
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=counts.dtype)))
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models, pyro.plate("classes", k, dim=-2):
        conc = confusion_prior(k, beta_diag, beta_off, counts.dtype).unsqueeze(1).expand(k, m, k)
        theta = pyro.sample("theta", dist.Dirichlet(conc))                   # [K, M, K]
    return _observe_votes(counts, theta, pi, weak_models, subsample_size)


def one_coin_theta(accuracy: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[..., K, M, K]`` confusion with the accuracies on the diagonal, the rest uniform.

    ``accuracy`` is in plate layout: ``[M]``, or ``[..., 1, M]`` under outer plates.
    """
    k = num_classes
    eye = torch.eye(k, dtype=accuracy.dtype).unsqueeze(-2)                   # [K, 1, K]
    acc = accuracy.unsqueeze(-1)                                             # [..., 1, M, 1]
    return eye * acc + (1 - eye) * (1 - acc) / (k - 1)


def one_coin(counts: torch.Tensor, alpha_prior: float = 1.0, accuracy_a: float = 2.0, accuracy_b: float = 1.0,
             subsample_size: int | None = None):
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
    theta = pyro.deterministic("theta", one_coin_theta(accuracy, k))
    return _observe_votes(counts, theta, pi, weak_models, subsample_size)


def hierarchical_dawid_skene(counts: torch.Tensor, alpha_prior: float = 1.0, beta_diag: float = 2.0,
                             beta_off: float = 1.0, concentration_shape: float = 2.0,
                             concentration_rate: float = 0.1, subsample_size: int | None = None):
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
    return _observe_votes(counts, theta, pi, weak_models, subsample_size)


def soft_label(probs: torch.Tensor, alpha_prior: float = 1.0, diag_shape: float = 4.0, off_shape: float = 1.0,
               rate: float = 1.0, subsample_size: int | None = None):
    r"""Soft-label model: each weak model's whole probability vector is the observation.

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K) \\
        \lambda_{k,m,l} &\sim \mathrm{Gamma}(s_\text{diag} [l=k] + s_\text{off} [l\ne k],\ r) \\
        c_n &\sim \mathrm{Cat}(\pi) \\
        p_{n,m} &\sim \mathrm{Dir}(\lambda_{c_n, m}) \quad\text{(weak model m's predicted distribution)}

    Why a Dirichlet likelihood: it is a proper density on the simplex, so how confident a
    weak model is counts (0.99 for "positive" is stronger evidence than 0.51 when the model
    is calibrated, and weaker when the data show it is over-confident), the reliability
    λ_{k,m} is learnt per true class, and the pointwise log-likelihood is valid for LOO
    among soft-label fits. Treating the probabilities as fractional votes would throw
    the calibration away. Probabilities are clipped to [ε, 1] and renormalised before
    fitting (see ``fit_posterior``'s ``eps``) because a Dirichlet density is unbounded at
    exact zeros. Related: the Dirichlet calibration map of Kull et al. (2019) and the
    soft-label aggregation of Cui et al. (2025, §3).
    """
    n, m, k = probs.shape
    dtype = probs.dtype
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=dtype)))
    shape = confusion_prior(k, diag_shape, off_shape, dtype).unsqueeze(1).expand(k, m, k)
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models, pyro.plate("classes", k, dim=-2):
        lam = pyro.sample("concentration", dist.Gamma(shape, torch.full_like(shape, float(rate))).to_event(1))
    with pyro.plate("items", n, dim=-2, subsample_size=subsample_size) as idx:
        c = pyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
        with weak_models:
            pyro.sample("y", dist.Dirichlet(Vindex(_for_vindex(lam))[..., c, torch.arange(m), :]), obs=probs[idx])
    return c


# -- closed-form log p(y_n | c_n = k, globals), [..., N, K] ------------------------------

def votes_log_lik(counts: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Σ_m Σ_l counts_nml log θ_kml (the multinomial coefficient is :func:`votes_log_coef`).

    ``log_theta`` is ``[..., K, M, K]`` (model layout); one matmul over ``[N, M·K]``.
    """
    n, m, k = counts.shape
    flat = log_theta.reshape(*log_theta.shape[:-3], k, m * k).transpose(-1, -2)  # [..., M·L, K]
    return counts.reshape(n, m * k) @ flat


def votes_log_coef(counts: torch.Tensor) -> torch.Tensor:
    """``[N]`` Σ_m log multinomial coefficient; 0 when each model votes at most once."""
    return (torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)).sum(-1)


def soft_log_lik(probs: torch.Tensor, concentration: torch.Tensor) -> torch.Tensor:
    """Σ_m log Dir(p_nm | λ_k,m), ``concentration`` ``[..., K, M, K]``."""
    lam = concentration
    log_p = probs.log()                                                      # [N, M, L]
    norm = torch.lgamma(lam.sum(-1)) - torch.lgamma(lam).sum(-1)             # [..., K, M]
    n, m, k = probs.shape
    flat = (lam - 1).reshape(*lam.shape[:-3], k, m * k).transpose(-1, -2)    # [..., M·L, K]
    return log_p.reshape(n, m * k) @ flat + norm.sum(-1).unsqueeze(-2)


#: name -> (Pyro model, observation kind, latent global sites)
MODELS = {
    "dawid_skene": (dawid_skene, "votes", ("pi", "theta")),
    "one_coin": (one_coin, "votes", ("pi", "accuracy")),
    "hierarchical": (hierarchical_dawid_skene, "votes", ("pi", "kappa", "mu", "theta")),
    "soft": (soft_label, "probs", ("pi", "concentration")),
}
