"""What every classification posterior model shares: the true-class site (with gold
items observed), the vote-count likelihood, data preparation and the fitted summary.

Layout, shared so that EM, VB, SVI, NUTS and ArviZ treat every model alike:

* plate ``"weak_models"`` (dim −1, size M) and plate ``"classes"`` (dim −2, size K) hold
  the global reliability parameters, stored as ``[K, M, ...]`` so that indexing them
  with the true class lines up with the observation plates;
* plate ``"items"`` (dim −2, size N, subsampled for large N) holds the true class
  ``c_n``, a discrete site enumerated in parallel (``TraceEnum_ELBO``, NUTS) or drawn by
  ``infer_discrete``; on gold items (``gold[n] ≥ 0``) a factor restricts it to the known
  class, so c is observed there (semi-supervised fitting);
* the observation site ``"y"`` sits in ``items × weak_models``.

Vote models observe ``counts[n, m, l]``, how often weak model m gave item n label l.
All-zero rows are abstentions (or models that never saw the item) and contribute
nothing; a worker who labelled an item twice contributes both votes. The site is a
multinomial whose total count is that row's sum (:class:`VoteCounts`): its log-density
is ``Σ_l counts·log θ`` plus a constant, exactly the Dawid–Skene likelihood.
"""
from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from ...errors import InvalidInputError
from ...weak.labels import TIE_TOL
from ..engine import (DTYPE, Fit, ModelData, PosteriorModel, compress_rows, dirichlet_log_density,
                      draw_local_latents, gold_mask, masked_log_joint)

#: draws summarised at a time (bounds the [draws, rows, latent] tensors)
CHUNK = 64


def confusion_prior(num_classes: int, beta_diag: float, beta_off: float, dtype=DTYPE) -> torch.Tensor:
    """``[K, K]`` Dirichlet concentrations of the confusion rows: β_diag on the diagonal
    (one cached constant per setting; never modify it in place)."""
    return _confusion_prior(int(num_classes), float(beta_diag), float(beta_off), dtype)


@functools.lru_cache(maxsize=64)
def _confusion_prior(k: int, beta_diag: float, beta_off: float, dtype) -> torch.Tensor:
    return torch.full((k, k), beta_off, dtype=dtype) + torch.eye(k, dtype=dtype) * (beta_diag - beta_off)


@functools.lru_cache(maxsize=64)
def constant(shape: tuple, value: float) -> torch.Tensor:
    """A cached constant tensor (prior concentrations); never modify it in place."""
    return torch.full(shape, float(value), dtype=DTYPE)


def for_vindex(table: torch.Tensor, model_dims: int = 3, nest: int = 2) -> torch.Tensor:
    """``[*B, *T] -> [*B, 1 × nest, *T]``: outer-plate batch dims ``B`` (draws, particles)
    sit left of the model's ``nest`` plate dims that the index tensors broadcast over;
    ``T`` is the table's own ``model_dims`` trailing dims."""
    lead = table.shape[:table.dim() - model_dims]
    return table.reshape(lead + (1,) * nest + table.shape[table.dim() - model_dims:])


class VoteCounts(dist.TorchDistribution):
    """Multinomial over vote counts whose total may differ per (item, model) row.

    ``log_prob = Σ_l counts_l log p_l + log multinomial coefficient``; 0 for an all-zero
    row (abstention). Unlike ``torch``'s ``Multinomial`` it needs no single total count,
    and it computes the coefficient on the observed counts alone rather than on their
    broadcast against every enumerated class and posterior draw. It takes
    log-probabilities, so that the log is taken on the small confusion table before
    indexing. Observation only: no sampler.
    """

    arg_constraints = {"log_probs": constraints.real_vector}
    support = constraints.independent(constraints.nonnegative, 1)      # soft votes are fractional

    def __init__(self, log_probs: torch.Tensor, validate_args=None):
        self.log_probs = log_probs
        super().__init__(log_probs.shape[:-1], log_probs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return VoteCounts(self.log_probs.expand(torch.Size(batch_shape) + self.event_shape), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        coef = torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1)
        return (value * self.log_probs).sum(-1) + coef


def true_class(pi: torch.Tensor, gold: torch.Tensor | None, idx: torch.Tensor, items_dim: int = -2) -> torch.Tensor:
    """c_n ~ Cat(π), enumerated; on a gold item a factor keeps only its known class."""
    c = pyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})
    if gold is not None:
        g = gold[idx].reshape(-1, *([1] * (-1 - items_dim)))          # items at ``items_dim``
        pyro.factor("gold", torch.zeros((), dtype=pi.dtype).masked_fill((g >= 0) & (c != g), float("-inf")))
    return c


