"""ATIS intent detection through the custom-CSV path: real data no config of ours was tuned on,
with many imbalanced classes (26 intents in the file, 73% ``atis_flight``, 11 intents with
fewer than 20 queries) — the case the pooled logistic-t was built for, measured so far only on
synthetic labels (``experiments/probe_imbalanced_soft.py``).

The script writes ATIS's queries and intents (JointBERT's ``train`` + ``dev`` + ``test``, from
``$BAYES_W2S_DATA/atis``) as a ``text,label`` CSV into the user cache (``$BAYES_W2S_CACHE/data/``,
a fixed path, so an interrupted run resumes) — as a user would
bring their own data; a multi-intent label such as ``atis_flight#atis_airfare`` is a class of
its own — and runs SNIPS intent's recipe on it with the posterior rows that matter here:

    python experiments/atis_intent.py --out experiments/results/atis_intent

(``--seeds 0`` for a quick look). The results folder is an ordinary ``bayes-w2s run`` folder
(``results.md``, plots, stored weak labels for ``compare_target_posteriors.py``). ``--rows
vote_models`` runs the vote models' rows instead (Dawid–Skene by EM and VB, one-coin on hard and
on soft votes; on ATIS's stored weak labels all but Dawid–Skene's EM are above the vote,
``experiments/results/soft_votes``) into a folder of its own:

    python experiments/atis_intent.py --rows vote_models --out experiments/results/atis_intent_vote_models

``--rows gold_choice`` adds a 200-item gold slice and the rows of the posterior chosen on it
(``targets: posterior:auto``), beside three of the four default candidates:

    python experiments/atis_intent.py --rows gold_choice --posterior-jobs 2 \
        --out experiments/results/atis_intent_gold_choice

(the committed folder: seed 0 from a ``--seeds 0`` run, 22 min; seeds 1–2 resumed beside it with
``--posterior-jobs 2``, 15–20 min each).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from bayes_w2s.cards import cache_dir
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.pipeline import run_experiment

METHODS = [
    {"name": "ceiling", "targets": "ground_truth"},
    {"name": "best_weak xent", "targets": "best_weak", "loss": "xent"},
    {"name": "best_weak aux_conf", "targets": "best_weak", "loss": "aux_conf",
     "loss_kwargs": {"alpha_max": 0.75, "warmup": 0.2}},
    {"name": "ensemble vote", "targets": "vote", "loss": "xent", "hard": True},
    {"name": "Dawid-Skene", "targets": "posterior:dawid_skene:em", "loss": "xent"},
    {"name": "logistic-t posterior", "targets": "posterior:logistic_t:em", "loss": "xent"},
    {"name": "logistic-t per-class scales", "targets": "posterior:logistic_t_hetero:em", "loss": "xent"},
    {"name": "logistic-t pooled scales", "targets": "posterior:logistic_t_pooled:em", "loss": "xent"},
    {"name": "logistic-t pooled scales EDL", "targets": "posterior:logistic_t_pooled:em", "loss": "edl",
     "loss_kwargs": {"kl_max": 1.0, "anneal": 0.5}},
]
VOTE_MODEL_METHODS = METHODS[:5] + [
    {"name": "Dawid-Skene VB", "targets": "posterior:dawid_skene:vb", "loss": "xent"},
    {"name": "one-coin", "targets": "posterior:one_coin:em", "loss": "xent"},
    {"name": "one-coin soft votes", "targets": "posterior:one_coin:em", "loss": "xent",
     "posterior_kwargs": {"soft_votes": 3}},
    {"name": "one-coin soft votes EDL", "targets": "posterior:one_coin:em", "loss": "edl",
     "posterior_kwargs": {"soft_votes": 3}, "loss_kwargs": {"kl_max": 1.0, "anneal": 0.5}},
]
#: the posterior chosen on a 200-item gold slice (drawn from the weak_train items the weak models' budget leaves
#: out, so the weak models are those of the other row sets) beside three of the four default candidates
GOLD_CHOICE_METHODS = METHODS[:4] + [
    {"name": "Dawid-Skene, T(gold)", "targets": "posterior:dawid_skene:em", "temperature": "gold", "loss": "xent"},
    VOTE_MODEL_METHODS[7],
    {"name": "logistic-t pooled scales", "targets": "posterior:logistic_t_pooled:em", "loss": "xent"},
    {"name": "chosen on gold (+ gold, T)", "targets": "posterior:auto", "gold": "observe", "temperature": "gold",
     "loss": "xent"},
    {"name": "chosen on gold (+ gold, T) EDL", "targets": "posterior:auto", "gold": "observe", "temperature": "gold",
     "loss": "edl", "loss_kwargs": {"kl_max": 1.0, "anneal": 0.5}},
]
ROWS = {"soft_models": METHODS, "vote_models": VOTE_MODEL_METHODS, "gold_choice": GOLD_CHOICE_METHODS}


def write_csv(data_dir: Path, out: Path) -> Path:
    rows = []
    for split in ("train", "dev", "test"):
        texts = (data_dir / split / "seq.in").read_text(encoding="utf-8").splitlines()
        labels = (data_dir / split / "label").read_text(encoding="utf-8").splitlines()
        if len(texts) != len(labels):
            raise SystemExit(f"{data_dir / split}: {len(texts)} queries but {len(labels)} labels")
        rows += [(" ".join(t.split()), y.strip()) for t, y in zip(texts, labels)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(out, index=False)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="results folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", choices=sorted(ROWS), default="soft_models", help="which methods to run")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--posterior-jobs", type=int, default=1,
                    help="processes fitting the posterior:auto candidates at once (the same choice, sooner)")
    args = ap.parse_args(argv)
    data = Path(os.environ.get("BAYES_W2S_DATA", "../shared/data")) / "atis"
    if not (data / "train" / "seq.in").is_file():
        raise SystemExit(f"no ATIS data at {data} (set BAYES_W2S_DATA)")
    csv = write_csv(data, cache_dir("data") / "atis_intent.csv")
    cfg = ExperimentConfig(
        name="atis_intent", task=str(csv), weak_models=["minilm-l6", "mpnet-base", "smollm2-135m"],
        strong_model="gemma3-270m",
        methods=[{**m, "posterior_jobs": args.posterior_jobs} if m["targets"] == "posterior:auto" else m
                 for m in ROWS[args.rows]], seeds=args.seeds, split_seed=0,
        sizes={"weak_train": 1000, "strong_train": 2000, "test": 1000},
        weak_label_budget=200,   # as SNIPS's 70: weak models that leave a gap to recover
        weak_val_size=200 if args.rows == "gold_choice" else 0,
        weak_train={"mode": "head", "epochs": 30, "batch_size": 32, "learning_rate": 0.001},
        student_train={"mode": "head", "epochs": 10, "batch_size": 32, "learning_rate": 0.001})
    command = "python experiments/atis_intent.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = run_experiment(cfg, args.out, command=command, overwrite=args.overwrite)
    print(results.groupby("method", sort=False)["accuracy"].agg(["mean", "std"]).to_string())


if __name__ == "__main__":
    main()
