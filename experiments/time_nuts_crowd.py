"""Time one Dawid–Skene NUTS fit on the crowd benchmark (1,000 items × 100 annotators × 4
classes, 10 labels per item; 4 chains, 300 warm-up, target_accept 0.65) and print one JSON
line: wall time, sampling time, max R-hat, min bulk ESS, accuracy against the planted truth.

To compare two versions of the library, run them back to back with nothing else on the
cores, each from its own checkout on ``PYTHONPATH`` (the spawned chain workers inherit it):

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python experiments/time_nuts_crowd.py --draws 1000
    python experiments/time_nuts_crowd.py --draws 1000

Sampler settings against each other, back to back, each row appended to ``--out``'s table:

    python experiments/time_nuts_crowd.py --draws 500 --seed 0 --out experiments/results/nuts_jitter_timing
    python experiments/time_nuts_crowd.py --draws 500 --seed 0 --depth 4 --jitter 0.5 --out …
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
    ap.add_argument("--depth", type=int, default=8, help="max_tree_depth")
    ap.add_argument("--jitter", type=float, default=0.0, help="step_size_jitter")
    ap.add_argument("--out", help="folder whose results.json / results.md gain this run's row")
    args = ap.parse_args()
    import bayes_w2s
    from bayes_w2s import fit_posterior
    votes, truth, _ = crowd(1000, 100, 4, 10)
    started = time.perf_counter()
    post = fit_posterior(votes, model="dawid_skene", method="nuts", num_classes=4, num_chains=4,
                         num_samples=args.draws, warmup_steps=300, target_accept_prob=0.65, progress=False,
                         seed=args.seed, max_tree_depth=args.depth, step_size_jitter=args.jitter)
    wall = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = post.diagnostics(warn=False)
    row = {"library": bayes_w2s.__file__, "draws": args.draws, "seed": args.seed, "max_tree_depth": args.depth,
           "step_size_jitter": args.jitter, "seconds": round(wall, 1),
           "sampling_seconds": round(post.info["sampling_seconds"], 1),
           "leapfrog_per_draw": round(float(post.sample_stats["tree_size"].mean()), 1),
           "max_rhat": round(d["max_rhat"], 4), "min_ess_bulk": round(d["min_ess_bulk"]),
           "divergences": int(d["divergences"]), "accuracy": float((post.labels == truth).mean())}
    print(json.dumps(row), flush=True)
    if args.out:
        append_row(Path(args.out), row, "python experiments/time_nuts_crowd.py " + " ".join(sys.argv[1:]))


def append_row(out: Path, row: dict, command: str) -> None:
    from markdown_result import write_markdown
    saved = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else []
    rows = [*saved, {**row, "command": command}]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Dawid–Skene NUTS on the crowd benchmark: sampler settings timed one after another", "",
             "1,000 items × 100 annotators × 4 classes, 10 labels per item; 4 chains, 300 warm-up, target_accept "
             "0.65, chains in worker processes; rows in the order they ran, nothing else on the 2 cores. Goal: "
             "4 × 500 draws in ≤ 120 s with max R-hat ≤ 1.01.", "",
             "| draws | seed | max tree depth | step jitter | seconds | leapfrog / draw | max R-hat | min bulk ESS "
             "| divergences | accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['draws']} | {r['seed']} | {r['max_tree_depth']} | {r['step_size_jitter']} | {r['seconds']} "
              f"| {r['leapfrog_per_draw']} | {r['max_rhat']} | {r['min_ess_bulk']} | {r['divergences']} "
              f"| {100 * r['accuracy']:.1f}% |" for r in rows]
    write_markdown(out, "results.md", lines, "\n".join(dict.fromkeys(r["command"] for r in rows)))


if __name__ == "__main__":
    main()
