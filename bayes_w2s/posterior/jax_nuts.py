"""NUTS compiled by JAX: NumPyro's sampler on a JAX twin of a model's potential.

Why a second NUTS: Pyro builds every trajectory in Python, and each leapfrog step pays
torch's per-operation overhead on small tensors. On the crowd benchmark (1,000 items × 100
annotators × 4 classes) one value-and-gradient of the traced potential costs ~1.5 ms
(``experiments/profile_nuts_gradient.py``), and 4 × 500 draws take 80–160 s. NumPyro's NUTS
(Phan, Pradhan & Jankowiak 2019, "Composable effects for flexible and accelerated
probabilistic programming in NumPyro") compiles the whole transition, tree building
included, with XLA (``experiments/bench_nuts_backends.py`` measures both on one crowd).

Everything but the sampler is :func:`~.engine.fit_mcmc`'s: the start (the MAP, in the mode
where weak models beat chance, each chain spread around it by the Laplace approximation),
the unconstrained coordinates (additive log-ratio simplexes), chains ``seed + i`` in worker
processes, the thinning and the fitted draws. By default NumPyro samples those coordinates
with its own adapted diagonal metric instead of Pyro's Laplace-whitened ones
(``precondition=True`` whitens here too; see :func:`~.engine.fit_nuts`).

A model opts in with two methods: ``jax_observation(obs)`` (its rows as NumPy arrays, e.g.
sparse vote triples) and ``jax_log_joint(obs, log_g, num_rows)`` (``[R, C]`` log p(z_r = c,
y_r | globals), the twin of ``log_joint``); its sites must be simplexes or positive. A
conjugate model's log prior is the one Σ_s log Dir(site_s | ``prior_concentration``), written
here once; any other model also writes ``jax_log_prior(g, log_g, p)``, the twin of
``log_prior``. A test holds each twin's potential and gradient to the torch potential, itself
held to the Pyro model's trace (``tests/posterior/test_jax_nuts.py``).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import InvalidInputError
from .engine import POSITIVE_SUPPORT, SIMPLEX, ModelData, PosteriorModel

INSTALL_HINT = "pip install numpyro jax (in a checkout: pip install '.[numpyro]')"


def supports(model: PosteriorModel) -> bool:
    """Whether ``model`` has a JAX twin this sampler can run."""
    return (callable(getattr(model, "jax_log_joint", None))
            and (model.conjugate or callable(getattr(model, "jax_log_prior", None)))
            and all(site.support in (SIMPLEX, POSITIVE_SUPPORT) for site in model.sites.values()))


def check_backend(model: PosteriorModel) -> None:
    """A clear error when NumPyro is missing or ``model`` has no JAX twin."""
    from .models import MODELS

    if not supports(model):
        have = sorted(name for name, m in MODELS.items() if supports(m))
        raise InvalidInputError(f"backend='numpyro' needs a JAX twin of the model's log joint; {model.name!r} has "
                                f"none (models with one: {have}); use backend='pyro'")
    try:
        import jax  # noqa: F401
        import numpyro  # noqa: F401
    except ImportError as exc:
        raise InvalidInputError(f"backend='numpyro' needs NumPyro and JAX ({exc}): {INSTALL_HINT}") from exc


def jax_job(model: PosteriorModel, data: ModelData, p: dict, shapes: dict) -> dict:
    """What a worker needs to rebuild the potential, as NumPy arrays (picklable); ``shapes``:
    each site's shape in unconstrained coordinates (a simplex has one entry less)."""
    job = {"jax_obs": model.jax_observation(data.obs), "jax_prior": None}
    if callable(getattr(model, "jax_log_prior", None)):
        return job
    shapes = {s: tuple(shape[:-1]) + (shape[-1] + 1,) for s, shape in shapes.items()}   # all simplexes
    conc = model.prior_concentration(p, shapes)
    job["jax_prior"] = {s: torch.as_tensor(conc[s]).expand(shapes[s]).numpy() for s in model.sites}
    return job


