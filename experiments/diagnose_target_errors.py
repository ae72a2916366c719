"""How confident the training targets are where they are wrong, and which confusion dominates.

A posterior can be calibrated on average (low ECE) and still put its few errors at high
confidence, where a student under Burns et al.'s auxiliary-confidence loss cannot overrule
them. Reads an experiment's stored training targets (``target_probs_seed*.npz``, written by
``bayes-w2s run``) and, per seed and row, reports on strong_train's hidden truth: the number
of wrong targets, their mean top probability, the share of them above 0.9, the ECE of all
targets, the largest off-diagonal cell of the row's confusion (true → given), and how often the
row overrules a unanimous vote of the weak models. ``--split test`` reads every row's predictions
on test instead (``test_probs_seed*.npz``), students included.

    python experiments/diagnose_target_errors.py experiments/results/snips_intent \
        --rows weak:mpnet-base "DS, T(gold)" "logistic-t + gold, T(gold)" \
        --out experiments/results/target_errors/snips_intent.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from bayes_w2s.metrics import expected_calibration_error, hits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402

CONFIDENT = 0.9


def row_errors(probs: np.ndarray, truth: np.ndarray, label_names: list[str] | None,
               weak_votes: np.ndarray) -> dict:
    """A row's errors, with a tie among its top classes split among them as
    ``bayes_w2s.metrics.accuracy`` does (argmax would hand every tie to the first class)."""
    top = probs == probs.max(-1, keepdims=True)
    share = top / top.sum(-1, keepdims=True)                  # [N, K] credit per class
    miss = 1.0 - hits(probs, truth)                           # expected error per item
    k = probs.shape[-1]
    confusion = np.zeros((k, k))
    np.add.at(confusion, truth, share)
    np.fill_diagonal(confusion, 0)
    true_class, given = np.unravel_index(confusion.argmax(), confusion.shape)
    name = (lambda c: label_names[c]) if label_names else str
    unanimous = (weak_votes == weak_votes[:, :1]).all(-1)
    pick = probs.argmax(-1)
    overruled = unanimous & ~top[np.arange(len(truth)), weak_votes[:, 0]]
    wrong = miss.sum()
    return {"items": len(truth), "wrong": float(wrong),
            "confidence_wrong": float((miss * probs.max(-1)).sum() / wrong) if wrong else float("nan"),
            "confident_share": float((miss * (probs.max(-1) > CONFIDENT)).sum() / wrong) if wrong else float("nan"),
            "ece": float(expected_calibration_error(probs, truth)),
            "top_confusion": f"{name(true_class)} → {name(given)}: {confusion[true_class, given]:.0f}"
                             if confusion.any() else "none",
            "overruled": f"{int(overruled.sum())} of {int(unanimous.sum())} "
                         f"({int((pick == truth)[overruled].sum())} rightly)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="an experiment's results folder (holds target_probs_seed*.npz)")
    ap.add_argument("--rows", nargs="+", required=True, help="target rows, as named in the results table")
    ap.add_argument("--label-names", nargs="+", help="class names, in label order (default: class indices)")
    ap.add_argument("--split", choices=["strong_train", "test"], default="strong_train",
                    help="strong_train: the training targets; test: every row's predictions on test (students too)")
    ap.add_argument("--out", help="markdown file (default: <results>/target_errors.md)")
    args = ap.parse_args()
    results = Path(args.results)
    stem = "target_probs" if args.split == "strong_train" else "test_probs"
    files = sorted(results.glob(f"{stem}_seed*.npz"), key=lambda f: int(f.stem.removeprefix(f"{stem}_seed")))
    if not files:
        raise SystemExit(f"no {stem}_seed*.npz in {results}: run the experiment first")
    what = "the training targets" if args.split == "strong_train" else "the predictions on test"
    items = "targets" if args.split == "strong_train" else "predictions"
    lines = [f"# Where {what} are wrong, and how sure they are there: {results.name}", "",
             f"Per seed, on {args.split}'s hidden truth: wrong {items} (a tie among a row's top classes "
             f"counts as a share of an error, as `accuracy` splits its credit), their mean top probability, the "
             f"share of them above {CONFIDENT}, the ECE of all {items} (15 bins), the largest confusion "
             "(true → given), and how often the row overrules a unanimous vote of the weak models (their argmax; "
             "rightly = the row is right).", "",
             f"| seed | row | wrong / items | mean confidence when wrong | wrong above {CONFIDENT} | ECE (%) "
             "| largest confusion | overrules a unanimous vote |",
             "|---|---|---|---|---|---|---|---|"]
    for path in files:
        seed = path.stem.removeprefix(f"{stem}_seed")
        stored = np.load(path)
        methods = [str(m) for m in stored["methods"]]
        missing = [r for r in args.rows if r not in methods]
        if missing:
            raise SystemExit(f"{path}: no rows {missing}; it has {methods}")
        weak = [i for i, m in enumerate(methods) if m.startswith("weak:")]
        if not weak:
            raise SystemExit(f"{path}: no weak:<model> rows to take the weak models' votes from")
        if args.label_names and len(args.label_names) != stored["probs"].shape[-1]:
            raise SystemExit(f"--label-names gives {len(args.label_names)} names for {stored['probs'].shape[-1]} "
                             "classes")
        weak_votes = np.stack([stored["probs"][i].argmax(-1) for i in weak], -1)
        for row in args.rows:
            r = row_errors(stored["probs"][methods.index(row)], stored["labels"], args.label_names, weak_votes)
            lines.append(f"| {seed} | {row} | {r['wrong']:.0f} / {r['items']} | {r['confidence_wrong']:.2f} "
                         f"| {100 * r['confident_share']:.0f}% | {100 * r['ece']:.1f} | {r['top_confusion']} "
                         f"| {r['overruled']} |")
    out = Path(args.out) if args.out else results / "target_errors.md"
    write_markdown(out.parent, out.name, lines,
                   "python experiments/diagnose_target_errors.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
