"""Test items whose text is also in a training split, and what they do to a table.

SST-2's loader drops every training sentence that is also a test sentence; the other
classification loaders keep the published splits as they are, and some repeat a few texts
across them (SNIPS). This rebuilds an experiment's splits from its stored config
(``meta.json``), counts the test items whose text (whitespace and case folded) is also in
weak_train (the weak models' budget), the gold slice or strong_train, and rescores every row
of the stored test predictions (``test_probs_seed*.npz``) without them.

    python experiments/probe_test_overlap.py experiments/results/agnews experiments/results/snips_intent \
        --out experiments/results/test_overlap
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import hits
from bayes_w2s.pipeline import experiment_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402


def folded(texts) -> list[str]:
    return [" ".join(str(t).lower().split()) for t in texts]


def overlap(results: Path) -> tuple[dict, np.ndarray, list[str]]:
    """Counts per training split, the ``[N_test]`` mask of test items seen in training, test ids."""
    cfg = ExperimentConfig.from_dict(json.loads((results / "meta.json").read_text())["config"])
    task = experiment_task(cfg)
    test = folded(task.test["text"])
    splits = {"weak_train": task.weak_train, "gold slice": task.weak_val, "strong_train": task.strong_train}
    seen, counts = np.zeros(len(test), bool), {}
    for name, split in splits.items():
        if split is None:
            continue
        texts = set(folded(split["text"]))
        inside = np.array([t in texts for t in test])
        counts[name] = int(inside.sum())
        seen |= inside
    counts["test items"] = len(test)
    return counts, seen, [str(i) for i in task.test["id"]]


def rescored(results: Path, seen: np.ndarray, ids: list[str]) -> list[tuple[str, float, float]]:
    """Per row: mean test accuracy (%) over seeds on every test item and on the unseen ones."""
    per_row: dict[str, list[tuple[float, float]]] = {}
    for path in sorted(results.glob("test_probs_seed*.npz")):
        stored = np.load(path)
        if [str(i) for i in stored["ids"]] != ids:
            raise SystemExit(f"{path}: its test items are not the config's test split (rebuilt from meta.json)")
        for name, probs in zip(stored["methods"], stored["probs"]):
            h = hits(probs, stored["labels"])
            per_row.setdefault(str(name), []).append((100 * h.mean(), 100 * h[~seen].mean()))
    return [(name, *np.mean(v, 0)) for name, v in per_row.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="experiment results folders (meta.json, test_probs_seed*.npz)")
    ap.add_argument("--out", required=True, help="folder for result.md")
    args = ap.parse_args()
    lines = ["# Test items also in a training split", "",
             "Texts compared with case and whitespace folded. *Δ* is a row's test accuracy without those items "
             "minus its accuracy on the whole test split (mean over the stored seeds).", ""]
    for folder in map(Path, args.results):
        counts, seen, ids = overlap(folder)
        lines += [f"## {folder.name}", "",
                  ", ".join(f"{k}: {v}" for k, v in counts.items()) + f"; in any: {int(seen.sum())}", ""]
        if not seen.any() or seen.all():   # nothing to leave out, or nothing left
            continue
        rows = rescored(folder, seen, ids)
        if not rows:
            raise SystemExit(f"no test_probs_seed*.npz in {folder}: run the experiment first")
        deltas = np.array([without - full for _, full, without in rows])
        worst = rows[int(np.abs(deltas).argmax())]
        lines += [f"Δ over {len(rows)} rows: min {deltas.min():+.2f}, mean {deltas.mean():+.2f}, max "
                  f"{deltas.max():+.2f} points (largest |Δ|: {worst[0]!r}, {worst[1]:.2f} → {worst[2]:.2f}).", "",
                  "| row | test acc (%) | without seen items (%) | Δ |", "|---|---|---|---|"]
        lines += [f"| {name} | {full:.2f} | {without:.2f} | {without - full:+.2f} |" for name, full, without in rows]
        lines.append("")
    write_markdown(args.out, "result.md", lines, "python experiments/probe_test_overlap.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