def make_potential(model: PosteriorModel, job: dict, num_rows: int):
    """The potential −log p(globals, y) − log|J| of :func:`~.engine.make_potential`, in JAX,
    as a function of the flat unconstrained vector (sites in ``model.sites`` order)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    obs = {k: jnp.asarray(v) for k, v in job["jax_obs"].items()}
    weight = jnp.asarray(job["weight"])
    mask = None if job["mask"] is None else jnp.asarray(job["mask"])
    shapes = {s: np.asarray(job["start"][s]).shape for s in model.sites}
    if job["jax_prior"] is None:
        def log_prior(g, log_g):
            return model.jax_log_prior(g, log_g, job["priors"])
    else:                   # conjugate: Σ_s log Dir(site_s | its constant concentration)
        conc = {s: jnp.asarray(a) for s, a in job["jax_prior"].items()}
        norm = sum(float((gammaln(a.sum(-1)) - gammaln(a).sum(-1)).sum()) for a in conc.values())

        def log_prior(g, log_g):
            return norm + sum(((conc[s] - 1.0) * log_g[s]).sum() for s in shapes)

    def potential(u):
        g, log_g, log_jac, i = {}, {}, 0.0, 0
        for s, shape in shapes.items():
            size = int(np.prod(shape))
            part = u[i:i + size].reshape(shape)
            i += size
            if model.sites[s].support == SIMPLEX:     # p = softmax([u, 0]): log|J| = Σ_k log p_k
                log_g[s] = jax.nn.log_softmax(jnp.concatenate([part, jnp.zeros(shape[:-1] + (1,))], -1), -1)
            else:                                      # positive: x = e^u, log|J| = u
                log_g[s] = part
            g[s] = jnp.exp(log_g[s])
            log_jac = log_jac + log_g[s].sum()
        lj = model.jax_log_joint(obs, log_g, num_rows)
        if mask is not None:
            lj = lj + mask
        return -(log_prior(g, log_g) + (weight * jax.nn.logsumexp(lj, -1)).sum() + log_jac)
    return potential


def run_chain(job: dict) -> dict:
    """One NumPyro NUTS chain (module level so that worker processes can import it); the
    result has :func:`~.engine.run_chain`'s layout. The potential runs in float64, as torch's,
    inside JAX's ``enable_x64`` context: a chain run in the caller's process (no workers)
    leaves its JAX settings as they were."""
    if job.get("in_worker"):
        # one of run_chains' workers: XLA's CPU ops on one thread, the chains are the
        # parallelism (as torch's one thread in engine.run_chain)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    import jax

    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:                       # JAX < 0.5
        from jax.experimental import enable_x64
    with enable_x64(True):
        return _run_chain(job)


def _run_chain(job: dict) -> dict:
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    from .engine import chain_start, to_constrained, unflatten_sites
    from .models import get_model

    model = get_model(job["model"])
    names = list(model.sites)
    shapes, centre, z0 = chain_start(model, job)      # the same chain start as engine.run_chain's
    potential = make_potential(model, job, len(job["weight"]))
    whiten = None if job["whiten"] is None else torch.as_tensor(job["whiten"])
    if job["sample_whitened"] and whiten is not None:
        whiten_j, centre_j = jnp.asarray(whiten.numpy()), jnp.asarray(centre.numpy())

        def target(z):   # whitened coordinates -> unconstrained (constant Jacobian, dropped)
            return potential(centre_j + whiten_j @ z)

        def to_unconstrained(z):
            return centre + z @ whiten.T
        init = z0
    else:             # unconstrained coordinates, NumPyro's diagonal metric; the start spread as above
        target, init = potential, centre + (whiten @ z0 if whiten is not None else z0)

        def to_unconstrained(z):
            return z
    kernel = NUTS(potential_fn=target, target_accept_prob=job["target_accept_prob"],
                  max_tree_depth=job["max_tree_depth"], adapt_mass_matrix=job["adapt_metric"])
    thin = job.get("thinning", 1)
    transitions = job["num_samples"] * thin
    mcmc = MCMC(kernel, num_warmup=job["warmup_steps"], num_samples=transitions, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(job["seed"]), init_params=jnp.asarray(init.numpy()),
             extra_fields=("num_steps", "diverging"))
    z = torch.as_tensor(np.array(mcmc.get_samples()[thin - 1::thin]))          # the last of each t
    extra = mcmc.get_extra_fields()
    unconstrained = unflatten_sites(to_unconstrained(z), shapes)
    constrained = {s: to_constrained(model.sites[s].support, unconstrained[s])[0] for s in names}
    return {"samples": {s: v.numpy() for s, v in constrained.items()},
            "diverging": np.asarray(extra["diverging"]).reshape(-1, thin).any(-1),
            "tree_size": np.asarray(extra["num_steps"]).reshape(-1, thin).sum(-1)}
