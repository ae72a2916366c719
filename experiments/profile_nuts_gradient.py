"""Profile: what one NUTS gradient costs on the crowd benchmark's Dawid–Skene posterior
(1,000 items × 100 annotators × 4 classes, 10 labels per item; 1,203 unconstrained
parameters), split into the potential itself and the dense Laplace-whitening matvec that
every leapfrog step pays on top (see ``bayes_w2s.posterior.engine.run_chain``).

Each part is traced with ``torch.jit.trace`` as ``run_chain`` does, on one thread, and timed
as value + gradient, median of 5 repeats of 200 calls. Ratios within this one process are
what to read; the absolute times drift with the machine.

    python experiments/profile_nuts_gradient.py --out experiments/results/profile_nuts_gradient
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregation import crowd  # noqa: E402  (the benchmark's crowd generator)
from markdown_result import write_markdown  # noqa: E402


def whitened_problem():
    """The potential, the sampler's start and its whitening matrix, as ``fit_nuts`` builds them."""
    from bayes_w2s.posterior import engine
    from bayes_w2s.posterior.inputs import as_label_matrix
    from bayes_w2s.posterior.models import get_model

    votes, _, _ = crowd(1000, 100, 4, 10)
    model = get_model("dawid_skene")
    lm = as_label_matrix(votes, num_classes=4)
    p = model.priors({}, point_estimate=False)
    data = model.prepare(lm, p)
    init = engine.sampler_start(model, data, p)
    start = {s: engine.to_unconstrained(model.sites[s].support, v).detach() for s, v in init.items()
             if s in model.sites}
    potential = engine.make_potential(model, data, p)
    return potential, start, engine.laplace_whitening(potential, start)


def cost_ms(fn, dim: int, calls: int = 200, repeats: int = 5) -> float:
    traced = torch.jit.trace(fn, (torch.zeros(dim, dtype=torch.float64),), check_trace=False)
    z = (0.1 * torch.randn(dim, dtype=torch.float64)).requires_grad_()
    for _ in range(20):
        torch.autograd.grad(traced(z), z)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.autograd.grad(traced(z), z)
        times.append((time.perf_counter() - t0) / calls)
    return 1000 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="experiments/results/profile_nuts_gradient")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    potential, start, whiten = whitened_problem()
    from bayes_w2s.posterior.engine import unflatten_sites
    shapes = {n: v.shape for n, v in start.items()}
    centre = torch.cat([v.reshape(-1) for v in start.values()])
    dim = centre.numel()

    def sites(u):
        return unflatten_sites(u, shapes)
    whiten32 = whiten.float()
    rows = [("potential alone (unwhitened coordinates)", cost_ms(lambda z: potential(sites(centre + z)), dim)),
            ("potential + dense whitening (what run_chain pays)",
             cost_ms(lambda z: potential(sites(centre + z @ whiten.T)), dim)),
            ("dense whitening matvec alone, float64", cost_ms(lambda z: (z @ whiten.T).sum(), dim)),
            ("dense whitening matvec alone, float32", cost_ms(lambda z: (z.float() @ whiten32.T).sum(), dim))]
    full = rows[1][1]
    lines = ["# One NUTS gradient on the crowd benchmark's Dawid–Skene posterior", "",
             f"{platform.machine()}, {os.cpu_count()} CPU cores, one thread, Python {platform.python_version()}, "
             f"torch {torch.__version__}; {dim} unconstrained parameters, whitening matrix {dim} × {dim} "
             f"({whiten.dtype}). Value + gradient, traced, median of 5 × 200 calls.", "",
             "| part | ms per value + gradient | share of the whitened gradient |", "|---|---|---|"]
    lines += [f"| {name} | {ms:.3f} | {ms / full:.2f} |" for name, ms in rows]
    write_markdown(args.out, "results.md", lines,
                   "python experiments/profile_nuts_gradient.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
