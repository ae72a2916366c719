"""One object per posterior model, and EM / VB / SVI / NUTS / HMC written once over it.

A :class:`PosteriorModel` holds everything inference needs to know about a model:

* ``fn`` — the Pyro function, the single source of truth for the density (tests hold
  every closed form below to its trace);
* ``sites`` — the latent global sites with their supports and ArviZ dims;
* ``priors()`` — the prior settings, read from ``fn``'s signature and range-checked;
* ``log_prior`` — the one (normalised) log prior density, used by EM, VB and NUTS;
* ``log_joint`` — the closed-form ``log p(z_r = c, y_r | globals)`` of every data row and
  every value of the enumerated local latent (the true class, a (class, subtype) pair,
  or a slot's true word);
* ``init`` (the MAP starting point, in the mode where weak models beat chance) and
  ``m_step`` (optional: models with one have ``"em"``); conjugate models give
  ``expected_counts`` and ``prior_concentration`` instead, which yield both the MAP-EM
  M-step and closed-form mean-field variational Bayes (``"vb"``);
* ``summarise`` — the fitted :class:`~.base.Posterior` or :class:`~.words.WordPosterior`.

Adding a model is one module under :mod:`.models` and one line in its registry.

Label switching: every vote model is invariant to permuting the classes, so a sampler or
optimiser started anywhere may settle in a permuted mode (2,000 items, 5 weak models of
accuracy 0.55–0.8: an unguarded NUTS chain returns every diagonal below 0.5). Every fit
starts from ``init``, itself an M-step from the (soft) majority vote under a
diagonal-heavy prior, i.e. in the mode where weak models beat chance; with hundreds of
items the modes are far apart and a chain started in one stays there.
"""
from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyro
from joblib import Parallel, delayed
import torch
from pyro import poutine
from pyro.infer import HMC, MCMC, NUTS, SVI, TraceEnum_ELBO
from pyro.ops.stats import split_gelman_rubin
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value
from torch.distributions import biject_to, constraints
from tqdm.auto import tqdm

from ..errors import InvalidInputError, UnknownNameError

DTYPE = torch.float64
NEG_INF = float("-inf")


# -- data ---------------------------------------------------------------------------------

@dataclass
class ModelData:
    """What a model observes, ready for inference.

    Attributes:
        obs: row tensors the closed forms read (``[R, ...]`` each).
        weight: ``[R]`` how many items each row stands for (identical rows are fitted once).
        inverse: ``[N]`` the row of each item, or ``None`` when rows are items.
        fn_args / fn_kwargs: the Pyro function's data arguments, over all items.
        mask: ``[R, C]`` additive log-mask of the local latent (0, or −∞ off a gold class).
        source: the input container (``LabelMatrix`` or ``SlotTable``), for summaries.
    """

    obs: dict
    weight: torch.Tensor
    inverse: torch.Tensor | None
    fn_args: tuple
    fn_kwargs: dict = field(default_factory=dict)
    mask: torch.Tensor | None = None
    source: Any = None

    @property
    def num_rows(self) -> int:
        return int(self.weight.shape[0])


def compress_rows(key: torch.Tensor):
    """Distinct rows of ``key [N, F]``: ``(first index, inverse, count)``.

    With M weak models and K classes there are at most (K+1)^M vote patterns however
    large N is, so EM on a million items costs a handful of thousand-row matmuls. Integer
    rows are coded as one float64 (exact below 2^52) and factorised by hashing, linear in N;
    other rows (soft votes) are compared whole, since a code would merge distinct fractional
    rows (at base 1, every soft-vote row of one total).
    """
    import pandas as pd

    n = key.shape[0]
    flat = key.reshape(n, -1).to(DTYPE)
    base = float(flat.max()) + 1 if flat.numel() else 1.0   # a float: huge soft-vote counts overflow int64
    integral = bool(torch.equal(flat, flat.round()))
    if integral and flat.shape[1] * math.log2(max(base, 2.0)) < 52:   # codes exact in float64: one BLAS matmul
        codes = (flat @ (base ** torch.arange(flat.shape[1], dtype=DTYPE))).numpy()
        inverse, uniques = pd.factorize(codes, sort=True)
        freq = np.bincount(inverse, minlength=len(uniques))
        first = np.full(len(uniques), n, dtype=np.int64)
        np.minimum.at(first, inverse, np.arange(n))
    elif flat.numel() > HASH_ROWS_ABOVE:
        first, inverse, freq = _hashed_rows(flat.numpy())
    else:
        _, first, inverse, freq = np.unique(flat.numpy(), axis=0, return_index=True, return_inverse=True,
                                            return_counts=True)
    return torch.as_tensor(first), torch.as_tensor(inverse.reshape(-1)), torch.as_tensor(freq, dtype=DTYPE)


#: above this many cells np.unique's sort of whole rows dominates a sparse crowd's EM (20k
#: tasks × 500 workers × 3 classes: 3.6 of 7.3 s, finding no repeated row); smaller inputs keep
#: its exact, lexicographic order of patterns, which seeded NUTS draws depend on
HASH_ROWS_ABOVE = 5_000_000