def observe_votes(counts: torch.Tensor, log_theta_of, pi: torch.Tensor, weak_models: pyro.plate,
                  subsample_size: int | None, gold: torch.Tensor | None = None):
    """Shared tail of the vote models: c_n ~ Cat(π); counts_n,m ~ Mult(θ[c_n, m]).

    ``log_theta_of(c)`` returns ``[..., N, M, K]`` log θ rows for the enumerated classes.
    """
    n = counts.shape[0]
    with pyro.plate("items", n, dim=-2, subsample_size=subsample_size) as idx:
        c = true_class(pi, gold, idx)
        with weak_models:
            pyro.sample("y", VoteCounts(log_theta_of(c)), obs=counts[idx])
    return c


def indexed_log_theta(theta: torch.Tensor, m: int):
    """``c ↦ log θ[c, m, :]`` for θ ``[..., K, M, K]`` (log taken on the small table)."""
    log_theta = theta.clamp_min(torch.finfo(theta.dtype).tiny).log()
    return lambda c: Vindex(for_vindex(log_theta))[..., c, torch.arange(m), :]


def votes_log_lik(counts: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """``[..., R, K]`` Σ_m Σ_l counts_rml log θ_kml for ``log_theta`` ``[..., K, M, K]``;
    one matmul over ``[R, M·K]`` (the multinomial coefficient is :func:`votes_log_coef`)."""
    r, m, k = counts.shape
    kk = log_theta.shape[-3]
    flat = log_theta.reshape(*log_theta.shape[:-3], kk, m * k).transpose(-1, -2)  # [..., M·L, K]
    return counts.reshape(r, m * k) @ flat


def sparse_votes(counts: torch.Tensor) -> dict:
    """``counts [R, M, K]`` as its nonzero entries: ``row`` (sorted), ``model``, ``label``,
    ``count`` (NumPy; a sparse crowd's dense counts are mostly zeros)."""
    row, model, label = np.nonzero(counts.numpy())
    return {"row": row, "model": model, "label": label, "count": counts.numpy()[row, model, label]}


def jax_votes_log_lik(obs: dict, log_theta, num_rows: int):
    """The JAX twin of :func:`votes_log_lik` on :func:`sparse_votes`: ``[R, K]``."""
    import jax

    per_vote = log_theta[:, obs["model"], obs["label"]] * obs["count"]          # [K, V]
    return jax.ops.segment_sum(per_vote.T, obs["row"], num_segments=num_rows, indices_are_sorted=True)


def votes_log_coef(counts: torch.Tensor) -> torch.Tensor:
    """``[R]`` Σ_m log multinomial coefficient; 0 when each model votes at most once."""
    return (torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)).sum(-1)


def present_models(lm) -> torch.Tensor:
    """``[N, M]`` 1.0 where weak model m's output on item n is not uniform (within
    :data:`~bayes_w2s.weak.labels.TIE_TOL`), 0.0 where it is: a uniform output is missing."""
    p = torch.as_tensor(lm.soft, dtype=DTYPE)
    return ((p.amax(-1) - p.amin(-1)) > TIE_TOL).to(DTYPE)


