"""Which posterior does the gold slice choose, and is its choice a good one? Per seed, on an
experiment's stored weak labels (strong_train and the gold slice, weak_val).

Every candidate is fitted on strong_train's and the gold items' weak labels with the gold
classes hidden, and given its gold-chosen temperature (``bayes_w2s.posterior.choose_model``);
the table reports its gold Brier score (what the choice reads) and log-loss beside its
targets' accuracy and ECE on strong_train's hidden truth (what the choice should have found),
the vote and the mean of the weak probabilities beside them, and which candidate the gold
slice chose. A results folder (its ``meta.json``) can stand in for the YAML.

    python experiments/choose_posterior_on_gold.py experiments/configs/agnews.yaml \
        --out experiments/results/posterior_choice/agnews.md
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from bayes_w2s import WeakLabels
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.metrics import accuracy, expected_calibration_error
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.posterior.selection import DEFAULT_CANDIDATES, check_candidates, choose_model
from bayes_w2s.student.posterior_targets import concat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_target_posteriors import vote_probs  # noqa: E402
from markdown_result import write_markdown  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="experiment YAML with a gold slice (weak_val_size), or a results folder holding "
                                   "meta.json")
    ap.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    ap.add_argument("--results", help="results folder (default: experiments/results/<config name>)")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--jobs", type=int, default=1, help="candidates fitted at once (choose_model's n_jobs; the same "
                                                       "choice, sooner)")
    args = ap.parse_args(argv)
    if args.jobs < 1 and args.jobs != -1:
        ap.error(f"--jobs must be a positive integer or -1, got {args.jobs}")
    try:
        check_candidates(args.candidates)
    except InvalidInputError as err:
        raise SystemExit(f"--candidates: {err}") from None
    if Path(args.config).is_dir():   # a results folder: the experiment its meta.json records
        cfg = ExperimentConfig(**json.loads((Path(args.config) / "meta.json").read_text())["config"])
        results = Path(args.results or args.config)
    else:
        cfg = ExperimentConfig.from_yaml(args.config)
        results = Path(args.results or f"experiments/results/{cfg.name}")
    if not cfg.weak_val_size:
        raise SystemExit(f"{args.config}: no gold slice (weak_val_size) to choose on")
    task = experiment_task(cfg)
    truth = dict(zip(task.strong_train["id"], task.strong_train["label"]))
    gold_truth = dict(zip(task.weak_val["id"], task.weak_val["label"]))
    head = ["vote", "mean", *args.candidates, "chosen"]
    lines = [f"# The posterior chosen on {cfg.name}'s gold slice", "",
             "Each candidate fitted with the gold classes hidden, at its gold-chosen temperature T. Cells: "
             "targets' accuracy / ECE (%) on strong_train's hidden truth; then the gold items' Brier score ± the "
             "paired standard error of its gap to the chosen candidate's (their log-loss), and T. The choice reads "
             "the Brier score: lowest wins. *chosen*: the gold slice's choice.", "",
             "| seed | " + " | ".join(f"`{h}`" if h in args.candidates else h for h in head) + " |",
             "|---|" + "---|" * len(head)]
    accs = {h: [] for h in head}
    picks = []
    seeds = [s for s in cfg.seeds if (results / f"weak_labels_seed{s}_weak_val.npz").is_file()]
    if not seeds:
        raise SystemExit(f"{results}: no stored gold-slice weak labels (weak_labels_seed*_weak_val.npz)")
    for seed in seeds:
        train = WeakLabels.load(results / f"weak_labels_seed{seed}_strong_train.npz")
        gold = WeakLabels.load(results / f"weak_labels_seed{seed}_weak_val.npz")
        labels, n = concat(train, gold), train.num_items
        y = np.array([truth[i] for i in train.item_ids])
        gold_y = np.array([gold_truth[i] for i in gold.item_ids])
        start = time.perf_counter()
        search = choose_model(labels, np.arange(n, labels.num_items), gold_y, args.candidates,
                              n_jobs=args.jobs, progress=False)
        seconds = time.perf_counter() - start
        accs["vote"].append(100 * accuracy(vote_probs(train), y))
        accs["mean"].append(100 * accuracy(train.probs.mean(1), y))
        cells = [f"{accs['vote'][-1]:.1f}", f"{accs['mean'][-1]:.1f}"]
        targets = {}
        for spec, row in search.scores.iterrows():
            if row["error"]:
                accs[spec].append(np.nan)
                cells.append(f"error: {row['error']}")
                continue
            targets[spec] = search.item_probs[spec][:n]
            accs[spec].append(100 * accuracy(targets[spec], y))
            cells.append(f"{accs[spec][-1]:.1f} / {100 * expected_calibration_error(targets[spec], y):.1f}; "
                         f"{row['gold_brier']:.3f} ± {row['dse']:.3f} ({row['gold_log_loss']:.2f}), "
                         f"T {row['temperature']:.2f}")
        accs["chosen"].append(accs[search.chosen][-1])
        picks.append(search.chosen)
        cells.append(f"`{search.chosen}`: {accs['chosen'][-1]:.1f} ({seconds:.0f} s to choose)")
        print(seed, cells, flush=True)
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("| mean accuracy | " + " | ".join(f"{np.nanmean(v):.1f}" for v in accs.values()) + " |")
    best_each = [max(accs[c][i] for c in args.candidates if not np.isnan(accs[c][i])) for i in range(len(picks))]
    lines += ["", f"Chosen per seed: {', '.join(f'`{p}`' for p in picks)}. The chosen targets are "
              f"{np.mean(accs['chosen']) - np.mean(accs['vote']):+.1f} points from the vote and "
              f"{np.mean(accs['chosen']) - np.mean(best_each):+.1f} from the most accurate candidate of each seed "
              "(mean over seeds)."]
    out = Path(args.out)
    command = "python experiments/choose_posterior_on_gold.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_markdown(out.parent, out.name, lines, command)


if __name__ == "__main__":
    main()
