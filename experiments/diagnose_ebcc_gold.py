"""Why EBCC with observed gold items can fall below the majority vote — measured.

For one seed of a results folder (weak labels on strong_train and on the gold slice,
``weak_labels_seed<S>_{strong_train,weak_val}.npz``; truth re-read from the config's split)
the script fits Dawid–Skene (EM) and EBCC (VB), each without and with the gold items
observed, as the pipeline's ``gold: observe`` rows do, and lists every vote pattern on which
a fit's labels differ from the majority vote: how many strong_train items carry it, their
true class shares, and the gold items of that pattern.

    python experiments/diagnose_ebcc_gold.py experiments/configs/sst2.yaml \
        --out experiments/results/ebcc_gold_diagnosis/sst2 --methods vb svi nuts

``--methods`` refits EBCC + gold by other inference methods (NUTS: 4 chains, minutes).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import accuracy
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.student.posterior_targets import concat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", help="results folder (default: experiments/results/<config name>)")
    ap.add_argument("--out", default="experiments/results/ebcc_gold_diagnosis")
    ap.add_argument("--methods", nargs="+", default=[], choices=["vb", "svi", "nuts"],
                    help="also fit EBCC + gold by these inference methods: is the departure from the vote "
                         "VB's mode-seeking, or the posterior's?")
    ap.add_argument("--nuts-steps", type=int, default=300, help="NUTS warm-up steps, and draws, per chain")
    args = ap.parse_args(argv)
    cfg = ExperimentConfig.from_yaml(args.config)
    task = experiment_task(cfg)
    results = Path(args.results or f"experiments/results/{cfg.name}")
    train = WeakLabels.load(results / f"weak_labels_seed{args.seed}_strong_train.npz")
    gold = WeakLabels.load(results / f"weak_labels_seed{args.seed}_weak_val.npz")
    truth_of = dict(zip(task.strong_train["id"], task.strong_train["label"]))
    gold_of = dict(zip(task.weak_val["id"], task.weak_val["label"]))
    y = np.array([truth_of[i] for i in train.item_ids])
    gold_y = np.array([gold_of[i] for i in gold.item_ids])
    n, k = train.num_items, train.num_classes
    both = concat(train, gold)
    observed = np.full(both.num_items, -1)
    observed[n:] = gold_y
    votes, gold_votes = train.votes(), gold.votes()
    counts = np.stack([(votes == c).sum(1) for c in range(k)], 1)
    vote = counts.argmax(1)        # "flipped" = differs from this; its ties go to the lower class index
    vote_accuracy = accuracy(train.majority_vote(), y)        # ties split, as the pipeline's vote rows
    patterns = [tuple(int(v) for v in row) for row in votes]
    gold_patterns = [tuple(int(v) for v in row) for row in gold_votes]

    lines = [f"# Dawid–Skene and EBCC with and without observed gold items: {cfg.name}, seed {args.seed}", "",
             f"{n} strong_train items, {len(gold_y)} gold items, weak models {', '.join(train.model_names)}; "
             f"majority vote {100 * vote_accuracy:.1f}% accurate.", "",
             "| posterior | accuracy (%) | items whose label differs from the vote |", "|---|---|---|"]
    flips = {}
    for name, model, method in (("Dawid–Skene", "dawid_skene", "em"), ("EBCC", "ebcc", "vb")):
        for with_gold in (False, True):
            labels = (fit_posterior(both, model=model, method=method, gold=observed) if with_gold
                      else fit_posterior(train, model=model, method=method)).item_probs[:n].argmax(1)
            row = f"{name}{' + gold' if with_gold else ''}"
            flips[row] = labels != vote
            lines.append(f"| {row} | {100 * (labels == y).mean():.1f} | {int(flips[row].sum())} |")
    lines += ["", "Vote patterns (one label per weak model) on which a fit departs from the vote:", "",
              "| posterior | pattern | items flipped / with the pattern | their true class shares | "
              "gold items with the pattern | gold class shares |", "|---|---|---|---|---|---|"]
    for row, flipped in flips.items():
        for pattern, count in sorted(Counter(patterns[i] for i in np.flatnonzero(flipped)).items()):
            items = np.array([p == pattern for p in patterns])
            in_gold = np.array([p == pattern for p in gold_patterns], dtype=bool)
            shares = ", ".join(f"{np.mean(y[items] == c):.2f}" for c in range(k))
            gold_shares = ", ".join(f"{np.mean(gold_y[in_gold] == c):.2f}" for c in range(k)) if in_gold.any() else "–"
            lines.append(f"| {row} | {pattern} | {count} / {int(items.sum())} | {shares} | {int(in_gold.sum())} "
                         f"| {gold_shares} |")
    lines += ["", "EBCC + gold with fewer subtypes per class (one subtype is Dawid–Skene):", "",
              "| subtypes per class | accuracy (%) | items whose label differs from the vote |", "|---|---|---|"]
    for subtypes in (1, 2, 3, 4, 8):
        labels = fit_posterior(both, model="ebcc", method="vb", gold=observed,
                               num_subtypes=subtypes).item_probs[:n].argmax(1)
        lines.append(f"| {subtypes} | {100 * (labels == y).mean():.1f} | {int((labels != vote).sum())} |")
    if args.methods:
        vb_flips = flips["EBCC + gold"]
        lines += ["", "EBCC + gold by inference method: the whole posterior, not only VB's mean field (mean "
                  "probability of the vote's class on the items VB's fit takes from the vote):", "",
                  "| method | accuracy (%) | items whose label differs from the vote | p(vote's class) there | "
                  "seconds |", "|---|---|---|---|---|"]
        for method in args.methods:
            settings = dict(num_samples=args.nuts_steps, warmup_steps=args.nuts_steps) if method == "nuts" else {}
            start = time.perf_counter()
            probs = fit_posterior(both, model="ebcc", method=method, gold=observed, progress=False,
                                  **settings).item_probs[:n]
            seconds = time.perf_counter() - start
            there = probs[vb_flips, vote[vb_flips]].mean() if vb_flips.any() else float("nan")
            lines.append(f"| {method} | {100 * (probs.argmax(1) == y).mean():.1f} | "
                         f"{int((probs.argmax(1) != vote).sum())} | {there:.2f} | {seconds:.0f} |")
    write_markdown(args.out, "result.md", lines,
                   "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))


if __name__ == "__main__":
    main()