class ClassModel(PosteriorModel):
    """A posterior over each item's true class given its weak labels."""

    observes: ClassVar[str] = "votes"
    #: identical rows (vote patterns) are fitted once
    compress: ClassVar[bool] = True

    #: ``soft_votes=s``: each weak model casts s votes spread over the classes by its probabilities
    data_settings: ClassVar[dict] = {"soft_votes": None}

    # -- data --------------------------------------------------------------------------
    def observation(self, lm, soft_votes: float | None = None) -> dict:
        """Per-item observation tensors, keyed by the Pyro function's data arguments: the vote
        counts, or with ``soft_votes=s`` each weak model's probability vector times s.

        Soft votes are a fractional multinomial, Σ_l s·p_nml log θ_c,m,l: a weak model's second
        choices count, which a three-way tie of hard votes throws away. A uniform output casts
        no vote, as a tied one does among hard votes. ``experiments/results/soft_votes``
        measures s = 1, 3 and 10."""
        if soft_votes is None:
            return {"counts": torch.as_tensor(lm.counts, dtype=DTYPE)}
        if lm.soft is None:
            raise InvalidInputError(f"soft_votes needs each weak model's probabilities (WeakLabels); the "
                                    f"{self.name!r} model was given hard votes")
        return {"counts": float(soft_votes) * torch.as_tensor(lm.soft, dtype=DTYPE)
                * present_models(lm).unsqueeze(-1)}

    def num_latent(self, k: int, p: dict) -> int:
        return k

    def prepare(self, lm, p: dict, gold=None, fitting: bool = True, **settings) -> ModelData:
        """``fitting=False`` (``Posterior.predict_proba``): items without evidence are allowed
        to be all there is; each gets the class prior (or its gold class)."""
        full = self.observation(lm, **settings)
        n = len(lm.counts)
        if fitting and "counts" in full and not full["counts"].any():   # e.g. every weak output tied
            raise InvalidInputError(f"no weak model casts a vote on any item: the {self.name!r} model has nothing "
                                    "to fit")
        gold_t = None if gold is None else torch.as_tensor(gold, dtype=torch.long)
        if self.compress:
            parts = [v.reshape(n, -1) for v in full.values()]
            if gold_t is not None:
                parts.append((gold_t + 1).to(DTYPE).unsqueeze(-1))
            first, inverse, weight = compress_rows(parts[0] if len(parts) == 1 else torch.cat(parts, 1))
            rows = {key: v[first] for key, v in full.items()}
            row_gold = None if gold_t is None else gold_t[first]
        else:
            rows, inverse, weight, row_gold = full, None, torch.ones(n, dtype=DTYPE), gold_t
        kwargs = {"gold": gold_t} if gold_t is not None else {}
        if "informative" in full:   # items without evidence: their observation is masked (soft.informative_items)
            if fitting and not full["informative"].any():
                raise InvalidInputError(f"every item's weak outputs are uniform: the {self.name!r} model has no "
                                        "evidence to fit")
            kwargs["informative"] = full["informative"] > 0
        k = len(lm.label_names)
        classes = self.latent_class_of(k, p)
        mask = gold_mask(row_gold, self.num_latent(k, p), classes if classes is not None else torch.arange(k))
        return ModelData(rows, weight, inverse, tuple(full[a] for a in self.data_args), kwargs, mask, lm)

    def latent_class_of(self, k: int, p: dict) -> torch.Tensor | None:
        return None

    def local_classes(self, data: ModelData, p: dict) -> torch.Tensor | None:
        return self.latent_class_of(len(data.source.label_names), p)

    def row_log_coef(self, obs: dict):
        return votes_log_coef(obs["counts"]) if "counts" in obs else 0.0

    def observed(self, data: ModelData) -> np.ndarray:
        return data.fn_args[0].numpy()

    #: ArviZ dims of the observation (after ``item``)
    observed_dims: ClassVar[tuple] = ("weak_model", "weak_label")
    #: ArviZ dims of deterministic draws (``complete``)
    derived_dims: ClassVar[dict] = {"theta": ("true_class", "weak_model", "weak_label")}

    # -- reported quantities -------------------------------------------------------------
    #: the confusion is derived from the item posteriors (logistic-t), not a global site
    confusion_reads_items: ClassVar[bool] = False

    def confusion(self, g: dict, data: ModelData, item_probs: torch.Tensor) -> torch.Tensor:
        """``[..., K, M, K]`` P(weak label | true class) for draws ``g``."""
        return g["theta"]

    # -- summary ---------------------------------------------------------------------------
    def class_log_joint(self, data: ModelData, g: dict | None, log_g: dict, p: dict,
                        lik_weight: float = 1.0) -> torch.Tensor:
        """``[..., R, K]`` log p(c, y_r | globals): the latent's finer values summed per class."""
        return self.per_class(masked_log_joint(self, data, g, log_g, p, lik_weight), data, p)

    def per_class(self, lj: torch.Tensor, data: ModelData, p: dict) -> torch.Tensor:
        """``[..., R, C]`` over the local latent → ``[..., R, K]`` over classes (log-sum over
        EBCC's subtypes: latent index = class · L + subtype)."""
        classes = self.latent_class_of(len(data.source.label_names), p)
        if classes is None:
            return lj
        return torch.logsumexp(lj.reshape(*lj.shape[:-1], int(classes.max()) + 1, -1), -1)

    def local_posterior(self, data: ModelData, draws: dict, p: dict, temperature: float,
                        concentration: dict | None = None):
        """``([R, K] item posterior, [C, D, R] log p(y_r | globals))``.

        The item posterior is p(c | y, globals) ∝ π_c p(y | c, globals)^{1/T}, exact given
        each draw of the globals and averaged over draws (Rao–Blackwellised), or at the VB
        factors' expected logs when ``concentration`` is given (q(c) of mean-field VB).
        The temperature T only maps the fitted model's evidence to item posteriors (the
        globals are fitted untempered); the log-likelihood for LOO is untempered."""
        w = 1.0 / temperature
        probs = None
        if concentration is not None:
            elog = {s: torch.digamma(torch.as_tensor(a)) - torch.digamma(torch.as_tensor(a).sum(-1, keepdim=True))
                    for s, a in concentration.items()}
            probs = self.class_log_joint(data, None, elog, p, w).softmax(-1)
        lead = next(iter(draws.values())).shape[:2]
        flat = {s: v.reshape(-1, *v.shape[2:]) for s, v in draws.items()}
        total = lead[0] * lead[1]
        sums, log_marg = 0.0, []
        with torch.no_grad():
            for start in range(0, total, CHUNK):
                g = {s: v[start:start + CHUNK] for s, v in flat.items()}
                log_g = self.logs(g)
                lj = self.class_log_joint(data, g, log_g, p)
                if probs is None:
                    sums = sums + (lj if w == 1.0 else self.class_log_joint(data, g, log_g, p, w)).softmax(-1).sum(0)
                log_marg.append(torch.logsumexp(lj, -1) + self.row_log_coef(data.obs))
        if probs is None:
            probs = sums / total
        return probs, torch.cat(log_marg).reshape(*lead, -1)

    def item_probs(self, data: ModelData, fit: Fit, method: str, p: dict, temperature: float = 1.0) -> np.ndarray:
        """``[N, K]`` the fitted model's item posteriors at ``temperature``, without the rest of
        :meth:`summarise` (confusions, per-draw labels)."""
        concentration = fit.info.get("concentration") if method == "vb" else None
        with torch.no_grad():
            probs = self.local_posterior(data, fit.draws, p, temperature, concentration)[0]
        return (probs if data.inverse is None else probs[data.inverse]).numpy()

    def summarise(self, data: ModelData, fit: Fit, method: str, p: dict, temperature: float = 1.0):
        from ..base import Posterior

        lm = data.source
        draws = fit.draws
        concentration = fit.info.get("concentration") if method == "vb" else None
        probs, log_lik = self.local_posterior(data, draws, p, temperature, concentration)
        true_class = None
        if fit.info.get("draw_labels"):
            true_class = draw_local_latents(self, data, p, draws, temperature, fit.info.get("seed", 0))
        if data.inverse is not None:   # items share their vote pattern's log-likelihood (expanded on access)
            probs = probs[data.inverse]
        plain = probs   # reliabilities are the fitted model's: a derived confusion reads the T = 1 item posteriors
        if temperature != 1.0 and self.confusion_reads_items:
            plain = self.local_posterior(data, draws, p, 1.0, concentration)[0]
            plain = plain[data.inverse] if data.inverse is not None else plain
        with torch.no_grad():
            conf = self.confusion(draws, data, plain).transpose(-3, -2)                      # [C, D, M, K, K]
            mean = draws
            if concentration is not None:   # VB: q's exact means, not the mean of its draws (which moves with seed)
                mean = self.complete(self.from_concentration_modes(
                    {s: torch.as_tensor(a / a.sum(-1, keepdims=True)).unsqueeze(0) for s, a in concentration.items()}))
                mean = {s: v.unsqueeze(0) for s, v in mean.items()}
            conf_mean = conf if mean is draws else self.confusion(mean, data, plain).transpose(-3, -2)
        n_draws = conf.shape[0] * conf.shape[1]
        return Posterior(
            item_probs=probs.numpy(), confusion=conf_mean.mean((0, 1)).numpy(),
            confusion_sd=conf.flatten(0, 1).std(0).numpy() if n_draws > 1 else None,
            class_prior=mean["pi"].mean((0, 1)).numpy(), model_names=lm.model_names, label_names=lm.label_names,
            item_ids=lm.item_ids, model=self.name, method=method, history=list(fit.history), converged=fit.converged,
            draws={s: v.detach().numpy() for s, v in draws.items()}, log_lik_rows=log_lik.numpy(),
            row_of_item=None if data.inverse is None else data.inverse.numpy(),
            true_class=true_class, sample_stats=fit.sample_stats, observed=self.observed(data),
            info=dict(fit.info), priors=dict(p), temperature=temperature)


