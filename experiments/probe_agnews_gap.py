"""Are agnews.yaml's weak supervisors weak because of their 100 labels, or because they
were under-trained? Each weak backbone's frozen-feature head is trained on the same 100
weak_train items for 10 / 30 / 100 epochs and scored on test, next to the strong model
(Gemma-3) trained on the 2,000 strong_train labels (the ceiling). Uses the experiment's
own split, trainer and cached features.

    python experiments/probe_agnews_gap.py --out experiments/results/agnews_gap_probe
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from bayes_w2s import train_student
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import accuracy
from bayes_w2s.pipeline import experiment_task


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="experiments/configs/agnews.yaml")
    ap.add_argument("--epochs", type=float, nargs="+", default=[10, 30, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/results/agnews_gap_probe")
    a = ap.parse_args()
    cfg = ExperimentConfig.from_yaml(a.config)
    task = experiment_task(cfg)
    y = np.array(task.test["label"])

    def score(model, split, epochs):
        d = task.split(split)
        config = dataclasses.replace(cfg.weak_train if split == "weak_train" else cfg.student_train, epochs=epochs)
        s = train_student(model, d, np.array(d["label"]), label_names=task.label_names, config=config, seed=a.seed)
        return accuracy(s.predict_proba(task.test), y)

    rows = [(m, "weak_train", len(task.weak_train), e, score(m, "weak_train", e))
            for m in cfg.weak_models for e in a.epochs]
    rows.append((cfg.strong_model, "strong_train (ceiling)", len(task.strong_train), cfg.student_train.epochs,
                 score(cfg.strong_model, "strong_train", cfg.student_train.epochs)))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    best = {m: max(r[4] for r in rows if r[0] == m) for m in cfg.weak_models}
    cmd = f"python experiments/probe_agnews_gap.py --config {a.config} --seed {a.seed} --out {a.out}"
    (out / "result.md").write_text(
        f"# AG News: weak heads on {len(task.weak_train)} labels vs the ceiling\n\n"
        f"Split {task.sizes()} (split seed {cfg.split_seed}), frozen backbones + linear head "
        f"(lr {cfg.weak_train.learning_rate}, batch {cfg.weak_train.batch_size}), training seed {a.seed}, "
        "test accuracy.\n\n| model | trained on | items | epochs | test acc |\n|---|---|---|---|---|\n"
        + "".join(f"| {m} | {s} | {n} | {e:g} | {acc:.1%} |\n" for m, s, n, e, acc in rows)
        + f"\nBest weak head at any epoch count: {max(best.values()):.1%} ({max(best, key=best.get)}); "
        f"ceiling {rows[-1][4]:.1%}: a lead of {100 * (rows[-1][4] - max(best.values())):.1f} points.\n\n"
        f"```\n{cmd}\n```\n")
    print((out / "result.md").read_text())


if __name__ == "__main__":
    main()
