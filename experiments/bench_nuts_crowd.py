"""Benchmark: Dawid–Skene NUTS at crowdsourcing scale, 4 chains × 500 draws, on a sparse crowd
of 1,000 items × 100 annotators × 4 classes with 10 labels per item (1,600 confusion
parameters), for a few sampler settings.

Reports wall time, the largest split R-hat and the smallest bulk ESS over π and every
confusion entry, divergences, and whether the chains stayed in the mode where annotators
beat chance (accuracy against the planted truth, equal to EM's when they do).

    python experiments/bench_nuts_crowd.py --out experiments/results/bench_nuts_crowd
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregation import crowd  # noqa: E402  (the benchmark's crowd generator)

#: (target_accept_prob, warm-up steps)
SETTINGS = [(0.65, 300), (0.65, 500), (0.8, 300)]


def run(target_accept: float, warmup: int, samples: int) -> dict:
    from bayes_w2s import fit_posterior
    votes, truth, _ = crowd(1000, 100, 4, 10)
    em = fit_posterior(votes, model="dawid_skene", method="em", num_classes=4)
    t0 = time.perf_counter()
    post = fit_posterior(votes, model="dawid_skene", method="nuts", num_classes=4, num_chains=4,
                         num_samples=samples, warmup_steps=warmup, target_accept_prob=target_accept, progress=False)
    wall = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = post.diagnostics(warn=False)
    return {"target_accept_prob": target_accept, "warmup": warmup, "draws": samples, "seconds": round(wall, 1),
            "max_rhat": round(d["max_rhat"], 4), "min_ess_bulk": round(d["min_ess_bulk"]),
            "divergences": int(d["divergences"]), "accuracy": float((post.labels == truth).mean()),
            "em_accuracy": float((em.labels == truth).mean()), "workers": post.info.get("workers")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--out", default="experiments/results/bench_nuts_crowd")
    args = ap.parse_args()
    rows = []
    for tap, warmup in SETTINGS:
        rows.append(run(tap, warmup, args.draws))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Dawid–Skene NUTS on a sparse crowd (1,000 items × 100 annotators × 4 classes, 10 labels per item)", "",
             f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; 4 chains × "
             f"{args.draws} draws in worker processes. Goal: ≤ 120 s, R-hat ≤ 1.01, no label switching.", "",
             "| target_accept_prob | warm-up | seconds | max R-hat | min bulk ESS | divergences | accuracy | EM accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['target_accept_prob']} | {r['warmup']} | {r['seconds']} | {r['max_rhat']} | {r['min_ess_bulk']} "
              f"| {r['divergences']} | {100 * r['accuracy']:.1f}% | {100 * r['em_accuracy']:.1f}% |" for r in rows]
    lines += ["", "```", "python experiments/bench_nuts_crowd.py " + " ".join(sys.argv[1:]), "```"]
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