def masked(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``q`` restricted by a gold mask (0 / −∞) and renormalised."""
    if mask is None:
        return q
    allowed = mask.exp()
    q = q * allowed + 1e-9 * allowed          # a gold class no weak model voted for still gets mass
    return q / q.sum(-1, keepdim=True)


def vote_start(data: ModelData) -> torch.Tensor:
    """``[R, K]`` where fits start: each row's share of votes per class (the soft majority
    vote; uniform on a row without votes), gold rows at their class."""
    counts = data.obs["counts"]
    mask = data.mask
    if mask is not None and mask.shape[-1] != counts.shape[-1]:     # finer latents: class = index // L
        mask = mask.reshape(len(mask), counts.shape[-1], -1)[..., 0]
    per_class = counts.sum(1) + (counts.sum((1, 2)) == 0).unsqueeze(-1).to(counts.dtype)
    return masked(per_class / per_class.sum(-1, keepdim=True), mask)


def pi_log_prior(log_pi: torch.Tensor, alpha_prior: float) -> torch.Tensor:
    """log Dir(π | α_π 1_K)."""
    return dirichlet_log_density(constant(tuple(log_pi.shape[-1:]), alpha_prior), log_pi)


def pi_counts(wq: torch.Tensor) -> torch.Tensor:
    """``[K]`` expected class counts Σ_r w_r q_rk."""
    return wq.sum(0)
