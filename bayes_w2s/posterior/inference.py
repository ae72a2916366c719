"""Fit the models of :mod:`.models`: closed-form MAP-EM, Pyro SVI and Pyro NUTS.

Every fitter returns a :class:`~.base.Posterior` built by :func:`summarise` from draws of
the global sites (EM and SVI-with-a-delta-guide give one "draw": the MAP), so item
posteriors, confusions, log-likelihoods and ArviZ export are computed one way for all.

Label switching: every vote model is invariant to permuting the classes, so a sampler or
optimiser started anywhere may settle in a permuted mode (2,000 items, 5 weak models of
accuracy 0.55–0.8: an unguarded NUTS chain returns every diagonal below 0.5). SVI and
NUTS therefore start from the Dawid–Skene MAP-EM fit, itself started at the majority
vote under a diagonal-heavy prior, i.e. in the mode where weak models beat chance; with
hundreds of items the modes are far apart and a chain started in one stays there.
"""
from __future__ import annotations

import inspect
import math
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, SVI, TraceEnum_ELBO, infer_discrete
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from .base import Posterior
from .inputs import LabelMatrix
from .models import MODELS, confusion_prior, one_coin_theta, soft_log_lik, votes_log_coef, votes_log_lik

DTYPE = torch.float64


# -- data -----------------------------------------------------------------------------

def model_data(lm: LabelMatrix, model: str, eps: float = 1e-4) -> torch.Tensor:
    """The observation tensor a model sees: vote counts, or clipped soft probabilities."""
    kind = MODELS[model][1]
    if kind == "votes":
        return torch.as_tensor(lm.counts, dtype=DTYPE)
    if lm.soft is None:
        raise InvalidInputError(f"the {model!r} posterior observes each weak model's probabilities: "
                                "pass a WeakLabels, not hard votes")
    if not 0 < eps < 1.0 / lm.soft.shape[-1]:
        raise InvalidInputError(f"eps must lie in (0, 1/K), got {eps}")
    p = np.clip(lm.soft, eps, 1.0)
    return torch.as_tensor(p / p.sum(-1, keepdims=True), dtype=DTYPE)


def item_log_lik(model: str, data: torch.Tensor, g: dict, log_theta: torch.Tensor | None = None) -> torch.Tensor:
    """``[..., N, K]`` log p(y_n | c_n = k, globals) for draws ``g`` with leading dims."""
    if model == "soft":
        return soft_log_lik(data, g["concentration"])
    if log_theta is None:
        log_theta = theta_of(model, g, data.shape[-1]).clamp_min(1e-300).log()
    return votes_log_lik(data, log_theta)


def theta_of(model: str, g: dict, k: int) -> torch.Tensor:
    if model == "one_coin":  # draws are [..., M]; plate layout puts the classes dim before M
        return one_coin_theta(g["accuracy"].unsqueeze(-2), k)
    if model == "soft":  # the mean predicted distribution given the true class
        return g["concentration"] / g["concentration"].sum(-1, keepdim=True)
    return g["theta"]


def model_priors(model: str, priors: dict) -> dict:
    """The model function's prior defaults, updated by ``priors`` (unknown names fail)."""
    params = inspect.signature(MODELS[model][0]).parameters
    defaults = {n: p.default for n, p in params.items() if n not in ("counts", "probs", "subsample_size")}
    unknown = set(priors) - set(defaults)
    if unknown:
        raise InvalidInputError(f"unknown prior setting(s) {sorted(unknown)} for the {model!r} model; "
                                f"it has {sorted(defaults)}")
    return {**defaults, **priors}


# -- one summary for every method ---------------------------------------------------------

