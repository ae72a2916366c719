"""What the soft-label models' input checks guard against, measured with the checks off.

``fit_posterior`` refuses a weak model whose probabilities are the same on every item and
warns about one whose outputs are one-hot on most items, for every model that reads the
weak models' probabilities (``soft`` and the logistic-t family). This script fits those
models with the check switched off on planted annotators, several seeds per case, beside the
majority vote (ties split) and the vote models Dawid–Skene (EM, VB) and one-coin (EM):

* *constant*: three soft annotators whose logits favour the true class
  (``tests/posterior/conftest.py::simulate_soft``), the third replaced by one fixed
  output (0.6, 0.3, 0.1);
* *one-hot*: three hard annotators right 75 / 65 / 60% of the time (errors uniform), given
  as one-hot probability vectors.

    python experiments/probe_soft_input_checks.py --out experiments/results/soft_input_checks
"""
from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

import bayes_w2s.posterior as posterior
from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.metrics import accuracy
from bayes_w2s.posterior.inputs import soft_output_profile

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests" / "posterior"))
from conftest import simulate_soft, simulate_votes  # noqa: E402
from markdown_result import write_markdown  # noqa: E402

#: (model, method); the vote models last, for comparison
MODELS = [("soft", None), ("logistic_t", None), ("logistic_t_hetero", None), ("logistic_t_pooled", None),
          ("logistic_t_anchored", None), ("dawid_skene", "em"), ("dawid_skene", "vb"), ("one_coin", "em")]


def constant_case(seed: int, n: int):
    truth, labels = simulate_soft(n=n, k=3, seed=seed)
    probs = labels.probs.copy()
    probs[:, 2] = [0.6, 0.3, 0.1]
    return truth, WeakLabels(probs, labels.model_names, labels.label_names)


def one_hot_case(seed: int, n: int):
    truth, votes = simulate_votes(n=n, k=3, accs=(0.75, 0.65, 0.6), seed=seed)
    return truth, WeakLabels(np.eye(3)[votes], ["a", "b", "c"], ["x", "y", "z"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--out", default="experiments/results/soft_input_checks")
    args = ap.parse_args(argv)
    posterior.check_soft_outputs = lambda lm, model: None   # the checks off: what they guard against
    lines = ["# Soft-label models on inputs their checks refuse or warn about (checks off)", "",
             f"{args.items} planted items, 3 classes, seeds {args.seeds}; target accuracy (%) per seed, then the "
             "mean. *vote*: majority vote, ties split.", ""]
    for case, make in [("constant", constant_case), ("one-hot", one_hot_case)]:
        rows = {name: [] for name in ["vote", *(m if method is None else f"{m}/{method}" for m, method in MODELS)]}
        for seed in args.seeds:
            truth, labels = make(seed, args.items)
            rows["vote"].append(accuracy(labels.majority_vote(), truth))
            for model, method in MODELS:
                name = model if method is None else f"{model}/{method}"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        post = fit_posterior(labels, model=model, method=method, progress=False)
                        rows[name].append(float((post.labels == truth).mean()))
                    except Exception as err:   # a fit that breaks down is part of what is measured
                        rows[name].append(f"{type(err).__name__}")
        lines += [f"## {case}", "", "| fit | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |",
                  "|---|" + "---|" * (len(args.seeds) + 1)]
        for name, values in rows.items():
            numbers = [v for v in values if isinstance(v, float)]
            cells = [f"{100 * v:.1f}" if isinstance(v, float) else v for v in values]
            mean = f"{100 * np.mean(numbers):.1f}" if len(numbers) == len(values) else "–"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
        lines.append("")
    lines += ["## The real weak labels", "",
              "Every stored weak-label file under experiments/results (all tasks, seeds and splits): weak models "
              "the checks would refuse (constant), and outputs they count as one-hot.", ""]
    files = sorted(ROOT.glob("results/*/weak_labels_seed*_*.npz"))
    constant = one_hot = outputs = 0
    for path in files:
        probs = WeakLabels.load(path).probs
        is_constant, one_hot_outputs, labelled = soft_output_profile(probs)
        constant += int(is_constant.sum())
        one_hot += int(one_hot_outputs.sum())
        outputs += int(labelled.sum())
    lines += [f"{len(files)} files, {outputs:,} weak outputs: {constant} constant weak models, {one_hot} one-hot "
              "outputs.", ""]
    write_markdown(args.out, "result.md", lines,
                   "python experiments/probe_soft_input_checks.py " + shlex.join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
