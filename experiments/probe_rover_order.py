"""How much ROVER's consensus depends on the order in which the weak models are listed.

ROVER (Fiscus, 1997) aligns the hypotheses one at a time, each against the network built
so far, so a different order can build different slots. This script refits the
``word_reliability`` consensus the way the generation pipeline does (reliabilities learnt on
strong_train, applied to the test items without a refit, constrained to well-formed
targets) for every order of the weak models, on the weak hypotheses a pipeline run stored,
and scores each consensus on the test references.

    python experiments/probe_rover_order.py slurp_cpu slurp_w2s_cpu snips_w2s_cpu \
        --out experiments/results/rover_order
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

from bayes_w2s import fit_posterior
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics.slu import slu_scores
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.tasks.generation import is_well_formed
from bayes_w2s.weak.hypotheses import WeakHypotheses

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from markdown_result import write_markdown  # noqa: E402


def orders(run: str, seed: int):
    """``[(order, test SLU-F1, consensus texts)]`` for every order of the run's weak models."""
    cfg = ExperimentConfig.from_yaml(ROOT / "configs" / f"{run}.yaml")
    refs = list(experiment_task(cfg).test["target"])
    folder = ROOT / "results" / run
    train = WeakHypotheses.load(folder / f"weak_hypotheses_seed{seed}_strong_train.json.gz")
    test = WeakHypotheses.load(folder / f"weak_hypotheses_seed{seed}_test.json.gz")
    out = []
    for order in itertools.permutations(train.model_names):
        with warnings.catch_warnings():   # "items the constraint cannot fix": the same in every order
            warnings.simplefilter("ignore")
            consensus = (fit_posterior(train.select(list(order)), model="word_reliability", method="em")
                         .predict(test.select(list(order))).constrain(is_well_formed).consensus)
        out.append((order, slu_scores(consensus, refs)["slu_f1"], consensus))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="config names whose results folder holds stored weak hypotheses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    lines = ["# ROVER's consensus in every order of the weak models", "",
             f"Seed {args.seed}'s stored weak hypotheses; `word_reliability` by EM on strong_train, applied to test "
             "(as the pipeline's `weak_rover` row). The first order is the config's.", "",
             "| run | order of the weak models | test SLU-F1 (%) | test items whose consensus differs from the "
             "config order's |", "|---|---|---|---|"]
    for run in args.runs:
        rows = orders(run, args.seed)
        base = rows[0][2]
        for order, f1, consensus in rows:
            changed = sum(a != b for a, b in zip(consensus, base))
            lines.append(f"| {run} | {', '.join(order)} | {100 * f1:.2f} | {changed} of {len(base)} |")
        f1s = np.array([f1 for _, f1, _ in rows])
        lines.append(f"| {run} | range over the {len(rows)} orders | {100 * f1s.min():.2f}–{100 * f1s.max():.2f} "
                     f"(spread {100 * np.ptp(f1s):.2f}) | |")
    write_markdown(args.out, "result.md", lines,
                   "python experiments/probe_rover_order.py " + shlex.join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
