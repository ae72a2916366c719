"""Does CosmosQA rise above chance for our frozen backbones? A MiniLM-L6 probe.

Binary cast (Burns et al.): always answering "incorrect" scores 75%; picking the
highest-scored of a question's 4 answers is chance at 25%. If the cheapest backbone is at
chance, the full weak-to-strong table (experiments/configs/cosmosqa.yaml) is not worth its
CPU hours on this machine.

    python experiments/probe_cosmosqa.py --out experiments/results/cosmosqa_probe
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bayes_w2s import TrainConfig, load_task, train_student
from bayes_w2s.metrics import accuracy


def per_question_accuracy(p_correct: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    hits = [labels[idx[p_correct[idx].argmax()]] == 1 for idx in (np.flatnonzero(groups == g) for g in np.unique(groups))]
    return float(np.mean(hits))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--out", default="experiments/results/cosmosqa_probe")
    a = ap.parse_args()
    sizes = {"weak_train": 800, "strong_train": 1200, "test": 800}
    task = load_task("cosmosqa", seed=0, sizes=sizes)
    y, groups = np.array(task.test["label"]), np.array(task.test["group"])
    rows = []
    for split in ("weak_train", "strong_train"):
        d = task.split(split)
        s = train_student(a.model, d, np.array(d["label"]), label_names=task.label_names, config=TrainConfig(max_length=192))
        p = s.predict_proba(task.test)
        rows.append((split, len(d), accuracy(p, y), per_question_accuracy(p[:, 1], y, groups)))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = f"python experiments/probe_cosmosqa.py --model {a.model} --out {a.out}"
    (out / "result.md").write_text(
        f"# CosmosQA: {a.model} probe (frozen features, linear head)\n\nSplit sizes {task.sizes()} (split seed 0, "
        f"answers of a question kept together). Majority baseline (always *incorrect*): {1 - y.mean():.1%}; "
        "per-question chance: 25%.\n\n| trained on | items | binary acc | per-question 4-way acc |\n|---|---|---|---|\n"
        + "".join(f"| {s} | {n} | {b:.1%} | {q:.1%} |\n" for s, n, b, q in rows)
        + ("\nBelow the majority baseline: with frozen features CosmosQA does not rise above chance, so no "
           "weak-to-strong table is reported for it.\n" if max(r[2] for r in rows) <= 1 - y.mean() else
           "\nAbove the majority baseline: a weak-to-strong table is worth running (configs/cosmosqa.yaml).\n")
        + f"\n```\n{cmd}\n```\n")
    print((out / "result.md").read_text())


if __name__ == "__main__":
    main()