def _hashed_rows(flat: np.ndarray):
    """``(first, inverse, count)`` of distinct rows found by two random projections, then
    checked: rows merged under one code are verified identical (else the exact sort runs).
    Identical rows that round differently stay apart, which costs compression, not accuracy."""
    proj = np.random.default_rng(0).standard_normal((flat.shape[1], 2))
    _, first, inverse, freq = np.unique(flat @ proj, axis=0, return_index=True, return_inverse=True,
                                        return_counts=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(flat[first][inverse], flat):
        _, first, inverse, freq = np.unique(flat, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse.reshape(-1), freq


def gold_mask(gold: torch.Tensor | None, num_latent: int, latent_class: torch.Tensor) -> torch.Tensor | None:
    """``[N, C]`` 0 where latent value c is compatible with the item's gold class, −∞ elsewhere."""
    if gold is None:
        return None
    allowed = (gold.unsqueeze(-1) < 0) | (latent_class == gold.unsqueeze(-1))
    return torch.zeros(len(gold), num_latent, dtype=DTYPE).masked_fill(~allowed, NEG_INF)


# -- priors ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PriorSpec:
    """The valid range of one prior setting.

    ``low`` is exclusive unless ``closed``; ``map_low`` is the (inclusive) bound below which
    the posterior mode does not exist (a Dirichlet or Beta concentration below 1 makes the
    density unbounded at the edge of the simplex), checked for point estimates only.
    """

    low: float = 0.0
    closed: bool = False
    high: float = math.inf
    map_low: float | None = None
    integer: bool = False
    help: str = ""

    def check(self, model: str, name: str, value, point_estimate: bool):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInputError(f"{model}: prior {name} must be a number, got {value!r}")
        value = float(value)
        if self.integer and value != int(value):
            raise InvalidInputError(f"{model}: {name} must be an integer, got {value}")
        low_ok = value >= self.low if self.closed else value > self.low
        if not math.isfinite(value) or not low_ok or value > self.high:
            bound = f"{'≥' if self.closed else '>'} {self.low}" + (f" and ≤ {self.high}" if self.high < math.inf else "")
            raise InvalidInputError(f"{model}: prior {name} = {value} is out of range; it must be {bound}"
                                    + (f" ({self.help})" if self.help else ""))
        if point_estimate and self.map_low is not None and value < self.map_low:
            raise InvalidInputError(
                f"{model}: {name} = {value} < {self.map_low}: the posterior mode does not exist (the density is "
                "unbounded at the edge of the simplex), so EM / a delta guide cannot fit it; use method='vb' where "
                "the model has it, method='nuts', or svi with guide='normal'")
        return int(value) if self.integer else value


@dataclass(frozen=True)
class CountsSpec:
    """An optional array of non-negative pseudo-counts added to a Dirichlet prior."""

    help: str = ""

    def check(self, model: str, name: str, value, point_estimate: bool):
        if value is None:
            return None
        try:
            arr = torch.as_tensor(np.asarray(value, dtype=float), dtype=DTYPE)
        except (TypeError, ValueError):   # strings, ragged lists: a raw ValueError before
            raise InvalidInputError(f"{model}: {name} must be an array of counts, got {value!r}") from None
        if not torch.isfinite(arr).all() or (arr < 0).any():
            raise InvalidInputError(f"{model}: {name} must be finite, non-negative counts")
        return arr


#: ordinary positive concentration whose MAP needs ≥ 1
CONCENTRATION = PriorSpec(low=0.0, map_low=1.0, help="a Dirichlet/Beta concentration")
POSITIVE = PriorSpec(low=0.0)
REAL = PriorSpec(low=-math.inf)


def check_temperature(temperature) -> float:
    """A valid temperature of the item posterior (see :func:`~bayes_w2s.posterior.fit_posterior`)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise InvalidInputError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def check_counts(**counts) -> None:
    """Each ``name=(value, least)``: an integer (not a bool) ≥ ``least``, else a clear error."""
    for name, (value, low) in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"{name} must be an integer ≥ {low}, got {value!r}")


# -- supports: unconstrained coordinates for MCMC -------------------------------------------

SIMPLEX, POSITIVE_SUPPORT, UNIT, REAL_SUPPORT, CORR_CHOLESKY = "simplex", "positive", "unit", "real", "corr_cholesky"


@dataclass(frozen=True)
class Site:
    """A latent global site: its support and the ArviZ dims of one draw (model layout;
    ``"_"`` marks a singleton plate dim that the export drops)."""

    support: str
    dims: tuple = ()


def to_constrained(support: str, u: torch.Tensor):
    """``(value, log value, log |Jacobian|)`` of the unconstrained ``u``.

    Simplexes use additive log-ratio coordinates, p = softmax([u, 0]), whose log-Jacobian is
    Σ_k log p_k; with a Dirichlet density it folds into Σ α log p, a handful of tensor ops
    per evaluation (stick-breaking costs several times more on small tensors). A unit-interval
    site's "log value" is ``[..., 2]``: (log x, log(1 − x)).
    """
    if support == SIMPLEX:
        log_p = torch.log_softmax(torch.cat([u, torch.zeros_like(u[..., :1])], -1), -1)
        return log_p.exp(), log_p, log_p.sum()
    if support == POSITIVE_SUPPORT:
        return u.exp(), u, u.sum()
    if support == UNIT:
        log_x, log_1mx = torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)
        return log_x.exp(), torch.stack([log_x, log_1mx], -1), (log_x + log_1mx).sum()
    if support == REAL_SUPPORT:
        return u, None, u.new_zeros(())
    if support == CORR_CHOLESKY:
        t = biject_to(constraints.corr_cholesky)
        value = t(u)
        return value, None, t.log_abs_det_jacobian(u, value).sum()
    raise UnknownNameError(f"unknown support {support!r}")


def to_unconstrained(support: str, x: torch.Tensor) -> torch.Tensor:
    if support == SIMPLEX:
        log_p = x.clamp_min(1e-300).log()
        return log_p[..., :-1] - log_p[..., -1:]
    if support == POSITIVE_SUPPORT:
        return x.log()
    if support == UNIT:
        return torch.logit(x)
    if support == REAL_SUPPORT:
        return x
    if support == CORR_CHOLESKY:
        return biject_to(constraints.corr_cholesky).inv(x)
    raise UnknownNameError(f"unknown support {support!r}")


def log_values(sites: dict, g: dict) -> dict:
    """The logs the closed forms read (see :func:`to_constrained`), from constrained values."""
    out = {}
    for name, site in sites.items():
        v = g[name]
        if site.support in (SIMPLEX, POSITIVE_SUPPORT):
            out[name] = v.clamp_min(1e-300).log()
        elif site.support == UNIT:
            out[name] = torch.stack([v.clamp_min(1e-300).log(), torch.log1p(-v.clamp_max(1 - 1e-16))], -1)
        else:
            out[name] = None
    return out


# -- the model object -----------------------------------------------------------------------

class PosteriorModel:
    """Base class: one subclass per posterior model (see the module docstring).

    Subclasses set the class attributes and implement ``prepare``, ``log_prior``,
    ``log_joint``, ``init`` and either ``m_step`` or the conjugate pair
    ``expected_counts`` / ``prior_concentration``.
    """

    name: ClassVar[str]
    observes: ClassVar[str]                  # "votes" | "probs" | "words"
    sites: ClassVar[dict[str, Site]]
    methods: ClassVar[tuple[str, ...]]
    prior_specs: ClassVar[dict[str, PriorSpec]]
    max_plate_nesting: ClassVar[int] = 2
    #: data arguments of ``fn`` (everything else in its signature is a prior setting)
    data_args: ClassVar[tuple[str, ...]] = ("counts",)
    #: settings of how the observations are prepared (e.g. the soft models' ``eps``), with defaults
    data_settings: ClassVar[dict] = {}
    #: False when the posterior has no mode (EM / a delta guide cannot fit it)
    point_estimate: ClassVar[bool] = True
    #: SVI's guide when none is given
    default_guide: ClassVar[str] = "delta"
    #: VB starts (a multimodal ELBO needs several)
    vb_starts: ClassVar[int] = 1

    @staticmethod
    def fn(*args, **kwargs):   # pragma: no cover - every subclass sets its Pyro function
        raise NotImplementedError

    # -- priors ------------------------------------------------------------------------
    def prior_defaults(self) -> dict:
        params = inspect.signature(self.fn).parameters
        skip = set(self.data_args) | {"subsample_size", "gold", "informative"}
        return {n: p.default for n, p in params.items() if n not in skip}

    def priors(self, overrides: dict | None = None, point_estimate: bool = False) -> dict:
        """The function's prior defaults updated by ``overrides``; unknown names and values
        outside each prior's valid range fail with a message naming them."""
        defaults = self.prior_defaults()
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise InvalidInputError(f"unknown prior setting(s) {sorted(unknown)} for the {self.name!r} model; "
                                    f"it has {sorted(defaults)}")
        out = {**defaults, **overrides}
        return {k: self.prior_specs[k].check(self.name, k, v, point_estimate) for k, v in out.items()}

    # -- densities ---------------------------------------------------------------------
    def logs(self, g: dict) -> dict:
        return log_values(self.sites, g)

    def log_prior(self, g: dict, log_g: dict, p: dict) -> torch.Tensor:
        """log p(globals) at one point. Conjugate models need not write it: it is
        Σ_s log Dir(site_s | its prior concentration), from ``prior_concentration``, so their
        prior is written once (and its constants are built once per fit, not per NUTS step)."""
        if not self.conjugate:
            raise NotImplementedError
        conc = self._prior_constants(p, {s: tuple(log_g[s].shape) for s in self.sites})
        return sum(dirichlet_log_density(conc[s], log_g[s]).sum() for s in conc)

    def _prior_constants(self, p: dict, shapes: dict) -> dict:
        key = tuple(sorted(shapes.items()))
        cached = self.__dict__.get("_prior_cache")
        if cached is None or cached[0] is not p or cached[1] != key:
            cached = self._prior_cache = (p, key, self.prior_concentration(p, shapes))
        return cached[2]

    def log_joint(self, obs: dict, g: dict, log_g: dict, p: dict, lik_weight: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    def row_log_coef(self, obs: dict) -> torch.Tensor | float:
        """``[R]`` the part of log p(y_r) that involves no parameter (multinomial coefficients)."""
        return 0.0

    def local_classes(self, data: ModelData, p: dict) -> torch.Tensor | None:
        """``[C]`` what to report for each value of the local latent (its class, for a
        finer latent such as EBCC's (class, subtype)); ``None``: the value itself."""
        return None

    # -- fitting hooks -----------------------------------------------------------------
    @property
    def conjugate(self) -> bool:
        return type(self).expected_counts is not PosteriorModel.expected_counts

    def expected_counts(self, obs: dict, wq: torch.Tensor) -> dict:
        raise NotImplementedError

    def prior_concentration(self, p: dict, shape_of: dict) -> dict:
        raise NotImplementedError

    def from_concentration_modes(self, modes: dict) -> dict:
        """Globals from the modes of the conjugate sites (one-coin: accuracy = mode[..., 0])."""
        return modes

    def m_step(self, data: ModelData, q: torch.Tensor, g: dict | None, p: dict) -> dict:
        """Default M-step of conjugate models: each Dirichlet site at the mode of its full
        conditional, (α₀ + n − 1) / Σ(α₀ + n − 1); a row with no mass left is uniform."""
        counts = self.expected_counts(data.obs, q * data.weight.unsqueeze(-1))
        conc = self.prior_concentration(p, {s: c.shape for s, c in counts.items()})
        return self.from_concentration_modes({s: dirichlet_mode(conc[s] + counts[s]) for s in counts})

    def init(self, data: ModelData, p: dict, seed: int = 0) -> dict:
        """The MAP starting point in the non-switched mode."""
        raise NotImplementedError

    def em_starts(self, data: ModelData, p: dict, restarts: bool, seed: int) -> list[dict]:
        return [self.init(data, p, seed)]

    def fn_call(self, data: ModelData, p: dict, **extra):
        """A zero-argument call of the Pyro model on ``data``."""
        def call():
            return self.fn(*data.fn_args, **data.fn_kwargs, **p, **extra)
        return call

    def complete(self, g: dict) -> dict:
        """Add deterministic quantities (one-coin's θ) so that draws carry every reported one."""
        return g

    def prepare(self, labels, **settings) -> ModelData:
        raise NotImplementedError

    def summarise(self, data: ModelData, draws: dict, method: str, p: dict, temperature: float, **extra):
        raise NotImplementedError


def dirichlet_mode(a: torch.Tensor) -> torch.Tensor:
    x = (a - 1.0).clamp_min(0.0)
    total = x.sum(-1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[-1])
    return torch.where(total > 0, x / total.clamp_min(1e-300), uniform).clamp_min(1e-300)


#: id(constant concentration) -> (the tensor, its log normaliser): NUTS evaluates the prior
#: thousands of times at the same constants
_NORMALISERS: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def dirichlet_log_density(alpha: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """log Dir(p | α) from log p (batched over leading dims)."""
    if alpha.requires_grad:
        norm = torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)
    else:
        hit = _NORMALISERS.get(id(alpha))
        if hit is None or hit[0] is not alpha:
            if len(_NORMALISERS) > 4096:
                _NORMALISERS.clear()
            hit = _NORMALISERS[id(alpha)] = (alpha, torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1))
        norm = hit[1]
    return ((alpha - 1) * log_p).sum(-1) + norm


def scaled(weight: float, x: torch.Tensor) -> torch.Tensor:
    """``weight · x``, without an op when the weight is 1 (the untempered likelihood)."""
    return x if weight == 1.0 else weight * x


class LazyValues(dict):
    """Site values computed from their logs on first use: the vote models' densities read
    only log θ, so NUTS need not exponentiate the simplexes at every step."""

    def __init__(self, log_g: dict):
        super().__init__()
        self.log_g = log_g

    def __missing__(self, name):
        value = self[name] = self.log_g[name].exp()
        return value


def dirichlet_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(Dir(a) ‖ Dir(b)) summed over all leading dims."""
    a0, b0 = a.sum(-1), b.sum(-1)
    out = (torch.lgamma(a0) - torch.lgamma(a).sum(-1) - torch.lgamma(b0) + torch.lgamma(b).sum(-1)
           + ((a - b) * (torch.digamma(a) - torch.digamma(a0).unsqueeze(-1))).sum(-1))
    return out.sum()


# -- EM ---------------------------------------------------------------------------------------

@dataclass
class Fit:
    """What an inference routine hands to ``model.summarise``."""

    draws: dict
    history: list
    converged: bool
    info: dict = field(default_factory=dict)
    sample_stats: dict = field(default_factory=dict)
    true_class: np.ndarray | None = None


def masked_log_joint(model: PosteriorModel, data: ModelData, g: dict, log_g: dict, p: dict,
                     lik_weight: float = 1.0) -> torch.Tensor:
    lj = model.log_joint(data.obs, g, log_g, p, lik_weight)
    return lj if data.mask is None else lj + data.mask


def fit_em(model: PosteriorModel, data: ModelData, p: dict, *, max_iter: int = 500, tol: float = 1e-8,
           restarts: bool = True, seed: int = 0, progress: bool = False) -> Fit:
    """MAP-EM: the mode of p(globals | y), the local latents summed out.

    Each iteration computes the log joint at the current globals (recorded in
    ``history``; it never decreases) and the posterior of the local latents, then the
    model's M-step. Models with several starts (the word models' restarts) keep the run
    with the highest final log joint.
    """
    check_counts(max_iter=(max_iter, 1))
    runs = []
    for g in model.em_starts(data, p, restarts, seed):
        history, converged = [], False
        for _ in tqdm(range(max_iter), desc=f"EM {model.name}", disable=not progress, leave=False):
            with torch.no_grad():
                lj = masked_log_joint(model, data, g, model.logs(g), p)
                norm = torch.logsumexp(lj, -1, keepdim=True)
                objective = float((data.weight * norm.squeeze(-1)).sum() + model.log_prior(g, model.logs(g), p))
                q = (lj - norm).exp()
            if not math.isfinite(objective):
                raise InvalidInputError(f"{model.name}/em: the log joint became {objective}; check the priors "
                                        f"({p}) and the input")
            done = bool(history) and abs(objective - history[-1]) <= tol * max(1.0, abs(objective))
            history.append(objective)
            if done:
                converged = True
                break
            g = model.m_step(data, q, g, p)
            bad = [s for s, v in g.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
            if bad:   # log_prior's argument validation failed on them with a tensor dump
                raise InvalidInputError(
                    f"{model.name}/em: the M-step gave non-finite {bad} after {len(history)} iterations: the data "
                    "leave a parameter undetermined (e.g. weak outputs that lie on a line within a class, as "
                    "label-smoothed ones whose wrong classes share equal probability, give a singular scale "
                    "matrix); try a model with fewer parameters (logistic_t, dawid_skene) or stronger priors")
        runs.append((g, history, converged))
    finals = [h[-1] for _, h, _ in runs]
    best = int(np.argmax(finals))
    g, history, converged = runs[best]
    info = {"rows": data.num_rows}
    if len(runs) > 1:
        info.update(start_log_joints=finals, best_start=best)
    return Fit(point_draws(model.complete(g)), history, converged, info)


def point_draws(g: dict) -> dict:
    return {s: v.detach().reshape(1, 1, *v.shape) for s, v in g.items()}


# -- VB ---------------------------------------------------------------------------------------

def fit_vb(model: PosteriorModel, data: ModelData, p: dict, *, max_iter: int = 1000, tol: float = 1e-8,
           num_starts: int | None = None, num_draws: int = 200, seed: int = 0, progress: bool = False) -> Fit:
    """Mean-field variational Bayes, q(globals) q(latents), by coordinate ascent.

    For conjugate models every global site's optimal factor is a Dirichlet, Dir(α₀ + n),
    with n the expected counts under q(latents); q(latents) ∝ exp E_q[log p(z, y | globals)],
    which needs only E[log θ] = ψ(a) − ψ(Σa). The ELBO, Σ_r log Σ_c exp E[log p(c, y_r)] −
    KL(q(globals) ‖ p(globals)), never decreases (recorded in ``history``). Unlike the MAP,
    E[log θ] discounts parameters learnt from few labels, so sparse annotators are not
    trusted more than their data allow (Kim & Ghahramani, 2012; Li et al., 2019).
    ``num_starts`` runs from that many seeded starts (default: the model's ``vb_starts``),
    screens each for a few iterations and runs the best to convergence: EBCC's subtypes
    make the ELBO multimodal. ``num_draws`` draws of q(globals) are kept for ArviZ and LOO;
    the item posterior is q(c) at the final factors.
    """
    if not model.conjugate:
        raise UnknownNameError(f"posterior model {model.name!r} has no closed-form VB (it is not conjugate)")
    starts = model.vb_starts if num_starts is None else num_starts
    check_counts(max_iter=(max_iter, 1), num_starts=(starts, 1))

    def start(r):
        g = model.init(data, p, seed + r)
        with torch.no_grad():
            return masked_log_joint(model, data, g, model.logs(g), p).softmax(-1)
    # several starts: screen each for a few iterations, then run the best one to convergence
    screen = max_iter if starts == 1 else min(max_iter, SCREEN_ITERATIONS)
    runs = [_vb_from(model, data, p, start(r), screen, tol, progress) for r in range(starts)]
    best = int(np.argmax([history[-1] for _, _, history, _ in runs]))
    a, q, history, converged = runs[best]
    if not converged and screen < max_iter:
        a, q, more, converged = _vb_from(model, data, p, q, max_iter - screen, tol, progress)
        history = history + more
    gen = torch.Generator().manual_seed(seed)
    draws = {}
    for s, v in a.items():
        gamma = torch._standard_gamma(v.expand(num_draws, *v.shape).contiguous(), generator=gen)
        draws[s] = gamma / gamma.sum(-1, keepdim=True)
    draws = model.complete(model.from_concentration_modes(draws))
    draws = {s: v.unsqueeze(0) for s, v in draws.items()}
    info = {"rows": data.num_rows, "concentration": {s: v.numpy() for s, v in a.items()}}
    if starts > 1:
        info.update(start_elbos=[h[-1] for _, _, h, _ in runs], best_start=best, screen_iterations=screen)
    return Fit(draws, history, converged, info)


#: iterations each VB start gets before the best one is run to convergence
SCREEN_ITERATIONS = 100


def _vb_from(model, data, p, q, max_iter, tol, progress):
    """Coordinate ascent from the latents' posterior ``q``: ``(factors' concentrations,
    q(latents), ELBOs, converged)``."""
    history, converged, conc, a = [], False, None, None
    for _ in tqdm(range(max_iter), desc=f"VB {model.name}", disable=not progress, leave=False):
        with torch.no_grad():
            counts = model.expected_counts(data.obs, q * data.weight.unsqueeze(-1))
            if conc is None:
                conc = model.prior_concentration(p, {s: c.shape for s, c in counts.items()})
            a = {s: conc[s] + counts[s] for s in counts}
            elog = {s: torch.digamma(v) - torch.digamma(v.sum(-1, keepdim=True)) for s, v in a.items()}
            lj = masked_log_joint(model, data, None, elog, p)
            norm = torch.logsumexp(lj, -1, keepdim=True)
            elbo = float((data.weight * norm.squeeze(-1)).sum() - sum(dirichlet_kl(a[s], conc[s].expand_as(a[s]))
                                                                        for s in a))
            q = (lj - norm).exp()
        done = bool(history) and abs(elbo - history[-1]) <= tol * max(1.0, abs(elbo))
        history.append(elbo)
        if done:
            converged = True
            break
    return a, q, history, converged


# -- SVI --------------------------------------------------------------------------------------

def fit_svi(model: PosteriorModel, data: ModelData, p: dict, *, guide: str = "delta", steps: int = 1000,
            learning_rate: float = 0.02, subsample_size: int | None = None, num_draws: int = 500,
            seed: int = 0, progress: bool = True) -> Fit:
    """Stochastic variational inference with ``TraceEnum_ELBO`` (local latents summed out).

    ``guide="delta"`` (``AutoDelta``) gives the MAP, the same optimum as EM; ``"normal"``
    (``AutoNormal``, mean-field in the unconstrained space) gives spread and ``num_draws``
    draws. ``subsample_size`` subsamples the items plate (minibatch SVI for large N); one of
    N items or more is the full batch.
    """
    if guide not in ("delta", "normal"):
        raise InvalidInputError(f"guide must be 'delta' or 'normal', got {guide!r}")
    check_counts(steps=(steps, 1))
    sites = list(model.sites)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    init = {s: v for s, v in model.init(data, p, seed).items() if s in sites}
    items = data.num_rows if data.inverse is None else len(data.inverse)
    if subsample_size is not None and subsample_size >= items:
        subsample_size = None          # Pyro's plate rejects a subsample larger than the plate
    call = model.fn_call(data, p, subsample_size=subsample_size)
    blocked = poutine.block(call, expose=sites)
    auto = (AutoDelta if guide == "delta" else AutoNormal)(blocked, init_loc_fn=init_to_value(values=init))
    svi = SVI(call, auto, pyro.optim.ClippedAdam({"lr": learning_rate}),
              TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting))
    history = []
    for _ in tqdm(range(steps), desc=f"SVI {model.name}", disable=not progress, leave=False):
        try:
            loss = svi.step()
        except ValueError as err:       # a NaN parameter fails Pyro's argument checks before any loss
            if "invalid values" not in str(err):
                raise
            loss = float("nan")
        if not math.isfinite(loss):
            raise InvalidInputError(f"{model.name}/svi: the ELBO became {loss} at step {len(history)}; lower "
                                    "learning_rate" + (" or use guide='normal'" if guide == "delta" else ""))
        history.append(loss)
    with torch.no_grad():
        if guide == "delta":
            draws = point_draws(model.complete({s: v for s, v in auto.median().items() if s in sites}))
        else:
            samples = [auto() for _ in range(num_draws)]
            draws = model.complete({s: torch.stack([d[s] for d in samples]) for s in sites})
            draws = {s: v.unsqueeze(0) for s, v in draws.items()}
    size = max(10, steps // 10)
    window = history[-size:]     # a flat last tenth; fewer than two windows of steps cannot show one
    converged = len(history) >= 2 * size and bool(np.std(window) < 0.01 * abs(np.mean(window)) + 1.0)
    return Fit(draws, history, converged, {"guide": guide, "steps": steps, "subsample_size": subsample_size})


# -- NUTS and HMC ------------------------------------------------------------------------------

def make_potential(model: PosteriorModel, data: ModelData, p: dict):
    """The potential energy −log p(globals, y) − log|J| in unconstrained coordinates.

    The same density as the Pyro model (tested against its trace), written directly so
    that NUTS pays one pass over distinct observation rows per gradient instead of a
    traced enumeration over every item; Pyro's own ``jit_compile`` only applies to
    model-based kernels.
    """
    def potential(params: dict) -> torch.Tensor:
        log_g, log_jac = {}, 0.0
        g = LazyValues(log_g)
        for s, site in model.sites.items():
            if site.support == SIMPLEX:
                log_g[s] = torch.log_softmax(torch.cat([params[s], torch.zeros_like(params[s][..., :1])], -1), -1)
                jac = log_g[s].sum()
            else:
                g[s], log_g[s], jac = to_constrained(site.support, params[s])
            log_jac = log_jac + jac
        lj = masked_log_joint(model, data, g, log_g, p)
        return -(model.log_prior(g, log_g, p) + (data.weight * torch.logsumexp(lj, -1)).sum() + log_jac)
    return potential


def fit_nuts(model: PosteriorModel, data: ModelData, p: dict, *, num_chains: int = 4, num_samples: int = 500,
             warmup_steps: int = 300, target_accept_prob: float = 0.8, max_tree_depth: int = 8,
             num_workers: int | None = None, draw_labels: bool = True, precondition: bool | None = None,
             adapt_metric: bool = True, init_jitter: float = 0.5, step_size_jitter: float = 0.0, thinning: int = 1,
             backend: str = "pyro", seed: int = 0, progress: bool = True) -> Fit:
    """No-U-Turn sampling (Pyro ``NUTS``) of the global sites, local latents summed out.

    Chain ``i`` is seeded ``seed + i`` and starts at ``model.init`` (the label-switching
    guard of the module docstring). Chains run in ``num_workers`` processes (joblib's loky;
    default: one per CPU core, at most one per chain), each single-threaded: the tensors
    are small, so processes, not threads, are what scale. When worker processes cannot
    start (a sandbox without them), the chains run one after another in this process,
    with a warning.
    With ``precondition``, NUTS runs in coordinates whitened by the Laplace approximation
    at the start: u = û + L z with L Lᵀ the inverse Hessian of the potential at û (a
    dense metric, as Stan's ``dense_e``, fixed before warm-up; with ``adapt_metric`` Pyro's
    diagonal adaptation continues on top, along the Hessian's eigenvectors. Without it the
    metric stays isotropic, and NUTS turning every coordinate through half an orbit at once
    leaves the spread mixing slowly: on the crowd benchmark the largest R-hat at 4 × 500
    draws rose from 1.010 to 1.012–1.014, ``experiments/probe_nuts_trajectory.py``). The whitening changes the
    geometry, not the target: with a thousand parameters of sparse annotators it cuts the
    leapfrog steps per draw several-fold.
    Each chain starts at z ~ N(0, ``init_jitter``² I) around the start (whitened units, so
    posterior SDs; at most 3, further out a chain can begin in a label-switched mode), so that
    R-hat compares chains that did not begin at one point; unwhitened chains start at the MAP.
    ``step_size_jitter`` j draws each post-warm-up transition's step size uniformly from
    ε(1 ± j), as Stan's ``stepsize_jitter`` (see ``JitteredNUTS``; off by default: on the crowd
    benchmark j = 0.5 raised the smallest bulk ESS by a third and brought the largest R-hat to
    ≤ 1.01 on 3 of 4 chain seeds, for 30–40% more leapfrog steps per draw).
    With ``thinning`` t each of the ``num_samples`` draws is the last of t transitions (Stan's
    ``thin``, NumPyro's ``thinning``): t times the sampling work for draws t times less
    autocorrelated where mixing is slow, at the memory of ``num_samples`` draws. A draw is
    marked diverging if any of its t transitions diverged; ``tree_size`` sums their steps.
    With ``draw_labels``, local latents are drawn per posterior draw from their exact
    conditional given the draw's globals (``true_class_draw`` in ArviZ).
    ``backend="numpyro"`` runs NumPyro's compiled NUTS on a JAX twin of the potential instead
    of Pyro's (:mod:`.jax_nuts`; models with a twin only, and no ``step_size_jitter``): the
    same start, unconstrained coordinates, chains and draws' layout, at a fraction of the
    time per draw (``experiments/bench_nuts_backends.py``). ``precondition`` defaults to True
    with Pyro and False with NumPyro, which then samples the unconstrained coordinates with
    its own diagonal metric: the dense whitening matvec would cost more per step than the
    compiled potential. Per draw that mixes worse (on the crowd benchmark half the smallest
    bulk ESS), per second about as well, and it reaches R-hat ≤ 1.01 with ``thinning=3`` in
    less than half the whitened run's time. The chains still start spread by the Laplace
    approximation (its Hessian is computed either way; above 4,000 parameters there is none,
    and every chain starts at the MAP, as under Pyro).
    """
    check_counts(max_tree_depth=(max_tree_depth, 1))
    kernel = dict(kernel="nuts", backend=backend, max_tree_depth=max_tree_depth,
                  step_size_jitter=float(step_size_jitter))
    if backend == "numpyro":
        from . import jax_nuts

        jax_nuts.check_backend(model)
        if step_size_jitter:
            raise InvalidInputError("backend='numpyro' has no step_size_jitter (NumPyro's NUTS keeps the adapted "
                                    "step size); leave it at 0 or use backend='pyro'")
        kernel["sample_whitened"] = bool(precondition)
        precondition = True           # the whitening still spreads the chains' starts
    elif backend != "pyro":
        raise UnknownNameError(f"unknown NUTS backend {backend!r}; available: ['pyro', 'numpyro']")
    else:
        precondition = True if precondition is None else precondition
    return fit_mcmc(model, data, p, kernel,
                    num_chains=num_chains, num_samples=num_samples, warmup_steps=warmup_steps,
                    target_accept_prob=target_accept_prob, num_workers=num_workers, draw_labels=draw_labels,
                    precondition=precondition, adapt_metric=adapt_metric, init_jitter=init_jitter, seed=seed,
                    progress=progress, thinning=thinning)


def fit_hmc(model: PosteriorModel, data: ModelData, p: dict, *, num_chains: int = 4, num_samples: int = 500,
            warmup_steps: int = 300, target_accept_prob: float = 0.9, trajectory_length: float = math.pi / 2,
            trajectory_jitter: float = 0.2, num_workers: int | None = None, draw_labels: bool = True,
            precondition: bool | None = True, adapt_metric: bool = True, init_jitter: float = 0.5, thinning: int = 1,
            seed: int = 0, progress: bool = True) -> Fit:
    """Static Hamiltonian Monte Carlo (Pyro ``HMC``) with a quarter-orbit trajectory, in the
    same whitened coordinates, chains and start as :func:`fit_nuts`.

    Why not only NUTS: in the Laplace-whitened metric the posterior is close to N(0, I), on
    which Hamilton's equations rotate every coordinate at one frequency, x(t) = x cos t +
    p sin t. NUTS runs until the U-turn, about half an orbit: x → −x, antithetic for the
    mean but leaving x² (the spread) where it was, so its tail ESS and folded R-hat lag
    (on a 1,604-dimensional standard Gaussian: largest R-hat 1.020–1.022 at 4 × 500 draws).
    Stopping at a quarter orbit, t = π/2, lands on x(t) = p, a fresh draw: independent
    for location and spread alike (same Gaussian: 1.008–1.009). Each transition's integration
    time is uniform in ``trajectory_length`` (1 ± ``trajectory_jitter``), so that directions
    whose frequency the metric got wrong do not resonate. Its end point is accepted or
    rejected as a whole, so a rejection repeats the draw: hence a higher default
    ``target_accept_prob`` (0.9) than NUTS's. ``trajectory_length`` is in whitened units:
    without ``precondition`` (or above the whitening's size limit) a quarter orbit of the
    unwhitened posterior has no fixed length, and a warning says so.

    Measured on the crowd benchmark (``experiments/probe_nuts_trajectory.py --hmc``), a real
    posterior is not that Gaussian: at t ≈ π/2 a few directions the Laplace metric gets wrong
    mix slowly (largest R-hat from location), at t ≈ π the spread lags as under NUTS. Those
    directions gain from ``thinning`` as NUTS's location does not (HMC has no antithetic step to
    lose): with ``thinning=3`` the largest R-hat over 1,604 entries is 1.0053–1.0084 at 4 × 500
    kept draws in 90–96 s (chain seeds 0–3). See the README's NUTS section for the figures. ``sample_stats["tree_size"]`` counts leapfrog steps;
    ``thinning`` as in :func:`fit_nuts`.
    """
    from .inputs import SETTINGS       # the rule fit_posterior applies, also for direct callers

    precondition = True if precondition is None else precondition     # None: the default, as in fit_nuts

    for name, value in (("trajectory_length", trajectory_length), ("trajectory_jitter", trajectory_jitter)):
        if not SETTINGS[name](value):
            raise InvalidInputError(f"{name} must be {SETTINGS[name].expected}, got {value!r}")
    return fit_mcmc(model, data, p, dict(kernel="hmc", trajectory_length=float(trajectory_length),
                                         trajectory_jitter=float(trajectory_jitter)),
                    num_chains=num_chains, num_samples=num_samples, warmup_steps=warmup_steps,
                    target_accept_prob=target_accept_prob, num_workers=num_workers, draw_labels=draw_labels,
                    precondition=precondition, adapt_metric=adapt_metric, init_jitter=init_jitter, seed=seed,
                    progress=progress, thinning=thinning)


def fit_mcmc(model: PosteriorModel, data: ModelData, p: dict, kernel: dict, *, num_chains: int, num_samples: int,
             warmup_steps: int, target_accept_prob: float, num_workers: int | None, draw_labels: bool,
             precondition: bool, adapt_metric: bool, init_jitter: float, seed: int, progress: bool,
             thinning: int = 1) -> Fit:
    """What NUTS and HMC share: the start, the Laplace whitening, chains in worker
    processes, and the fitted draws. ``kernel`` names the sampler and its own settings
    (read by :func:`run_chain`)."""
    check_counts(num_chains=(num_chains, 1), num_samples=(num_samples, 1), warmup_steps=(warmup_steps, 0),
                 thinning=(thinning, 1))
    if not 0 < target_accept_prob < 1:
        raise InvalidInputError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}")
    init = sampler_start(model, data, p, seed)
    start = {s: to_unconstrained(model.sites[s].support, v).detach() for s, v in init.items() if s in model.sites}
    whiten = laplace_whitening(make_potential(model, data, p), start) if precondition else None
    job = dict(model=model.name, obs={k: v.numpy() for k, v in data.obs.items()}, weight=data.weight.numpy(),
               mask=None if data.mask is None else data.mask.numpy(), priors=p,
               start={s: v.numpy() for s, v in start.items()}, whiten=None if whiten is None else whiten.numpy(),
               init_jitter=init_jitter, num_samples=num_samples, thinning=int(thinning), warmup_steps=warmup_steps,
               target_accept_prob=target_accept_prob, adapt_metric=bool(adapt_metric), **kernel)
    if whiten is None and kernel["kernel"] == "hmc":
        why = "precondition=False" if not precondition else "too many parameters"
        warnings.warn(f"HMC without the Laplace whitening ({why}): trajectory_length is then in the posterior's "
                      "own units, where a quarter orbit has no fixed length; method='nuts' adapts its path length "
                      "instead", RuntimeWarning, stacklevel=4)
    workers = min(num_chains, num_workers or os.cpu_count() or 1)
    started = time.perf_counter()
    if kernel.get("backend") == "numpyro":
        from .jax_nuts import jax_job, run_chain as chain_fn

        job.update(jax_job(model, data, p, {s: tuple(v.shape) for s, v in start.items()}))
    else:
        chain_fn = run_chain
    results = run_chains(job, num_chains, workers, seed, f"{kernel['kernel'].upper()} {model.name}", progress,
                         chain_fn)
    seconds = time.perf_counter() - started
    draws = model.complete({s: torch.as_tensor(np.stack([r["samples"][s] for r in results])) for s in model.sites})
    # an honest flag: the largest split R-hat of any global below 1.01 (split R-hat needs 4 draws)
    with torch.no_grad():
        rhat = max(float(split_gelman_rubin(v.reshape(v.shape[0], v.shape[1], -1)).nan_to_num(1.0).max())
                   for v in draws.values()) if num_chains > 1 and num_samples >= 4 else float("nan")
    return Fit(draws, [], bool(rhat <= 1.01),
               {"num_chains": num_chains, "num_samples": num_samples, "thinning": int(thinning),
                "warmup_steps": warmup_steps,
                "workers": workers, "sampling_seconds": seconds, "rows": data.num_rows,
                "preconditioned": whiten is not None and kernel.get("sample_whitened", True),
                "draw_labels": draw_labels, "seed": seed,
                "target_accept_prob": target_accept_prob, **kernel},
               sample_stats={"diverging": np.stack([r["diverging"] for r in results]),
                             "tree_size": np.stack([r["tree_size"] for r in results])})


def run_chains(job: dict, num_chains: int, workers: int, seed: int, desc: str, progress: bool,
               chain_fn=None) -> list:
    """``chain_fn`` (default :func:`run_chain`) for chains ``seed`` … ``seed + num_chains − 1``,
    in ``workers`` processes (their jobs marked ``in_worker``), or one after another in this
    process (with a warning) where processes cannot start (a sandbox without them)."""
    chain_fn = chain_fn or run_chain
    bar = tqdm(total=num_chains, desc=desc, unit="chain", disable=not progress, leave=False)
    results = None
    if workers > 1:
        try:
            # joblib's loky processes, not multiprocessing's spawn: spawn re-imports the caller's
            # script in every worker, so one without an `if __name__ == "__main__":` guard ran all
            # its earlier fits (and file writes) again in each. Arrays are pickled, not memory-mapped
            # read-only (max_nbytes=None), as in choose_model.
            results = [None] * num_chains
            chains = (delayed(_numbered)(chain_fn, c, dict(job, seed=seed + c, in_worker=True))
                      for c in range(num_chains))
            for c, out in Parallel(n_jobs=workers, backend="loky", max_nbytes=None,
                                   return_as="generator_unordered")(chains):
                results[c] = out
                bar.update()
        except (BrokenProcessPool, OSError) as exc:   # not a chain's own error: joblib re-raises those as they are
            warnings.warn(
                f"MCMC worker processes could not start ({type(exc).__name__}: {exc}). Running the {num_chains} "
                "chains one after another in this process instead; pass num_workers=1 to ask for that.",
                RuntimeWarning, stacklevel=4)
            bar.reset()
            results = None
    if results is None:
        results = []
        for chain in range(num_chains):
            results.append(chain_fn(dict(job, seed=seed + chain)))
            bar.update()
    bar.close()
    return results


def _numbered(chain_fn, index: int, job: dict) -> tuple:
    """``(index, chain_fn(job))``: chains finish in any order."""
    return index, chain_fn(job)


def sampler_start(model: PosteriorModel, data: ModelData, p: dict, seed: int = 0) -> dict:
    """Where chains start: ``model.init`` (the MAP) — for conjugate models moved to the mean
    of the full conditionals at the MAP's item posterior, which is inside the simplex. A MAP
    entry at 0 (a label a sparse annotator never gave) is −∞ in unconstrained coordinates,
    where a chain would spend its warm-up walking back from."""
    g = model.init(data, p, seed)
    if not model.conjugate:
        return g
    with torch.no_grad():
        q = masked_log_joint(model, data, g, model.logs(g), p).softmax(-1)
        counts = model.expected_counts(data.obs, q * data.weight.unsqueeze(-1))
        conc = model.prior_concentration(p, {s: c.shape for s, c in counts.items()})
        means = {s: (conc[s] + counts[s]) / (conc[s] + counts[s]).sum(-1, keepdim=True) for s in counts}
    return model.complete(model.from_concentration_modes(means))


def unflatten_sites(x: torch.Tensor, shapes: dict) -> dict:
    """Split the last axis of ``x`` into the sites of ``shapes`` (name → shape), in order."""
    parts, i = {}, 0
    for n, shape in shapes.items():
        size = int(np.prod(shape)) if len(shape) else 1
        parts[n] = x[..., i:i + size].reshape(x.shape[:-1] + tuple(shape))
        i += size
    return parts


def laplace_hessian(potential, start: dict) -> torch.Tensor:
    """``[D, D]`` the symmetrised Hessian of ``potential`` at ``start``, sites flattened in order."""
    shapes = {n: v.shape for n, v in start.items()}
    flat = torch.cat([v.reshape(-1) for v in start.values()]).to(DTYPE)
    hessian = torch.autograd.functional.hessian(lambda x: potential(unflatten_sites(x, shapes)), flat).detach()
    return 0.5 * (hessian + hessian.T)


def laplace_whitening(potential, start: dict, max_dim: int = 4000, floor: float = 1.0) -> torch.Tensor | None:
    """``[D, D]`` L with L Lᵀ = H⁻¹, H the Hessian of ``potential`` at ``start`` (flattened
    sites, in order), eigenvalues floored at ``floor`` so that a flat or non-convex direction
    gets scale at most ``floor``^-1/2 (unit scale at the default; floors of 0.1 and 4.0 did not
    lower the largest R-hat in ``experiments/bench_nuts_crowd.py``); ``None`` above ``max_dim``
    parameters (the dense metric would cost more than it saves). L = V Λ^-1/2 keeps the
    eigenvectors as the sampler's axes, so the diagonal adaptation rescales them one by one:
    a triangular factor of the same metric (a solve at half the matvec's cost) mixed worse on
    the crowd benchmark and saved 5% of the wall time (``experiments/results/nuts_metric_probe``)."""
    if not floor > 0:
        raise InvalidInputError(f"the whitening's eigenvalue floor must be > 0, got {floor}")
    if sum(v.numel() for v in start.values()) > max_dim:
        return None
    evals, evecs = torch.linalg.eigh(laplace_hessian(potential, start))
    evals = evals.clamp_min(floor)     # at the default 1, a direction flatter than a unit Gaussian keeps unit scale
    return evecs * evals.rsqrt()       # (V Λ^{-1/2}) (V Λ^{-1/2})ᵀ = H⁻¹


class JitteredNUTS(NUTS):
    """Pyro's NUTS with the step size of each sampling transition drawn from ε(1 ± ``jitter``)
    (Stan's ``stepsize_jitter``; Pyro has no such option, hence the subclass). On a well
    whitened target NUTS turns every coordinate through half an orbit at once, x → −x, which
    leaves x² — the spread — where it was; a varying step varies where the U-turn falls.
    Warm-up keeps the adapted ε; at ``jitter`` 0 this is Pyro's NUTS draw for draw."""

    def __init__(self, jitter: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.jitter = jitter

    def sample(self, params):
        if self.jitter == 0 or self._t < self._warmup_steps:
            return super().sample(params)
        adapted = self._adapter.step_size
        scale = 1.0 + self.jitter * (2.0 * float(torch.rand(())) - 1.0)   # the chain's seeded torch RNG
        self._adapter.step_size = adapted * scale
        try:
            return super().sample(params)
        finally:
            self._adapter.step_size = adapted


class JitteredHMC(HMC):
    """Pyro's static HMC where each sampling transition integrates for exactly its time t,
    drawn uniformly from ``trajectory_length`` (1 ± ``jitter``): ⌈t/ε⌉ leapfrog steps of
    t/⌈t/ε⌉ ≤ ε each. Pyro's ``HMC`` has one fixed length and takes ⌊t/ε⌋ steps of ε, which
    with the large steps of a low-dimensional target cuts a quarter orbit short by up to
    one step (hence the subclass). Warm-up is Pyro's own, at the fixed length, while ε adapts."""

    #: a step size adapted towards 0 would otherwise make one transition run for ever
    #: (NUTS is bounded by 2^max_tree_depth)
    max_steps = 1024

    def __init__(self, trajectory_length: float, jitter: float = 0.0, **kwargs):
        self._steps = None
        super().__init__(trajectory_length=trajectory_length, **kwargs)
        self.base_length, self.jitter = trajectory_length, jitter

    @property
    def num_steps(self):   # Pyro would re-derive it from the fixed trajectory_length
        return super().num_steps if self._steps is None else self._steps

    def sample(self, params):
        if self._t < self._warmup_steps:
            return super().sample(params)
        length = self.base_length * (1.0 + self.jitter * (2.0 * float(torch.rand(())) - 1.0))  # the chain's seeded RNG
        adapted = self._adapter.step_size
        steps = math.ceil(length / adapted)
        if steps > self.max_steps:
            raise InvalidInputError(f"HMC's adapted step size {adapted:.3g} needs {steps} leapfrog steps for a "
                                    f"trajectory of {length:.3g} (at most {self.max_steps}): the posterior is far "
                                    "from the whitened metric's scale; use method='nuts'")
        self._steps, self._adapter.step_size = steps, length / steps
        try:
            return super().sample(params)
        finally:
            self._adapter.step_size, self._steps = adapted, None


def chain_start(model: PosteriorModel, job: dict) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """``(site shapes, the start as one vector in model.sites order, the chain's offset z0)``:
    z0 ~ N(0, ``init_jitter``² I) in whitened units, seeded by the chain, when the job has a
    whitening; else 0 (the MAP)."""
    names = list(model.sites)
    start = {s: torch.as_tensor(job["start"][s]) for s in names}
    centre = torch.cat([start[s].reshape(-1) for s in names])
    pyro.set_rng_seed(job["seed"])
    z0 = job["init_jitter"] * torch.randn(centre.shape, dtype=DTYPE) if job["whiten"] is not None \
        else torch.zeros_like(centre)
    return {s: start[s].shape for s in names}, centre, z0


def run_chain(job: dict) -> dict:
    """One NUTS or HMC chain (module level so that worker processes can import it)."""
    from .models import get_model

    torch.set_num_threads(1)
    model = get_model(job["model"])
    data = ModelData({k: torch.as_tensor(v) for k, v in job["obs"].items()}, torch.as_tensor(job["weight"]), None,
                     (), mask=None if job["mask"] is None else torch.as_tensor(job["mask"]))
    names = list(model.sites)
    shapes, centre, z0 = chain_start(model, job)
    # the dense whitening matvec streams the [D, D] matrix twice per gradient (forward and back);
    # in float32 it costs 0.68× float64's (experiments/profile_nuts_gradient.py). The map z → u
    # is then rounded at ~1e-7 relative: still a fixed map (the sampler stays exact for the
    # density it sees), and the potential itself is float64
    whiten = None if job["whiten"] is None else torch.as_tensor(job["whiten"]).float()
    potential = make_potential(model, data, job["priors"])

    def to_sites(z):   # whitened coordinates -> unconstrained sites (constant Jacobian, dropped)
        return unflatten_sites(centre + ((z.float() @ whiten.T).to(DTYPE) if whiten is not None else z), shapes)
    # the graph is fixed: trace it once, which roughly halves the cost of each step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda z: potential(to_sites(z)), (z0,), check_trace=False)
    steps = []

    def counted(params):
        steps.append(1)
        return traced(params["z"])
    if job["kernel"] not in ("hmc", "nuts"):
        raise UnknownNameError(f"unknown MCMC kernel {job['kernel']!r}")
    if job["kernel"] == "hmc":
        kernel = JitteredHMC(job["trajectory_length"], job["trajectory_jitter"], potential_fn=counted,
                             target_accept_prob=job["target_accept_prob"], adapt_mass_matrix=job["adapt_metric"])
    else:
        kernel = JitteredNUTS(job["step_size_jitter"], potential_fn=counted,
                              target_accept_prob=job["target_accept_prob"], max_tree_depth=job["max_tree_depth"],
                              adapt_mass_matrix=job["adapt_metric"])
    tree_sizes, divergences = [], []

    def after_each(sampler, _params, stage, _i):
        tree_sizes.append(len(steps))
        steps.clear()
        if stage.startswith("Sample"):   # the kernel's own record; MCMC.diagnostics() also computes
            divergences[:] = sampler.diagnostics()["divergences"]  # R-hat, which asserts on < 4 draws
    thin = job.get("thinning", 1)
    transitions = job["num_samples"] * thin
    mcmc = MCMC(kernel, num_samples=transitions, warmup_steps=job["warmup_steps"], num_chains=1,
                initial_params={"z": z0}, disable_progbar=True, hook_fn=after_each)
    mcmc.run()
    unconstrained = to_sites(mcmc.get_samples()["z"].detach()[thin - 1::thin])    # the last of each t
    diverging = np.zeros(transitions, dtype=bool)
    diverging[[i for i in divergences if 0 <= i < transitions]] = True
    constrained = {s: to_constrained(model.sites[s].support, unconstrained[s])[0] for s in names}
    return {"samples": {s: v.numpy() for s, v in constrained.items()},
            "diverging": diverging.reshape(-1, thin).any(-1),
            "tree_size": np.asarray(tree_sizes[-transitions:]).reshape(-1, thin).sum(-1)}


def draw_local_latents(model: PosteriorModel, data: ModelData, p: dict, draws: dict, temperature: float = 1.0,
                       seed: int = 0) -> np.ndarray:
    """``[C, D, N]`` one draw of every item's local latent per posterior draw of the globals,
    from its exact conditional p(z_n | y_n, globals) ∝ π p(y_n | z_n, globals)^{1/T} — what
    Pyro's ``infer_discrete`` samples from the model at T = 1 (a test holds the two
    together), without enumerating every item through Pyro. Items that share a vote pattern
    are drawn independently. Finer latents (EBCC's subtypes) are reported as their class."""
    gen = torch.Generator().manual_seed(seed)
    lead = next(iter(draws.values())).shape[:2]
    flat = {s: v.reshape(-1, *v.shape[2:]) for s, v in draws.items()}
    total = lead[0] * lead[1]
    items = data.num_rows if data.inverse is None else len(data.inverse)
    chunk = max(1, 2_000_000 // max(1, items * data.mask.shape[-1] if data.mask is not None else items * 8))
    classes = model.local_classes(data, p)
    out = []
    with torch.no_grad():
        for start in range(0, total, chunk):
            g = {s: v[start:start + chunk] for s, v in flat.items()}
            probs = masked_log_joint(model, data, g, model.logs(g), p, 1.0 / temperature).softmax(-1)
            if data.inverse is not None:
                probs = probs[:, data.inverse]                     # one draw per item, not per pattern
            latent = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=gen).reshape(probs.shape[:-1])
            out.append(latent if classes is None else classes[latent])
    return torch.cat(out).reshape(*lead, -1).numpy()


def threads_for(data: ModelData) -> int | None:
    """1 for small data (every op is tiny), else torch's default."""
    size = sum(int(v.numel()) for v in data.obs.values() if isinstance(v, torch.Tensor))
    return 1 if size <= 2_000_000 else None


FITTERS = {"em": fit_em, "vb": fit_vb, "svi": fit_svi, "nuts": fit_nuts, "hmc": fit_hmc}