def summarise(lm: LabelMatrix, model: str, method: str, data: torch.Tensor, draws: dict, *,
              compressed=None, history=(), converged=True, true_class=None, sample_stats=None,
              info=None) -> Posterior:
    """Build the Posterior from global draws shaped ``[chains, draws, ...]`` (model layout).

    Vote models are evaluated once per distinct vote pattern (``compressed`` = the
    patterns and each item's pattern index, from :func:`_compress`) and expanded.
    """
    k = data.shape[-1]
    if MODELS[model][1] == "votes":
        rows, inverse = compressed if compressed is not None else _compress(data)[:2]
    else:
        rows, inverse = data, None
    with torch.no_grad():
        log_joint = draws["pi"].clamp_min(1e-300).log().unsqueeze(-2) + item_log_lik(model, rows, draws)  # [C, D, P, K]
        log_marginal = torch.logsumexp(log_joint, -1)                                                    # [C, D, P]
        if inverse is not None:
            log_marginal = (log_marginal + votes_log_coef(rows))[..., inverse]
        # Rao–Blackwellised: average the exact p(c_n | y, globals) over draws
        item_probs = torch.softmax(log_joint, -1).mean((0, 1))
        if inverse is not None:
            item_probs = item_probs[inverse]
        confusion = theta_of(model, draws, k).transpose(-3, -2)                                          # [C, D, M, K, K]
        n_draws = confusion.shape[0] * confusion.shape[1]
        conf_sd = confusion.flatten(0, 1).std(0).numpy() if n_draws > 1 else None
    return Posterior(
        item_probs=item_probs.numpy(), confusion=confusion.mean((0, 1)).numpy(), confusion_sd=conf_sd,
        class_prior=draws["pi"].mean((0, 1)).numpy(), model_names=lm.model_names, label_names=lm.label_names,
        item_ids=lm.item_ids, model=model, method=method, history=list(history), converged=converged,
        draws={name: v.detach().numpy() for name, v in draws.items()}, log_lik=log_marginal.numpy(),
        true_class=true_class, sample_stats=sample_stats or {}, observed=data.numpy(), info=info or {})


def _as_draws(point: dict) -> dict:
    return {name: v.detach().reshape(1, 1, *v.shape) for name, v in point.items()}


# -- closed-form MAP-EM ---------------------------------------------------------------------

def _compress(counts: torch.Tensor):
    """Identical vote patterns share their posterior: fit each distinct row once, weighted.

    With M models and K classes there are at most (K+1)^M patterns however large N is,
    so EM on a million items costs a handful of thousand-row matmuls.
    """
    n = counts.shape[0]
    flat = counts.reshape(n, -1)                     # integer-valued by construction (as_label_matrix)
    base = int(flat.max()) + 1
    if flat.shape[1] * np.log2(max(base, 2)) < 52:   # codes exact in float64: one BLAS matmul
        codes = flat @ (float(base) ** torch.arange(flat.shape[1], dtype=counts.dtype))
        _, first, inverse, freq = np.unique(codes.numpy(), return_index=True, return_inverse=True, return_counts=True)
        return counts[torch.as_tensor(first)], torch.as_tensor(inverse), torch.as_tensor(freq, dtype=counts.dtype)
    return counts, torch.arange(n), torch.ones(n, dtype=counts.dtype)


