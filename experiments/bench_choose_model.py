"""How much fitting the candidates at once saves ``choose_model``: the same search, one candidate
after another (``n_jobs=1``) and in ``--jobs`` processes, on an experiment's stored weak labels
(strong_train and the gold slice, seed by seed), in one command, with the two searches' results
compared number for number.

    python experiments/bench_choose_model.py experiments/results/agnews --seeds 0 \
        --out experiments/results/bench_choose_model/agnews.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.posterior.selection import DEFAULT_CANDIDATES, choose_model
from bayes_w2s.student.posterior_targets import concat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results folder with meta.json and weak_labels_seed*_{strong_train,weak_val}.npz")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--jobs", type=int, default=2, help="processes of the parallel search")
    ap.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    ap.add_argument("--out", required=True, help="markdown file to write")
    args = ap.parse_args(argv)
    if args.jobs < 2 and args.jobs != -1:
        ap.error(f"--jobs must be 2 or more, or -1, got {args.jobs}")
    results = Path(args.results)
    cfg = ExperimentConfig(**json.loads((results / "meta.json").read_text())["config"])
    task = experiment_task(cfg)
    gold_truth = dict(zip(task.weak_val["id"], task.weak_val["label"]))
    lines = [f"# `choose_model` on {cfg.name}: candidates one after another, and {args.jobs} at once", "",
             f"Candidates: {', '.join(f'`{c}`' for c in args.candidates)}. Per seed, the same search run twice in "
             f"one process; *max |Δ|*: the largest difference between the two searches' item posteriors, over "
             f"every candidate; *same choice*: chosen candidate, temperature, and every candidate's warnings and "
             f"errors equal. Each candidate's seconds are from the sequential search. {platform.machine()}, "
             f"{os.cpu_count()} cores.", "",
             "| seed | items × weak models × classes | sequential (s) | parallel (s) | speed-up | max \\|Δ\\| | "
             "same choice | seconds per candidate |", "|---|---|---|---|---|---|---|---|"]
    for seed in args.seeds:
        train = WeakLabels.load(results / f"weak_labels_seed{seed}_strong_train.npz")
        gold = WeakLabels.load(results / f"weak_labels_seed{seed}_weak_val.npz")
        labels, n = concat(train, gold), train.num_items
        gold_y = np.array([gold_truth[i] for i in gold.item_ids])
        searches, seconds = [], []
        for jobs in (1, args.jobs):
            start = time.perf_counter()
            searches.append(choose_model(labels, np.arange(n, labels.num_items), gold_y, args.candidates,
                                         n_jobs=jobs, progress=False))
            seconds.append(time.perf_counter() - start)
        one, many = searches
        fitted = set(one.item_probs) & set(many.item_probs)
        delta = max(float(np.abs(one.item_probs[c] - many.item_probs[c]).max()) for c in fitted)
        same = (one.chosen == many.chosen and one.temperature == many.temperature and set(one.item_probs) == fitted
                == set(many.item_probs) and one.scores[["warning", "error"]].equals(many.scores[["warning", "error"]]))
        each = ", ".join(f"`{c}` {s:.0f}" for c, s in one.scores["seconds"].items())
        lines.append(f"| {seed} | {' × '.join(map(str, labels.probs.shape))} | {seconds[0]:.1f} | {seconds[1]:.1f} | "
                     f"{seconds[0] / seconds[1]:.2f}× | {delta:.1e} | {'yes' if same else 'NO'} | {each} |")
        print(lines[-1], flush=True)
    command = "python experiments/bench_choose_model.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_markdown(Path(args.out).parent, Path(args.out).name, lines, command)


if __name__ == "__main__":
    main()
