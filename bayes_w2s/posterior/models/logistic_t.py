"""Logistic-t soft-label model: weak models' log-odds, jointly Student-t given the class."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import biject_to, constraints

from ...weak.labels import TIE_TOL
from ..engine import (scaled, CONCENTRATION, CORR_CHOLESKY, DTYPE, POSITIVE, POSITIVE_SUPPORT, PriorSpec, REAL,
                      REAL_SUPPORT, SIMPLEX, Site, dirichlet_mode)
from ._classification import ClassModel, for_vindex, masked, pi_counts, pi_log_prior, true_class
from .soft import evidence_mask, evidence_weights, informative_items, soft_observation, with_evidence


def prior_means(num_classes: int, num_models: int, offset: float, dtype=DTYPE) -> torch.Tensor:
    """``[K, M·(K−1)]`` prior mean log-odds: for true class k every weak model puts ``offset``
    more log-odds on k than on the reference class K−1 (and on class K−1, ``offset`` more
    on it than on every other class)."""
    k = num_classes
    per_model = offset * (torch.eye(k, k - 1, dtype=dtype) - (torch.arange(k) == k - 1).to(dtype).unsqueeze(-1))
    return per_model.repeat(1, num_models)                                   # models are the outer blocks


def logistic_t(logits: torch.Tensor, alpha_prior: float = 1.0, df: float = 1.0, mean_offset: float = 2.0,
               mean_scale: float = 3.0, scale_shape: float = 2.0, scale_rate: float = 0.5,
               lkj_concentration: float = 2.0, subsample_size: int | None = None,
               gold: torch.Tensor | None = None, informative: torch.Tensor | None = None):
    r"""Logistic-t soft-label model: the log-odds of all weak models, jointly Student-t
    given the true class, with a scale matrix shared across classes.

    .. math::
        \pi &\sim \mathrm{Dir}(\alpha_\pi \mathbf 1_K),\quad
        \mu_k \sim \mathcal N(m_k, \tau^2 I),\quad
        \sigma_d \sim \mathrm{Gamma}(a, b),\quad
        L_\Omega \sim \mathrm{LKJCholesky}(\eta) \\
        c_n &\sim \mathrm{Cat}(\pi),\qquad
        z_n = \big(\log p_{n,m,l} - \log p_{n,m,K}\big)_{m,\,l<K} \sim
            t_\nu\big(\mu_{c_n},\ \mathrm{diag}(\sigma) L_\Omega L_\Omega^\top \mathrm{diag}(\sigma)\big)

    ``z_n`` (dimension M·(K−1)) is every weak model's additive log-ratio of its predicted
    distribution — for a softmax classifier, its logit differences. The correlation L_Ω
    spans weak models, so two models that err together are one piece of evidence, not
    two: correlated coordinates share their weight in the discriminant Σ⁻¹(μ_k − μ_j), and
    high-variance coordinates (the log-odds of classes a model is sure are wrong, which
    vary by orders of magnitude) get little weight, unlike in the Dirichlet likelihood of
    :mod:`.soft`. Heavy tails (ν = 1 by default) because the items all weak models get
    wrong together are outliers of their class, not its typical members: with Gaussian
    classes (ν → ∞, the logistic-normal of Aitchison & Shen, 1980) those items drag the
    fitted class split (on SST-2's weak labels the Gaussian mixture's accuracy falls 4.6
    points below the majority vote; ν = 1 matches the vote and is 2× better calibrated).
    The log-ratio basis does not matter: the model is equivariant under any invertible
    linear map of z. Peel & McLachlan (2000) for mixtures of t; Lewandowski, Kurowicka &
    Joe (2009) for LKJ. Items whose outputs are all uniform are missing (``informative``;
    :func:`.soft.informative_items`).
    """
    n, m, km1 = logits.shape
    k, d = km1 + 1, m * km1
    dtype = logits.dtype
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), float(alpha_prior), dtype=dtype)))
    with pyro.plate("classes", k, dim=-1):
        mu = pyro.sample("mu", dist.Normal(prior_means(k, m, mean_offset, dtype),
                                           torch.tensor(float(mean_scale), dtype=dtype)).to_event(1))  # [K, D]
    sigma = pyro.sample("sigma", dist.Gamma(torch.full((d,), float(scale_shape), dtype=dtype),
                                            torch.tensor(float(scale_rate), dtype=dtype)).to_event(1))
    omega = pyro.sample("omega", dist.LKJCholesky(d, torch.tensor(float(lkj_concentration), dtype=dtype)))
    tril = sigma.unsqueeze(-1) * omega
    flat = logits.reshape(n, d)
    with pyro.plate("items", n, dim=-1, subsample_size=subsample_size) as idx:
        c = true_class(pi, gold, idx, items_dim=-1)
        loc = Vindex(for_vindex(mu, 2, nest=1))[..., c, :]
        with pyro.poutine.mask(mask=evidence_mask(informative, idx, items_dim=-1)):
            pyro.sample("y", dist.MultivariateStudentT(torch.tensor(float(df), dtype=dtype), loc, tril),
                        obs=flat[idx])
    return c


def mahalanobis(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, omega: torch.Tensor):
    """``([..., R, K] squared Mahalanobis distances, [...] log |L|)`` of z_r from each μ_k
    under Σ = LLᵀ, L = diag(σ) L_Ω; two triangular solves."""
    tril = sigma.unsqueeze(-1) * omega                                       # [..., D, D]
    a = torch.linalg.solve_triangular(tril, z.T, upper=False)                # [..., D, R]
    b = torch.linalg.solve_triangular(tril, mu.transpose(-1, -2), upper=False)   # [..., D, K]
    mahal = (a * a).sum(-2).unsqueeze(-1) - 2 * a.transpose(-1, -2) @ b + (b * b).sum(-2).unsqueeze(-2)
    log_det = sigma.log().sum(-1) + torch.diagonal(omega, dim1=-2, dim2=-1).log().sum(-1)
    return mahal.clamp_min(0.0), log_det


def t_log_density(mahal: torch.Tensor, log_det: torch.Tensor, d: int, df: float) -> torch.Tensor:
    """log t_ν density in D dimensions from the squared Mahalanobis distance and log |L|
    (``log_det`` broadcast against ``mahal``)."""
    const = math.lgamma((df + d) / 2) - math.lgamma(df / 2) - 0.5 * d * math.log(df * math.pi)
    return const - log_det - 0.5 * (df + d) * torch.log1p(mahal / df)


def student_t_log_lik(z, mu, sigma, omega, df: float) -> torch.Tensor:
    """``[..., R, K]`` log t_ν(z_r; μ_k, Σ)."""
    mahal, log_det = mahalanobis(z, mu, sigma, omega)
    return t_log_density(mahal, log_det.unsqueeze(-1).unsqueeze(-1), z.shape[-1], df)


class LogisticT(ClassModel):
    name = "logistic_t"
    fn = staticmethod(logistic_t)
    observes = "probs"
    compress = False
    data_args = ("logits",)
    data_settings = {"eps": 1e-6}
    max_plate_nesting = 1
    sites = {"pi": Site(SIMPLEX, ("class",)), "mu": Site(REAL_SUPPORT, ("true_class", "log_ratio_coord")),
             "sigma": Site(POSITIVE_SUPPORT, ("log_ratio_coord",)),
             "omega": Site(CORR_CHOLESKY, ("log_ratio_coord", "log_ratio_coord_"))}
    methods = ("em", "svi", "nuts", "hmc")
    prior_specs = {"alpha_prior": CONCENTRATION, "df": PriorSpec(low=0.0, help="Student-t degrees of freedom"),
                   "mean_offset": REAL, "mean_scale": POSITIVE,
                   "scale_shape": PriorSpec(map_low=1.0, help="a Gamma shape"), "scale_rate": POSITIVE,
                   "lkj_concentration": PriorSpec(map_low=1.0, help="an LKJ concentration")}
    observed_dims = ("weak_model", "log_ratio")

    def observation(self, lm, eps: float = 1e-6):
        log_p = soft_observation(lm, eps).log()
        return {"logits": log_p[..., :-1] - log_p[..., -1:], "informative": informative_items(lm)}   # [N, M, K−1]

    def log_prior(self, g, log_g, p):
        k, d = g["mu"].shape[-2:]
        m0 = prior_means(k, d // (k - 1), p["mean_offset"])
        mean = dist.Normal(m0, torch.tensor(float(p["mean_scale"]), dtype=DTYPE)).log_prob(g["mu"]).sum()
        scale = dist.Gamma(torch.tensor(float(p["scale_shape"]), dtype=DTYPE),
                           torch.tensor(float(p["scale_rate"]), dtype=DTYPE)).log_prob(g["sigma"]).sum()
        corr = dist.LKJCholesky(d, torch.tensor(float(p["lkj_concentration"]), dtype=DTYPE)).log_prob(g["omega"]).sum()
        return pi_log_prior(log_g["pi"], p["alpha_prior"]) + mean + scale + corr

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        z = obs["logits"].reshape(len(obs["logits"]), -1)
        log_lik = student_t_log_lik(z, g["mu"], g["sigma"], g["omega"], float(p["df"]))
        return log_g["pi"].unsqueeze(-2) + with_evidence(obs, scaled(lik_weight, log_lik))

    confusion_reads_items = True

    def confusion(self, g, data, item_probs):
        """P(weak model's argmax = l | true class k), from the posterior item labels, over the
        items where that model names a label (a tied output casts no vote, as in
        :meth:`WeakLabels.votes`; a masked item none)."""
        logits = data.obs["logits"]
        full = torch.cat([logits, torch.zeros_like(logits[..., :1])], -1).softmax(-1)      # [R, M, K]
        top = full >= full.amax(-1, keepdim=True) - TIE_TOL                                # ties as in votes()
        voted = (top.sum(-1) == 1).to(DTYPE) * data.obs["informative"][:, None]            # [R, M]
        onehot = torch.nn.functional.one_hot(full.argmax(-1), full.shape[-1]).to(DTYPE) * voted.unsqueeze(-1)
        counts = torch.einsum("rk,rm->km", item_probs, voted).clamp_min(1e-12)             # [K, M]
        conf = torch.einsum("rk,rml->kml", item_probs, onehot) / counts.unsqueeze(-1)
        return conf.reshape(1, 1, *conf.shape)

    def init(self, data, p, seed=0):
        logits = data.obs["logits"]
        probs = torch.cat([logits, torch.zeros_like(logits[..., :1])], -1).softmax(-1)
        return self.m_step(data, masked(probs.mean(1), data.mask), None, p)

    def m_step(self, data, q, g, p, steps: int = 30):
        """EM with the t's latent scales (Liu & Rubin, 1995): given the current globals each
        (item, class) gets the expected precision weight u = (ν + D) / (ν + mahalanobis);
        then π and each μ_k at their conditional modes given Σ (Gaussian–Gaussian with
        weights q·u), then (σ, L_Ω) by L-BFGS on the weighted scatter (an ECM step)."""
        z = data.obs["logits"].reshape(data.num_rows, -1)
        wq = q * data.weight.unsqueeze(-1)
        k, d = wq.shape[-1], z.shape[-1]
        df = float(p["df"])
        pi = dirichlet_mode(pi_counts(wq) + float(p["alpha_prior"]))
        lik_w = evidence_weights(data.obs, wq)          # masked items inform π only
        eye = torch.eye(d, dtype=DTYPE)
        if g is None:
            wu = lik_w
            sigma, omega = pooled_covariance(z, lik_w)
        else:
            sigma, omega = g["sigma"], g["omega"]
            mahal, _ = mahalanobis(z, g["mu"], sigma, omega)
            wu = lik_w * (df + d) / (df + mahal)
        nk = wu.sum(0)                                                                 # [K]
        sk = wu.T @ z                                                                  # [K, D]
        precision = torch.cholesky_inverse(sigma.unsqueeze(-1) * omega)
        tau2 = float(p["mean_scale"]) ** 2
        m0 = prior_means(k, d // (k - 1), p["mean_offset"])
        a = nk[:, None, None] * precision + eye / tau2                                 # [K, D, D]
        mu = torch.linalg.solve(a, (sk @ precision + m0 / tau2).unsqueeze(-1)).squeeze(-1)
        sigma, omega = fit_covariance(scatter(z, mu, wu), lik_w.sum(), sigma, omega, p, steps)
        return {"pi": pi, "mu": mu, "sigma": sigma, "omega": omega}


def pooled_covariance(z: torch.Tensor, wq: torch.Tensor):
    """``(σ, L_Ω)`` of the pooled within-class covariance around the q-weighted class means:
    where EM starts the scale matrix."""
    centre = (wq.T @ z) / wq.sum(0).clamp_min(1e-12).unsqueeze(-1)
    cov = scatter(z, centre, wq) / wq.sum() + 1e-6 * torch.eye(z.shape[-1], dtype=z.dtype)
    sigma = cov.diagonal().sqrt()
    return sigma, torch.linalg.cholesky(cov / sigma.unsqueeze(-1) / sigma.unsqueeze(-2))


def scatter(z: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k Σ_r w_rk (z_r − c_k)(z_r − c_k)ᵀ."""
    diff = z.unsqueeze(1) - centres.unsqueeze(0)                                       # [R, K, D]
    return torch.einsum("rk,rkd,rke->de", weights, diff, diff)


def fit_covariance(scatter_matrix, total, sigma, omega, p, steps):
    """argmax over (σ, L_Ω) of −W/2 log|Σ| − ½ tr(Σ⁻¹ S) + log Gamma(σ) + log LKJ(L_Ω)."""
    def neg_log_lik(tril, log_det):
        half = torch.linalg.solve_triangular(tril, scatter_matrix, upper=False)
        trace = torch.linalg.solve_triangular(tril, half.T, upper=False).diagonal().sum()
        return 0.5 * total * log_det() + 0.5 * trace
    return fit_scale_matrix(neg_log_lik, sigma, omega, p, steps)


def fit_scale_matrix(neg_log_lik, sigma, omega, p, steps):
    """argmax over (σ, L_Ω) of −neg_log_lik(L = diag(σ) L_Ω, log|Σ|) + log Gamma(σ) + log LKJ(L_Ω),
    by L-BFGS from (σ, L_Ω) in unconstrained coordinates (an ECM step: never downhill). ``log|Σ|``
    is passed as a function, so that each caller keeps its own order of operations (the order in
    which autograd sums the gradients, and so the fits, bit for bit)."""
    d = sigma.shape[-1]
    corr = biject_to(constraints.corr_cholesky)
    u_sigma = sigma.log().clone().requires_grad_(True)
    u_omega = corr.inv(omega).clone().requires_grad_(True)
    # no argument validation: a line-search step that overflows gives a NaN loss (checked
    # below) instead of an exception from deep inside torch.distributions
    gamma = dist.Gamma(torch.tensor(float(p["scale_shape"]), dtype=DTYPE),
                       torch.tensor(float(p["scale_rate"]), dtype=DTYPE), validate_args=False)
    lkj = dist.LKJCholesky(d, torch.tensor(float(p["lkj_concentration"]), dtype=DTYPE), validate_args=False)
    opt = torch.optim.LBFGS([u_sigma, u_omega], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s, om = u_sigma.exp(), corr(u_omega)

        def log_det():
            return 2 * (s.log().sum() + om.diagonal().log().sum())
        loss = neg_log_lik(s.unsqueeze(-1) * om, log_det) - gamma.log_prob(s).sum() - lkj.log_prob(om)
        loss.backward()
        return loss
    opt.step(closure)
    new_sigma, new_omega = u_sigma.detach().exp(), corr(u_omega.detach())
    if not (torch.isfinite(new_sigma).all() and torch.isfinite(new_omega).all()):
        # the line search left the valid region (weak log-odds piled at ±log((1−ε)/ε), e.g. a
        # hard 0/1 rule): keep this conditional step's start, so EM still never goes downhill
        return sigma, omega
    return new_sigma, new_omega
