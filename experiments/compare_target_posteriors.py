"""Training targets of several posteriors on an experiment's stored weak labels, per seed.

Reads ``weak_labels_seed*_strong_train.npz`` (written by ``bayes-w2s run``) from the
experiment's results folder, fits each posterior without gold, and scores its targets on
strong_train's hidden truth: accuracy, ECE and fit time; the weak models' majority vote (ties
split) and mean probability beside them. A posterior is ``model[@method][:setting=number,...]``
(method ``em`` unless named; numeric settings: priors, the method's own such as ``steps``, or the
data's such as ``soft_votes``). In place of a config, a
results folder names the experiment its ``meta.json`` records (for runs made without a YAML, such
as ``experiments/atis_intent.py``).

    python experiments/compare_target_posteriors.py experiments/configs/snips_intent.yaml \
        --posteriors logistic_t logistic_t_hetero logistic_t_pooled logistic_t_pooled:pooling=4 \
        --out experiments/results/pooled_scales/snips_intent.md
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import accuracy, expected_calibration_error
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.posterior import MODELS
from bayes_w2s.posterior.inputs import check_fit_settings
from bayes_w2s.posterior.selection import parse_candidate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_result import write_markdown  # noqa: E402


def parse_posterior(spec: str) -> tuple[str, str, dict]:
    """``model[@method][:name=value,...]`` → (model, method, settings); method ``em`` unless named."""
    try:
        model, method, settings = parse_candidate(spec)
    except InvalidInputError as err:
        raise SystemExit(f"--posteriors: {err}") from None
    return model, method or "em", settings


def vote_probs(labels: WeakLabels) -> np.ndarray:
    votes = labels.votes()
    counts = np.stack([(votes == c).sum(1) for c in range(labels.num_classes)], 1)
    top = counts == counts.max(1, keepdims=True)
    return top / top.sum(1, keepdims=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="experiment YAML, or a results folder holding meta.json")
    ap.add_argument("--posteriors", nargs="+", required=True)
    ap.add_argument("--results", help="results folder (default: experiments/results/<config name>)")
    ap.add_argument("--out", required=True, help="markdown file to write")
    args = ap.parse_args(argv)
    for spec in args.posteriors:   # before any data is read
        model, method, settings = parse_posterior(spec)
        if model not in MODELS:
            raise SystemExit(f"--posteriors: unknown model {model!r}; available: {sorted(MODELS)}")
        if method not in MODELS[model].methods:
            raise SystemExit(f"--posteriors: {model!r} has no method {method!r}; it has {list(MODELS[model].methods)}")
        try:
            check_fit_settings(model, method, settings)
        except InvalidInputError as err:
            raise SystemExit(f"--posteriors: {spec!r}: {err}") from None
    if Path(args.config).is_dir():
        cfg = ExperimentConfig(**json.loads((Path(args.config) / "meta.json").read_text())["config"])
        results = Path(args.results or args.config)
    else:
        cfg = ExperimentConfig.from_yaml(args.config)
        results = Path(args.results or f"experiments/results/{cfg.name}")
    split = experiment_task(cfg).strong_train
    truth = dict(zip(split["id"], split["label"]))
    lines = [f"# Targets of {len(args.posteriors)} posteriors on {cfg.name}'s stored weak labels", "",
             "No gold (EM unless `@method` says otherwise); accuracy / ECE (%) on strong_train's hidden truth, "
             "fit seconds. *vote*: the weak models' majority vote, ties split; *mean*: their mean probability.", "",
             "| seed | vote | mean | " + " | ".join(f"`{p}`" for p in args.posteriors) + " |",
             "|---|---|---|" + "---|" * len(args.posteriors)]
    scores = {p: [] for p in ["vote", "mean", *args.posteriors]}
    for seed in cfg.seeds:
        labels = WeakLabels.load(results / f"weak_labels_seed{seed}_strong_train.npz")
        y = np.array([truth[i] for i in labels.item_ids])
        scores["vote"].append(100 * accuracy(vote_probs(labels), y))
        scores["mean"].append(100 * accuracy(labels.probs.mean(1), y))
        cells = [f"{scores['vote'][-1]:.1f}", f"{scores['mean'][-1]:.1f}"]
        for spec in args.posteriors:
            model, method, settings = parse_posterior(spec)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probs = fit_posterior(labels, model, method, **{"progress": False, **settings}).item_probs
            scores[spec].append(100 * accuracy(probs, y))
            cells.append(f"{scores[spec][-1]:.1f} / {100 * expected_calibration_error(probs, y):.1f} "
                         f"({time.perf_counter() - start:.0f} s)")
            print(seed, spec, cells[-1], flush=True)
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("| mean accuracy | " + " | ".join(f"{np.mean(v):.1f}" for v in scores.values()) + " |")
    out = Path(args.out)
    command = "python experiments/compare_target_posteriors.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_markdown(out.parent, out.name, lines, command)


if __name__ == "__main__":
    main()
