"""Rescore the committed generation runs' stored test predictions with today's SLU metric.

Every generation results folder keeps each row's test predictions
(``predictions_seed<s>.jsonl``). The committed tables were scored when the runs were made;
a later fix of the metric (commit ca90bcf: a repeated JSON key is read as two entities, as
SLURP's entity lists allow, and deep nesting as malformed) changes some figures. This script
scores the same predictions against the same references with the current
:func:`bayes_w2s.metrics.slu.slu_scores` and reports, per run, each row's SLU-F1 (mean over
seeds) as committed and as rescored, and which pairs of rows change order.

    python experiments/rescore_generation.py --out experiments/results/rescored_generation
"""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import warnings
from pathlib import Path

import pandas as pd

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics.slu import slu_scores
from bayes_w2s.pipeline import experiment_task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from markdown_result import write_markdown  # noqa: E402


def rescore(run: str) -> pd.DataFrame:
    """``[method] committed, rescored`` test SLU-F1 (%), means over the run's seeds."""
    cfg = ExperimentConfig.from_yaml(ROOT / "configs" / f"{run}.yaml")
    references = dict(zip(*(experiment_task(cfg).test[c] for c in ("id", "target"))))
    committed = pd.read_csv(ROOT / "results" / run / "results.csv")
    rows = []
    for path in sorted((ROOT / "results" / run).glob("predictions_seed*.jsonl")):
        seed = int(path.stem.removeprefix("predictions_seed"))
        records = [json.loads(line) for line in path.read_text().splitlines()]
        refs = [references[r["id"]] for r in records]
        for method in records[0]:
            if method != "id":
                rows.append({"seed": seed, "method": method,
                             "rescored": 100 * slu_scores([r[method] for r in records], refs)["slu_f1"]})
    new = pd.DataFrame(rows)
    both = new.merge(committed.assign(committed=100 * committed["slu_f1"])[["seed", "method", "committed"]],
                     on=["seed", "method"], how="inner")
    return both.groupby("method", sort=False)[["committed", "rescored"]].mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="config names (default: every results folder with predictions)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    runs = args.runs or sorted({p.parent.name for p in (ROOT / "results").glob("*/predictions_seed*.jsonl")})
    lines = ["# Generation runs rescored with today's SLU metric", "",
             "Test SLU-F1 (%), mean over each run's seeds, of the stored predictions: as committed and as "
             "scored now. *Order changes* lists the pairs of rows whose order differs.", "",
             "| run | seeds | largest change (row: committed → rescored) | mean abs. change | order changes |",
             "|---|---|---|---|---|"]
    for run in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = rescore(run)
        delta = (table["rescored"] - table["committed"]).abs()
        top = delta.idxmax()
        flips = [f"{a} / {b}" for a, b in itertools.combinations(table.index, 2)
                 if (table.loc[a, "committed"] - table.loc[b, "committed"])
                 * (table.loc[a, "rescored"] - table.loc[b, "rescored"]) < 0]
        seeds = len(list((ROOT / "results" / run).glob("predictions_seed*.jsonl")))
        lines.append(f"| {run} | {seeds} | {top}: {table.loc[top, 'committed']:.2f} → {table.loc[top, 'rescored']:.2f} "
                     f"| {delta.mean():.2f} | {'; '.join(flips) or 'none'} |")
    write_markdown(args.out, "result.md", lines,
                   "python experiments/rescore_generation.py " + shlex.join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
