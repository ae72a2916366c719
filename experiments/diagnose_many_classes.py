"""Why the logistic-t posteriors fall below the vote on ATIS intent (26 classes) — measured.

For one results folder's stored weak labels on strong_train (hidden truth from the run's
``meta.json``), each soft-label model is fitted by EM twice: without gold (what a user gets) and
with every item's true class observed (the globals the truth implies). The script reports

1. the accuracy of each fit's item posterior (the truth-fitted globals applied to the same
   items by ``predict_proba``), and the marginal log-likelihood Σ_n log Σ_k π_k p(z_n | k) of the
   weak log-odds at each: if the unsupervised optimum explains the weak outputs *better* than
   the truth's globals while classifying worse, the likelihood is at fault, not the optimiser;
2. how many items each fit gives to classes that no strong_train item belongs to, and how many
   classes it leaves with items;
3. its five largest confusions (true → posterior label), beside the vote's.

    python experiments/diagnose_many_classes.py experiments/results/atis_intent \\
        --models logistic_t_pooled logistic_t_anchored --out experiments/results/anchored_means/diagnosis
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import accuracy
from bayes_w2s.pipeline import experiment_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_target_posteriors import vote_probs  # noqa: E402
from diagnose_soft_label import t_marginal_log_lik  # noqa: E402
from markdown_result import write_markdown  # noqa: E402


def top_confusions(truth: np.ndarray, pred: np.ndarray, names: list[str], n: int = 5) -> str:
    wrong = Counter(zip(truth[pred != truth], pred[pred != truth])).most_common(n)
    return "; ".join(f"{names[t]} → {names[p]} {c}" for (t, p), c in wrong)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a `bayes-w2s run` results folder (meta.json, weak_labels_seed*_strong_train.npz)")
    ap.add_argument("--models", nargs="+", default=["logistic_t", "logistic_t_pooled", "logistic_t_anchored"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for result.md")
    args = ap.parse_args(argv)
    results = Path(args.results)
    cfg = ExperimentConfig(**json.loads((results / "meta.json").read_text())["config"])
    labels = WeakLabels.load(results / f"weak_labels_seed{args.seed}_strong_train.npz")
    split = experiment_task(cfg).strong_train
    truth = dict(zip(split["id"], split["label"]))
    y = np.array([truth[i] for i in labels.item_ids])
    names = list(labels.label_names)
    absent = np.bincount(y, minlength=len(names)) == 0
    vote_split = vote_probs(labels)
    vote = vote_split.argmax(1)      # ties to the first class: for the confusions only
    lines = [f"# Soft-label posteriors on {cfg.name}'s weak labels (seed {args.seed}, strong_train)", "",
             f"{len(y)} items, {len(names)} classes, {int(absent.sum())} of them with no item here; "
             f"the largest class holds {np.bincount(y).max() / len(y):.0%}. Vote (ties split) "
             f"{100 * accuracy(vote_split, y):.1f}%.", "",
             "| model | accuracy, no gold (%) | accuracy, globals fitted on the truth (%) "
             "| marginal log-lik., no gold | marginal log-lik., fitted on the truth "
             "| items given classes with no item | classes given items | EM iterations (converged) | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    confusions = [f"- vote: {top_confusions(y, vote, names)}"]
    for model in args.models:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = fit_posterior(labels, model=model, method="em")
            fitted_on_truth = fit_posterior(labels, model=model, method="em", gold=y)
        pred = post.item_probs.argmax(1)
        lines.append(f"| `{model}` | {100 * accuracy(post.item_probs, y):.1f} "
                     f"| {100 * accuracy(fitted_on_truth.predict_proba(labels), y):.1f} "
                     f"| {t_marginal_log_lik(post, labels):,.0f} | {t_marginal_log_lik(fitted_on_truth, labels):,.0f} "
                     f"| {int(absent[pred].sum())} | {len(np.unique(pred))} (truth {int((~absent).sum())}) "
                     f"| {len(post.history)} ({'yes' if post.converged else 'no'}) "
                     f"| {time.perf_counter() - start:.0f} |")
        confusions.append(f"- `{model}`: {top_confusions(y, pred, names)}")
        print(lines[-1], flush=True)
    lines += ["", "Largest confusions (true → label given, items):", "", *confusions]
    command = "python experiments/diagnose_many_classes.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_markdown(Path(args.out), "result.md", lines, command)


if __name__ == "__main__":
    main()
