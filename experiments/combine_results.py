"""One before/after table from several results folders of the same task and split: every
row of every folder (a method that appears in several keeps the last folder's row, and
the table says which folder), each row the mean ± sd over the seeds it has among the last
folder's, PGR recomputed per seed against the weak rows and the ceiling of the last folder
that has them.

    python experiments/combine_results.py experiments/results/slurp_cpu experiments/results/slurp_dpo_cpu \
        experiments/results/slurp_w2s_cpu --out experiments/results/slurp_w2s_cpu/combined.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_w2s.report import add_pgr

COLUMNS = [("slu_f1", "test SLU-F1 (%)"), ("exact_match", "exact match (%)"), ("slu_precision", "SLU prec. (%)"),
           ("slu_recall", "SLU rec. (%)"), ("no_slots", "`{}` outputs (%)"), ("malformed", "malformed (%)"),
           ("pgr_best_weak", "PGR vs best weak (%)"), ("pgr_mean_weak", "PGR vs mean weak (%)")]


def load(folder: Path) -> tuple[pd.DataFrame, dict]:
    meta = json.loads((folder / "meta.json").read_text())
    df = pd.read_csv(folder / "results.csv")
    df["from"] = folder.name
    return df, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="results folders, oldest first (later rows replace earlier ones)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: the last folder's seeds")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    frames, metas = zip(*(load(Path(f)) for f in a.results))
    split = {json.dumps([m["split_sizes"], m["config"]["split_seed"], m["config"]["task"]]) for m in metas}
    if len(split) != 1:
        raise SystemExit(f"the folders differ in task, split or split seed: {split}")
    seeds = a.seeds or sorted(set(frames[-1]["seed"]))
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["seed"].isin(seeds)]
    # a method named in several folders keeps the last folder's row; weak and ceiling rows too
    rows = rows.drop_duplicates(["seed", "method"], keep="last").drop(
        columns=[c for c in rows if c.startswith("pgr_")])
    rows = add_pgr(rows, "slu_f1")
    order = {"weak": 0, "weak_ensemble": 1, "student": 2, "oracle": 3, "ceiling": 4}
    g = rows.groupby(["kind", "method", "from"], sort=False)
    cols = [c for c, _ in COLUMNS if c in rows]
    mean, sd, n = g[cols].mean(), g[cols].std(ddof=1), g.size()
    table = mean.reset_index()
    table["order"] = table["kind"].map(order)
    table = table.sort_values("order", kind="stable")
    lines = ["| method | kind | from | seeds | " + " | ".join(label for c, label in COLUMNS if c in cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        key = (r["kind"], r["method"], r["from"])
        cells = []
        for c in cols:
            m, s = mean.loc[key, c], sd.loc[key, c]
            cells.append("–" if np.isnan(m) else f"{100 * m:.1f}" + ("" if np.isnan(s) else f" ± {100 * s:.1f}"))
        lines.append(f"| {r['method']} | {r['kind']} | {r['from']} | {n.loc[key]} | " + " | ".join(cells) + " |")
    cmd = "python experiments/combine_results.py " + " ".join(a.results) + f" --out {a.out}"
    text = (f"# Before and after, one table (seeds {seeds}, mean ± sd)\n\n"
            "Every row of the folders below on the same task and split; *from* names the folder whose run made "
            "the row (a method in several folders keeps the last one's), *seeds* how many of the seeds it has. "
            "PGR per seed against the weak rows and the ceiling of the same table.\n\n" + "\n".join(lines) + f"\n\n```\n{cmd}\n```\n")
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
