"""Probe: Dawid–Skene NUTS on the crowd benchmark (1,000 items × 100 annotators × 4 classes,
10 labels per item) with a block-diagonal Laplace metric — each confusion row's and π's own
3 × 3 Hessian block, whitened as the library whitens the full Hessian — against the library's
dense one, same chains and seeds (4 × 500 draws, 300 warm-up, target_accept 0.65).

The block metric is stored dense here, so the seconds do not show its saving; what this
measures is whether mixing per leapfrog step survives dropping the cross-row couplings (tree
size, ESS, R-hat). The saving is read from ``experiments/profile_nuts_gradient.py``: the dense
matvec is about half of each gradient, a block one costs next to nothing.

    python experiments/probe_block_whitening.py --seeds 0 1 --out experiments/results/block_whitening_probe
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregation import crowd  # noqa: E402  (the benchmark's crowd generator)
from markdown_result import write_markdown  # noqa: E402


def block_whitening(potential, start: dict, max_dim: int = 4000, floor: float = 1.0, block: int = 3):
    """``laplace_whitening`` restricted to ``block`` × ``block`` diagonal blocks of the Hessian
    (with K = 4 classes every site's last axis has 3 unconstrained coordinates)."""
    from bayes_w2s.posterior.engine import laplace_hessian
    hessian = laplace_hessian(potential, start)
    whiten = torch.zeros_like(hessian)
    for i in range(0, len(hessian), block):
        evals, evecs = torch.linalg.eigh(hessian[i:i + block, i:i + block])
        whiten[i:i + block, i:i + block] = evecs * evals.clamp_min(floor).rsqrt()
    return whiten


def run(seed: int, metric: str) -> dict:
    import arviz as az

    from bayes_w2s import fit_posterior
    from bayes_w2s.posterior import engine
    votes, truth, _ = crowd(1000, 100, 4, 10)
    default = engine.laplace_whitening
    if metric == "block":
        engine.laplace_whitening = block_whitening      # computed in this process, before the chains
    try:
        post = fit_posterior(votes, model="dawid_skene", method="nuts", num_classes=4, num_chains=4, num_samples=500,
                             warmup_steps=300, target_accept_prob=0.65, progress=False, seed=seed)
    finally:
        engine.laplace_whitening = default
    idata = post.to_inference_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata, var_names=["theta", "pi"])
        bulk = az.ess(idata, var_names=["theta"], method="bulk")["theta"].values
        tail = az.ess(idata, var_names=["theta"], method="tail")["theta"].values
    tree = idata.sample_stats["tree_size"].values
    return {"seed": seed, "metric": metric, "max_rhat": round(max(float(rhat[v].values.max()) for v in rhat), 4),
            "min_ess_bulk": round(float(bulk.min())), "median_ess_bulk": round(float(np.median(bulk))),
            "min_ess_tail": round(float(tail.min())), "median_ess_tail": round(float(np.median(tail))),
            "mean_tree_size": round(float(tree.mean()), 1), "accuracy": float((post.labels == truth).mean())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="experiments/results/block_whitening_probe")
    args = ap.parse_args()
    rows = [run(seed, metric) for seed in args.seeds for metric in ("dense", "block")]
    lines = ["# Block-diagonal against dense Laplace metric: Dawid–Skene NUTS on the 1,000 × 100 × 4 crowd", "",
             "4 chains × 500 draws, 300 warm-up, target_accept 0.65; leapfrog steps per draw = tree size.", "",
             "| seed | metric | max R-hat | min / median bulk ESS | min / median tail ESS | leapfrog steps per draw "
             "| accuracy |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['metric']} | {r['max_rhat']} | {r['min_ess_bulk']} / {r['median_ess_bulk']} "
              f"| {r['min_ess_tail']} / {r['median_ess_tail']} | {r['mean_tree_size']} | {100 * r['accuracy']:.1f}% |"
              for r in rows]
    write_markdown(args.out, "result.md", lines,
                   "python experiments/probe_block_whitening.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
