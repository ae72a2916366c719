"""Benchmark: ``train_student`` against a plain ``transformers.Trainer`` on the same
model (real MiniLM-L6 weights, every parameter trained), data and number of steps.

Goal: train_student ≤ 1.05× the plain Trainer's time. Both runs happen in this process,
alternating, ``--repeats`` times each; the ratio of medians is reported.

    python experiments/bench_train_student.py --out experiments/results/bench_train_student
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding, Trainer

from bayes_w2s import TrainConfig, load_task, train_student
from bayes_w2s.backbones import build_classifier
from bayes_w2s.training import training_arguments


class PlainModel(torch.nn.Module):
    """The same PooledClassifier, computing its own loss from ``labels`` as HF models do."""

    def __init__(self, clf):
        super().__init__()
        self.clf = clf

    def forward(self, input_ids, attention_mask, labels=None, **_):
        logits = self.clf(input_ids=input_ids, attention_mask=attention_mask)["logits"]
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def plain_trainer(task, cfg, seed, tmp):
    tok, clf = build_classifier("minilm-l6", 2, mode="full")
    ds = task.strong_train.map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length), batched=True)
    ds = ds.remove_columns([c for c in ds.column_names if c not in ("input_ids", "attention_mask", "label")])
    ds = ds.rename_column("label", "labels")
    args = training_arguments(cfg, seed, tmp, label_names=["labels"], disable_tqdm=True)
    trainer = Trainer(model=PlainModel(clf), args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def ours(task, cfg, seed, tmp):
    t0 = time.perf_counter()
    train_student("minilm-l6", task.strong_train, np.array(task.strong_train["label"]),
                  label_names=task.label_names, config=cfg, seed=seed)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="experiments/results/bench_train_student")
    a = p.parse_args()
    task = load_task("sst2", seed=0, sizes={"weak_train": 10, "strong_train": a.items, "test": 10})
    cfg = TrainConfig(mode="full", epochs=1, batch_size=16, learning_rate=5e-5, max_length=64)
    times = {"plain_trainer": [], "train_student": []}
    import tempfile
    for r in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            times["plain_trainer"].append(plain_trainer(task, cfg, r, tmp))
            times["train_student"].append(ours(task, cfg, r, tmp))
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["train_student"] / med["plain_trainer"]
    steps = int(np.ceil(a.items / cfg.batch_size))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"items": a.items, "steps": steps, "repeats": a.repeats, "seconds": times, "median_seconds": med,
              "ratio_train_student_over_plain": ratio, "goal": "<= 1.05", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "command": f"python experiments/bench_train_student.py --items {a.items} --repeats {a.repeats} --out {a.out}"}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    (out / "result.md").write_text(
        f"# train_student vs plain transformers.Trainer\n\nMiniLM-L6 (real weights, full fine-tuning), SST-2, "
        f"{a.items} items, {steps} steps of batch 16 × ≤64 tokens, {a.repeats} alternating repeats on {result['machine']}. "
        f"The plain Trainer is timed around `trainer.train()` only (model build and pre-tokenisation excluded); "
        f"train_student is timed as a whole call (model build, on-the-fly tokenisation, training).\n\n"
        f"| runner | median wall time (s) | all runs (s) |\n|---|---|---|\n"
        + "".join(f"| {k} | {med[k]:.2f} | {', '.join(f'{x:.2f}' for x in v)} |\n" for k, v in times.items())
        + f"\n**ratio train_student / plain Trainer = {ratio:.3f}** (goal ≤ 1.05).\n\n```\n{result['command']}\n```\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