def fit_em(lm: LabelMatrix, model: str = "dawid_skene", *, eps: float = 1e-4, max_iter: int = 500,
           tol: float = 1e-8, **priors) -> Posterior:
    """MAP-EM: the exact mode of p(globals | y) with the true classes summed out.

    Dawid–Skene and one-coin M-steps are closed form (Dirichlet / Beta conjugacy); the
    soft-label model's M-step maximises its expected complete log joint in the log
    concentrations with L-BFGS on sufficient statistics (generalised EM). The objective,
    the log joint of the globals, never decreases (tested). ``priors`` override the model
    function's defaults (e.g. ``beta_diag``).
    """
    if model not in ("dawid_skene", "one_coin", "soft"):
        raise InvalidInputError(f"MAP-EM is not available for the {model!r} model")
    pr = model_priors(model, priors)
    alpha_prior = pr["alpha_prior"]
    data = model_data(lm, model, eps)
    n, m, k = data.shape
    if model == "soft":
        obs, inverse, weight = data, torch.arange(n), torch.ones(n, dtype=DTYPE)
        q = data.mean(1)                                            # start at the mean probability
    else:
        obs, inverse, weight = _compress(data)
        q = obs.sum(1) / obs.sum((1, 2)).unsqueeze(-1)                # start at the (soft) majority vote
    eye = torch.eye(k, dtype=DTYPE)
    log_prior_of = _log_prior_fn(model, k, pr)
    g: dict = {}
    history, converged = [], False
    for _ in range(max_iter):
        wq = q * weight.unsqueeze(-1)                                             # [P, K]
        pi = wq.sum(0) + (alpha_prior - 1.0)
        g["pi"] = (pi / pi.sum()).clamp_min(1e-300)
        if model == "dawid_skene":
            stats = (wq.T @ obs.reshape(len(obs), m * k)).reshape(k, m, k)          # [K, M, L] expected counts
            theta = stats + (pr["beta_off"] - 1.0) + (pr["beta_diag"] - pr["beta_off"]) * eye.unsqueeze(1)
            g["theta"] = (theta / theta.sum(-1, keepdim=True)).clamp_min(1e-300)
        elif model == "one_coin":
            right = torch.einsum("pk,pmk->m", wq, obs)
            total = (weight.unsqueeze(-1) * obs.sum(-1)).sum(0)
            a, b = pr["accuracy_a"], pr["accuracy_b"]
            g["accuracy"] = ((right + a - 1) / (total + a + b - 2)).clamp(1e-6, 1 - 1e-6)
        elif model == "soft":
            g["concentration"] = _soft_m_step(obs, wq, g.get("concentration"), pr["diag_shape"], pr["off_shape"],
                                              pr["rate"])
        log_joint = g["pi"].log() + item_log_lik(model, obs, g)
        norm = torch.logsumexp(log_joint, -1, keepdim=True)
        q = (log_joint - norm).exp()
        objective = float((weight * norm.squeeze(-1)).sum() + log_prior_of(g))
        done = bool(history) and abs(objective - history[-1]) < tol * max(1.0, abs(objective))
        history.append(objective)
        if done:
            converged = True
            break
    # report on every item (patterns expanded back)
    post = summarise(lm, model, "em", data, _as_draws(g), history=history, converged=converged,
                     compressed=None if model == "soft" else (obs, inverse),
                     info={"patterns": len(obs)})
    return post


def _log_prior_fn(model, k, pr):
    """Log prior density of the globals up to its normalising constant: EM's objective and
    stopping rule (relative change) are defined on this unnormalised form."""
    if model == "soft":
        shape = confusion_prior(k, pr["diag_shape"], pr["off_shape"], DTYPE).unsqueeze(1)
    elif model == "dawid_skene":
        conf = confusion_prior(k, pr["beta_diag"], pr["beta_off"], DTYPE).unsqueeze(1)

    def log_prior(g):
        out = ((pr["alpha_prior"] - 1) * g["pi"].log()).sum()
        if "theta" in g:
            out = out + ((conf - 1) * g["theta"].log()).sum()
        if "accuracy" in g:
            a = g["accuracy"]
            out = out + ((pr["accuracy_a"] - 1) * a.log() + (pr["accuracy_b"] - 1) * (1 - a).log()).sum()
        if "concentration" in g:
            lam = g["concentration"]
            out = out + ((shape - 1) * lam.log() - pr["rate"] * lam).sum()
        return out
    return log_prior


