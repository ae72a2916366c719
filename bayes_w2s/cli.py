"""``bayes-w2s`` command line: ``run`` an experiment config, list ``tasks`` and ``models``."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bayes-w2s", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment YAML end to end")
    run.add_argument("config", help="experiments/configs/<name>.yaml")
    run.add_argument("--output", help="results folder (default: <output_root>/<name>)")
    run.add_argument("--data-dir", help="offline data folder (default $BAYES_W2S_DATA)")
    run.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    run.add_argument("--restart", action="store_true",
                     help="discard the finished seeds of an interrupted run in the output folder")
    run.add_argument("--overwrite", action="store_true", help="replace the results an output folder already holds")
    sub.add_parser("tasks", help="list tasks")
    sub.add_parser("models", help="list model cards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from .errors import BayesW2SError
    try:
        if args.command == "tasks":
            from .tasks import available_tasks
            print("\n".join(available_tasks()))
        elif args.command == "models":
            from .cards import available_cards, load_card
            for name in available_cards():
                c = load_card(name)
                print(f"{name:16s} {c.params:>6s}  {c.hub_id:45s} {'offline' if c.offline else 'hub only'}")
        else:
            from .pipeline import load_experiment_config, run_experiment
            cfg = load_experiment_config(args.config, data_dir=args.data_dir, seeds=args.seeds)
            results = run_experiment(cfg, args.output, command="bayes-w2s " + shlex.join(argv),
                                     restart=args.restart, overwrite=args.overwrite)
            metric = "slu_f1" if cfg.is_generation else "accuracy"
            print(results.groupby("method", sort=False)[metric].agg(["mean", "std"]).to_string())
    except BayesW2SError as exc:
        print(f"bayes-w2s: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayes-w2s: interrupted; rerun the same command to resume (finished seeds are kept)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
