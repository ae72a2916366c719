"""Time one Dawid–Skene NUTS fit on the crowd benchmark (1,000 items × 100 annotators × 4
classes, 10 labels per item; 4 chains, 300 warm-up, target_accept 0.65) and print one JSON
line: wall time, sampling time, max R-hat, min bulk ESS, accuracy against the planted truth.

To compare two versions of the library, run them back to back with nothing else on the
cores, each from its own checkout on ``PYTHONPATH`` (the spawned chain workers inherit it):

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python experiments/time_nuts_crowd.py --draws 1000
    python experiments/time_nuts_crowd.py --draws 1000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregation import crowd  # noqa: E402  (the benchmark's crowd generator)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import bayes_w2s
    from bayes_w2s import fit_posterior
    votes, truth, _ = crowd(1000, 100, 4, 10)
    started = time.perf_counter()
    post = fit_posterior(votes, model="dawid_skene", method="nuts", num_classes=4, num_chains=4,
                         num_samples=args.draws, warmup_steps=300, target_accept_prob=0.65, progress=False,
                         seed=args.seed)
    wall = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = post.diagnostics(warn=False)
    print(json.dumps({"library": bayes_w2s.__file__, "draws": args.draws, "seed": args.seed,
                      "seconds": round(wall, 1), "sampling_seconds": round(post.info["sampling_seconds"], 1),
                      "max_rhat": round(d["max_rhat"], 4), "min_ess_bulk": round(d["min_ess_bulk"]),
                      "accuracy": float((post.labels == truth).mean())}), flush=True)


if __name__ == "__main__":
    main()