def _soft_m_step(probs, wq, previous, diag_shape, off_shape, rate, steps: int = 25):
    """argmax_λ Σ_n Σ_k q_nk Σ_m log Dir(p_nm | λ_km) + log Gamma prior (λ in log space)."""
    n, m, k = probs.shape
    weight = wq.sum(0)                                                          # [K]
    stats = (wq.T @ probs.log().reshape(n, m * k)).reshape(k, m, k)            # Σ_n q_nk log p_nml
    shape = confusion_prior(k, diag_shape, off_shape, DTYPE).unsqueeze(1)
    init = previous if previous is not None else shape.expand(k, m, k) / rate
    log_lam = init.log().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([log_lam], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        lam = log_lam.exp()
        q_value = (weight[:, None] * (torch.lgamma(lam.sum(-1)) - torch.lgamma(lam).sum(-1))).sum() \
            + ((lam - 1) * stats).sum() + ((shape - 1) * log_lam - rate * lam).sum()
        loss = -q_value
        loss.backward()
        return loss
    opt.step(closure)
    return log_lam.detach().exp()


# -- Pyro SVI --------------------------------------------------------------------------------

def _init_values(lm: LabelMatrix, model: str, eps: float) -> dict:
    """Starting point in the non-switched mode (see the module docstring)."""
    base = fit_em(lm, "soft" if model == "soft" else "dawid_skene", eps=eps)
    pi = torch.as_tensor(base.class_prior, dtype=DTYPE)
    out = {"pi": pi / pi.sum()}
    if model == "soft":
        out["concentration"] = torch.as_tensor(base.draws["concentration"][0, 0])
        return out
    theta = torch.as_tensor(base.draws["theta"][0, 0])                          # [K, M, K]
    if model == "dawid_skene":
        out["theta"] = theta
    elif model == "one_coin":
        out["accuracy"] = torch.einsum("k,kmk->m", pi, theta).clamp(0.05, 0.95)
    elif model == "hierarchical":
        out["theta"] = theta
        out["mu"] = theta.mean(1, keepdim=True)
        out["kappa"] = torch.tensor(20.0, dtype=DTYPE)
    return out


def _latent_sites(model: str) -> list[str]:
    return list(MODELS[model][2])


def fit_svi(lm: LabelMatrix, model: str = "dawid_skene", *, guide: str = "delta", steps: int = 1000,
            learning_rate: float = 0.02, subsample_size: int | None = None, num_draws: int = 500,
            eps: float = 1e-4, seed: int = 0, progress: bool = True, **priors) -> Posterior:
    """Stochastic variational inference with ``TraceEnum_ELBO`` (the true class summed out).

    ``guide="delta"`` (``AutoDelta``) gives the MAP, the same optimum as EM; ``"normal"``
    (``AutoNormal``, mean-field in the unconstrained space) gives spread and ``num_draws``
    draws for ArviZ. ``subsample_size`` subsamples the items plate (minibatch SVI for
    large N; the ELBO is rescaled by the plate).
    """
    if guide not in ("delta", "normal"):
        raise InvalidInputError(f"guide must be 'delta' or 'normal', got {guide!r}")
    model_priors(model, priors)
    data = model_data(lm, model, eps)
    fn = MODELS[model][0]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    init = _init_values(lm, model, eps)
    sites = _latent_sites(model)
    blocked = poutine.block(fn, expose=sites)
    auto = (AutoDelta if guide == "delta" else AutoNormal)(blocked, init_loc_fn=init_to_value(values=init))
    svi = SVI(fn, auto, pyro.optim.ClippedAdam({"lr": learning_rate}),
              TraceEnum_ELBO(max_plate_nesting=2))
    history = []
    kwargs = dict(priors, subsample_size=subsample_size)
    for _ in tqdm(range(steps), desc=f"SVI {model}", disable=not progress, leave=False):
        history.append(svi.step(data, **kwargs))
    with torch.no_grad():
        if guide == "delta":
            point = {s: v for s, v in auto.median(data, **kwargs).items() if s in sites}
            draws = _as_draws(_complete(model, point, data.shape[-1]))
        else:
            samples = [auto(data, **kwargs) for _ in range(num_draws)]
            draws = {s: torch.stack([d[s] for d in samples]).unsqueeze(0) for s in sites}
            draws = _complete(model, draws, data.shape[-1])
    window = history[-max(10, steps // 10):]
    converged = bool(np.std(window) < 0.01 * abs(np.mean(window)) + 1.0)
    return summarise(lm, model, "svi", data, draws, history=history, converged=converged,
                     info={"guide": guide, "steps": steps, "subsample_size": subsample_size})


def _complete(model: str, g: dict, k: int) -> dict:
    """Add deterministic sites (one-coin's θ) so that draws carry every reported quantity."""
    if model == "one_coin":
        g = dict(g, theta=one_coin_theta(g["accuracy"].unsqueeze(-2), k))
    return g


# -- Pyro NUTS -------------------------------------------------------------------------------

def _dirichlet_log_density(alpha: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    return ((alpha - 1) * log_p).sum(-1) + torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)


def log_prior(model: str, g: dict, log_g: dict, k: int, m: int, p: dict) -> torch.Tensor:
    """Normalised log prior density of the globals ``g`` (``log_g``: their logs), term by
    term as in the model function; a test checks it against Pyro's trace of the model."""
    out = _dirichlet_log_density(torch.full((k,), float(p["alpha_prior"]), dtype=DTYPE), log_g["pi"])
    if model == "dawid_skene":
        conc = confusion_prior(k, p["beta_diag"], p["beta_off"], DTYPE).unsqueeze(1)
        out = out + _dirichlet_log_density(conc, log_g["theta"]).sum()
    elif model == "one_coin":
        a, b = float(p["accuracy_a"]), float(p["accuracy_b"])
        out = out + ((a - 1) * log_g["accuracy"] + (b - 1) * torch.log1p(-g["accuracy"])).sum() \
            + m * (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    elif model == "hierarchical":
        shape, rate = float(p["concentration_shape"]), float(p["concentration_rate"])
        out = out + shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * log_g["kappa"] - rate * g["kappa"]
        out = out + _dirichlet_log_density(confusion_prior(k, p["beta_diag"], p["beta_off"], DTYPE).unsqueeze(1),
                                           log_g["mu"]).sum()
        out = out + _dirichlet_log_density(g["kappa"] * g["mu"], log_g["theta"]).sum()
    elif model == "soft":
        shape = confusion_prior(k, p["diag_shape"], p["off_shape"], DTYPE).unsqueeze(1)
        rate = float(p["rate"])
        out = out + (shape * math.log(rate) - torch.lgamma(shape) + (shape - 1) * log_g["concentration"]
                     - rate * g["concentration"]).expand(k, m, k).sum()
    return out


#: how each global site is unconstrained for NUTS
_SIMPLEX, _POSITIVE, _UNIT = "simplex", "positive", "unit"
_SUPPORT = {"pi": _SIMPLEX, "theta": _SIMPLEX, "mu": _SIMPLEX, "accuracy": _UNIT, "kappa": _POSITIVE,
            "concentration": _POSITIVE}


def to_constrained(site: str, u: torch.Tensor):
    """(value, log value, log |Jacobian|) of the unconstrained ``u``.

    Simplexes use additive log-ratio coordinates, p = softmax([u, 0]), whose log-Jacobian
    is Σ_k log p_k; with the Dirichlet density it folds into Σ α log p, a handful of
    tensor ops per evaluation (stick-breaking costs several times more on small tensors).
    """
    kind = _SUPPORT[site]
    if kind == _SIMPLEX:
        log_p = torch.log_softmax(torch.cat([u, torch.zeros_like(u[..., :1])], -1), -1)
        return log_p.exp(), log_p, log_p.sum()
    if kind == _POSITIVE:
        return u.exp(), u, u.sum()
    log_x, log_1mx = torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)
    return log_x.exp(), log_x, (log_x + log_1mx).sum()


def to_unconstrained(site: str, x: torch.Tensor) -> torch.Tensor:
    kind = _SUPPORT[site]
    if kind == _SIMPLEX:
        log_p = x.clamp_min(1e-300).log()
        return log_p[..., :-1] - log_p[..., -1:]
    if kind == _POSITIVE:
        return x.log()
    return torch.logit(x)


def log_density(model: str, data: torch.Tensor, weight: torch.Tensor, g: dict, log_g: dict, p: dict) -> torch.Tensor:
    """log p(globals, y), the true class summed out, over weighted distinct rows."""
    _, m, k = data.shape
    log_joint = log_g["pi"] + item_log_lik(model, data, g, log_g.get("theta"))
    return log_prior(model, g, log_g, k, m, p) + (weight * torch.logsumexp(log_joint, -1)).sum()


def make_potential(model: str, data: torch.Tensor, weight: torch.Tensor, priors: dict):
    """The potential energy −log p(globals, y) − log|J| in unconstrained coordinates.

    The same density as the Pyro model (tested against its trace), written directly so
    that NUTS pays one ``[P, M·K]`` matmul over distinct observation rows per gradient
    instead of a traced enumeration over every item (~0.3 s → ~1 ms per iteration step
    on 2,000 items); Pyro's own ``jit_compile`` only applies to model-based kernels.
    """
    p = model_priors(model, priors)
    sites = _latent_sites(model)

    def potential(params: dict) -> torch.Tensor:
        g, log_g, log_jac = {}, {}, 0.0
        for s in sites:
            g[s], log_g[s], jac = to_constrained(s, params[s])
            log_jac = log_jac + jac
        return -(log_density(model, data, weight, g, log_g, p) + log_jac)
    return potential


def fit_nuts(lm: LabelMatrix, model: str = "dawid_skene", *, num_chains: int = 4, num_samples: int = 500,
             warmup_steps: int = 300, target_accept_prob: float = 0.8, max_tree_depth: int = 8,
             num_workers: int | None = None, draw_labels: bool = True, eps: float = 1e-4, seed: int = 0,
             progress: bool = True, **priors) -> Posterior:
    """No-U-Turn sampling (Pyro ``NUTS``) of the global sites with the true class summed out.

    Chain ``i`` is seeded ``seed + i`` and starts at the Dawid–Skene MAP (the
    label-switching guard of the module docstring). Chains run in ``num_workers`` spawned
    processes (default: one per CPU core, at most one per chain), each single-threaded:
    the tensors are small, so processes, not threads, are what scale. With ``draw_labels``
    item labels are then drawn per posterior draw with ``infer_discrete``
    (``true_class_draw`` in ArviZ).
    """
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise InvalidInputError("num_chains and num_samples must be ≥ 1 and warmup_steps ≥ 0")
    data = model_data(lm, model, eps)
    model_priors(model, priors)
    obs, inverse, weight = (data, None, torch.ones(len(data), dtype=DTYPE)) if model == "soft" else _compress(data)
    init = _init_values(lm, model, eps)
    job = dict(model=model, obs=obs.numpy(), weight=weight.numpy(), priors=priors,
               data=data.numpy() if draw_labels else None,
               init={s: v.numpy() for s, v in init.items()}, num_samples=num_samples, warmup_steps=warmup_steps,
               target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth)
    workers = min(num_chains, num_workers or os.cpu_count() or 1)
    started = time.perf_counter()
    bar = tqdm(total=num_chains, desc=f"NUTS {model}", unit="chain", disable=not progress, leave=False)
    if workers == 1:
        results = []
        for chain in range(num_chains):
            results.append(run_chain(dict(job, seed=seed + chain)))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(run_chain, dict(job, seed=seed + chain)) for chain in range(num_chains)]
            for future in as_completed(futures):
                bar.update()
            results = [f.result() for f in futures]
    bar.close()
    seconds = time.perf_counter() - started
    draws = {s: torch.as_tensor(np.stack([r["samples"][s] for r in results])) for s in _latent_sites(model)}
    draws = _complete(model, draws, data.shape[-1])
    true_class = np.stack([r["true_class"] for r in results]) if draw_labels else None
    return summarise(lm, model, "nuts", data, draws, true_class=true_class,
                     compressed=None if model == "soft" else (obs, inverse),
                     sample_stats={"diverging": np.stack([r["diverging"] for r in results]),
                                   "tree_size": np.stack([r["tree_size"] for r in results])},
                     info={"num_chains": num_chains, "num_samples": num_samples, "warmup_steps": warmup_steps,
                           "workers": workers, "sampling_seconds": seconds, "patterns": len(obs)})


def run_chain(job: dict) -> dict:
    """One NUTS chain (module level so that spawned workers can import it)."""
    torch.set_num_threads(1)
    model, sites = job["model"], _latent_sites(job["model"])
    potential = make_potential(model, torch.as_tensor(job["obs"]), torch.as_tensor(job["weight"]), job["priors"])
    start = {s: to_unconstrained(s, torch.as_tensor(v)) for s, v in job["init"].items() if s in sites}
    # the graph is fixed: trace it once, which roughly halves the cost of each step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda *xs: potential(dict(zip(sites, xs))), tuple(start[s] for s in sites),
                                 check_trace=False)
    steps = []

    def counted(params):
        steps.append(1)
        return traced(*(params[s] for s in sites))
    pyro.set_rng_seed(job["seed"])
    kernel = NUTS(potential_fn=counted, target_accept_prob=job["target_accept_prob"],
                  max_tree_depth=job["max_tree_depth"])
    tree_sizes = []
    mcmc = MCMC(kernel, num_samples=job["num_samples"], warmup_steps=job["warmup_steps"], num_chains=1,
                initial_params=start, disable_progbar=True,
                hook_fn=lambda *_: (tree_sizes.append(len(steps)), steps.clear()))
    mcmc.run()
    samples = mcmc.get_samples()
    diverging = np.zeros(job["num_samples"], dtype=bool)
    for idx in mcmc.diagnostics().get("divergences", {}).values():
        diverging[[i for i in idx if i < job["num_samples"]]] = True
    constrained = {s: to_constrained(s, samples[s])[0].detach() for s in sites}
    out = {"samples": {s: v.numpy() for s, v in constrained.items()},
           "diverging": diverging, "tree_size": np.asarray(tree_sizes[-job["num_samples"]:])}
    if job.get("data") is not None:   # label draws here too, so that they run in parallel
        draws = _complete(model, {s: v.unsqueeze(0) for s, v in constrained.items()}, job["data"].shape[-1])
        out["true_class"] = draw_true_classes(model, torch.as_tensor(job["data"]), draws, job["priors"],
                                              job["seed"])[0]
    return out


def draw_true_classes(model: str, data: torch.Tensor, draws: dict, priors: dict, seed: int = 0,
                      chunk: int = 25) -> np.ndarray:
    """``[C, D, N]`` one true-class draw per posterior draw, by ``infer_discrete``
    (forward-filter backward-sample of the enumerated site given the draw's globals).

    Draws are vectorised by an outer ``"draws"`` plate at dim −3, ``chunk`` at a time to
    bound memory (the enumerated tensors are ``[K, chunk, N, M, K]``).
    """
    fn = MODELS[model][0]
    sites = _latent_sites(model)
    c_dim, d_dim = draws["pi"].shape[:2]
    total = c_dim * d_dim
    # each site's per-draw value gets singleton dims up to the two model plate dims
    flat = {s: draws[s].reshape(total, *draws[s].shape[2:]) for s in sites}
    flat = {s: v.reshape(total, *([1] * (2 - _batch_rank(s))), *v.shape[1:]) for s, v in flat.items()}
    pyro.set_rng_seed(seed)
    out = []
    # inputs were validated once; re-checking every [K, chunk, N, M, K] tensor costs more than sampling
    with torch.no_grad(), pyro.validation_enabled(False):
        for start in range(0, total, chunk):
            values = {s: v[start:start + chunk] for s, v in flat.items()}
            size = len(values["pi"])

            def vectorised():
                with pyro.plate("draws", size, dim=-3):
                    return fn(data, **priors)
            sampler = infer_discrete(poutine.condition(vectorised, data=values), first_available_dim=-4, temperature=1)
            out.append(sampler().reshape(size, -1))
    return torch.cat(out).reshape(c_dim, d_dim, -1).numpy()


def _batch_rank(site: str) -> int:
    """How many of the two model plate dims (classes, weak_models) a global site's draw carries."""
    return {"pi": 0, "kappa": 0, "accuracy": 1}.get(site, 2)
