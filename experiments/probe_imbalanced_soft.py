"""The soft-label posteriors on many, imbalanced classes (synthetic weak outputs with known truth).

Three weak models (accuracy 0.85 / 0.80 / 0.75) give softmax outputs: random logits plus a
bump of 3 ± 1 on the class they pick, which is the true class or, when they err, the largest
class (60%) or a uniformly random one (which may be the true class), so the weak models lean
towards class 0 even where the classes are balanced. One simulation seed. For each (classes,
share of the largest class) the script reports each posterior's accuracy, how many of the items all three weak models agree on it overrules,
and whether ``fit_posterior`` warned that it probably collapsed.
A case ``classes:share:absent`` adds ``absent`` classes to the label set that no item belongs to
(as ATIS's 2,000-item sample lacks 5 of its 26 intents); the weak models give them N(0, 1) logits
like every class they do not pick, so a few votes still fall on them.

    python experiments/probe_imbalanced_soft.py --out experiments/results/imbalanced_soft
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.metrics import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402

MODELS = ("dawid_skene", "soft", "logistic_t", "logistic_t_hetero", "logistic_t_pooled", "logistic_t_anchored")


def simulate(num_classes: int, head_share: float, items: int, seed: int,
             absent: int = 0) -> tuple[WeakLabels, np.ndarray]:
    rng = np.random.default_rng(seed)
    prior = np.r_[head_share, np.full(num_classes - 1, (1 - head_share) / (num_classes - 1))]
    truth = rng.choice(num_classes, items, p=prior)
    probs = np.zeros((items, 3, num_classes + absent))
    for m, acc in enumerate((0.85, 0.80, 0.75)):
        right = rng.random(items) < acc
        to_head = rng.random(items) < 0.6
        pick = np.where(right, truth, np.where(to_head, 0, rng.integers(0, num_classes, items)))
        logits = rng.normal(0, 1, (items, num_classes + absent))
        logits[np.arange(items), pick] += 3 + rng.normal(0, 1, items)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs[:, m] = e / e.sum(-1, keepdims=True)
    names = [f"class{k}" for k in range(num_classes + absent)]
    return WeakLabels(probs.astype(np.float32), ["weak_a", "weak_b", "weak_c"], names), truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["5:0.2", "5:0.7", "7:0.7", "9:0.111", "9:0.7", "17:0.0589",
                                                   "17:0.7"],
                    help="classes:share of the largest class[:classes in the label set that no item belongs to]")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/results/imbalanced_soft")
    args = ap.parse_args()
    lines = ["# Soft-label posteriors on many, imbalanced classes (synthetic)", "",
             f"{args.items} items, 3 weak models, seed {args.seed}; *overruled*: items on which all three weak "
             "models agree and the posterior does not; *warned*: `fit_posterior` warned that the fit probably "
             "collapsed.", "",
             "| classes | largest class share | absent classes | vote (%) | "
             + " | ".join(f"{m} (%)" for m in args.models) + " |",
             "|---|---|---|---|" + "---|" * len(args.models)]
    for case in args.cases:
        k, share, absent = (case + ":0").split(":")[:3]
        labels, truth = simulate(int(k), float(share), args.items, args.seed, int(absent))
        votes = labels.votes()
        counts = np.stack([(votes == c).sum(1) for c in range(int(k) + int(absent))], 1)
        vote = (counts == counts.max(1, keepdims=True)) / (counts == counts.max(1, keepdims=True)).sum(1, keepdims=True)
        unanimous = (votes == votes[:, :1]).all(1)
        cells = []
        for model in args.models:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                probs = fit_posterior(labels, model, "em").item_probs
            warned = any("probably collapsed" in str(w.message) for w in caught)
            overruled = int(((probs.argmax(1) != votes[:, 0]) & unanimous).sum())
            cells.append(f"{100 * accuracy(probs, truth):.1f} (overruled {overruled}/{int(unanimous.sum())}"
                         f"{', warned' if warned else ''}; {time.perf_counter() - start:.0f} s)")
            print(case, model, cells[-1], flush=True)
        lines.append(f"| {k} | {float(share):.2f} | {absent} | {100 * accuracy(vote, truth):.1f} | "
                     + " | ".join(cells) + " |")
    write_markdown(args.out, "results.md", lines,
                   "python experiments/probe_imbalanced_soft.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
