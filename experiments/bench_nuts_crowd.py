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


def rhat_spread(seed: int, samples: int) -> dict:
    """Where the largest R-hat sits: how many of the 1,600 confusion entries exceed 1.01, the
    median, and the entry and bulk ESS at the maximum (a slowly mixing entry would show the
    same entry, with a small ESS, for every seed)."""
    import arviz as az

    from bayes_w2s import fit_posterior
    votes, _, _ = crowd(1000, 100, 4, 10)
    post = fit_posterior(votes, model="dawid_skene", method="nuts", num_classes=4, num_chains=4, num_samples=samples,
                         warmup_steps=300, target_accept_prob=0.65, progress=False, seed=seed)
    idata = post.to_inference_data()
    rhat = az.rhat(idata, var_names=["theta"])["theta"].values
    ess = az.ess(idata, var_names=["theta"], method="bulk")["theta"].values
    at = np.unravel_index(np.nanargmax(rhat), rhat.shape)
    return {"seed": seed, "max_rhat": round(float(rhat.max()), 4), "median_rhat": round(float(np.median(rhat)), 4),
            "over_1.01": int((rhat > 1.01).sum()), "entries": int(rhat.size),
            "at": "annotator {}, true class {}, label {}".format(*map(int, at)), "ess_at_max": round(float(ess[at])),
            "labels_of_that_annotator": int((votes[:, at[0]] >= 0).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--rhat-seeds", type=int, nargs="*", default=[0, 1],
                    help="chain seeds at target_accept 0.65 for the where-is-the-max table")
    ap.add_argument("--out", default="experiments/results/bench_nuts_crowd")
    args = ap.parse_args()
    rows = []
    for tap, warmup in SETTINGS:
        rows.append(run(tap, warmup, args.draws))
        print(json.dumps(rows[-1]), flush=True)
    spread = [rhat_spread(seed, args.draws) for seed in args.rhat_seeds]
    for r in spread:
        print(json.dumps(r), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"settings": rows, "rhat_spread": spread}, indent=1))
    lines = ["# Dawid–Skene NUTS on a sparse crowd (1,000 items × 100 annotators × 4 classes, 10 labels per item)", "",
             f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; 4 chains × "
             f"{args.draws} draws in worker processes. Goal: ≤ 120 s, R-hat ≤ 1.01, no label switching.", "",
             "| target_accept_prob | warm-up | seconds | max R-hat | min bulk ESS | divergences | accuracy | EM accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['target_accept_prob']} | {r['warmup']} | {r['seconds']} | {r['max_rhat']} | {r['min_ess_bulk']} "
              f"| {r['divergences']} | {100 * r['accuracy']:.1f}% | {100 * r['em_accuracy']:.1f}% |" for r in rows]
    lines += ["", "Where the largest R-hat sits (target_accept 0.65, warm-up 300), per chain seed:", "",
              "| seed | max R-hat | median R-hat | entries > 1.01 | entry at the max | bulk ESS there | its annotator's labels |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['max_rhat']} | {r['median_rhat']} | {r['over_1.01']} of {r['entries']} | {r['at']} "
              f"| {r['ess_at_max']} | {r['labels_of_that_annotator']} |" for r in spread]
    lines += ["", "```", "python experiments/bench_nuts_crowd.py " + " ".join(sys.argv[1:]), "```"]
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
