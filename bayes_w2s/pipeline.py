"""Run a whole experiment: task → weak ensemble → posteriors → students → metrics → report."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import distributed
from .cards import check_weights_reachable, load_card
from .config import ExperimentConfig, MethodConfig
from .errors import BayesW2SError, CorruptCacheError, InvalidInputError, MissingWeightsError, UnknownNameError
from .io import write_text
from .metrics import accuracy, expected_calibration_error
from .posterior import available_posteriors
from .posterior.calibration import log_loss
from .student.posterior_targets import GoldSlice, StudentLearner, crowdlab_targets, posterior_targets
from .posterior.inputs import check_fit_settings
from .report import write_report
from .student import train_student
from .student.losses import get_loss
from .tasks import check_sizes, load_task
from .weak import WeakEnsemble, WeakLabels

log = logging.getLogger(__name__)


def _targets_for(method: MethodConfig, cfg: ExperimentConfig, task, wl_train: WeakLabels, best_weak: str,
                 wl_gold: WeakLabels | None, seed: int):
    spec = method.spec
    if spec.kind == "ground_truth":
        return np.asarray(task.strong_train["label"])
    if spec.kind == "weak":
        return wl_train.model(spec.name)
    if spec.kind == "best_weak":
        return wl_train.model(best_weak)
    if spec.kind == "mean":
        return wl_train.mean()
    if spec.kind == "vote":
        return wl_train.majority_vote()
    if spec.kind == "weak_all":
        return wl_train
    gold = GoldSlice(wl_gold, np.asarray(task.weak_val["label"])) if wl_gold is not None else None
    learner = StudentLearner(cfg, task, method, seed)
    if spec.kind == "crowdlab":
        return crowdlab_targets(wl_train, learner, method.crossfit_folds, seed)
    if method.student_rounds:
        # the loop trains students (a collective step under accelerate launch), so every rank
        # runs it; its posterior fits are deterministic given the gathered weak labels
        return posterior_targets(method, wl_train, gold, learner, seed)
    return distributed.on_main(posterior_targets, method, wl_train, gold, None, seed)   # fitted once, broadcast


def student_dir(out: Path, method: MethodConfig, seed: int) -> Path:
    """Where ``run_experiment`` saves a method's student: ``<results>/students/<method>/seed<s>/``."""
    return Path(out) / "students" / method.slug / f"seed{seed}"


def save_test_probs(path: Path, probs: dict, split) -> None:
    """Every row's probabilities ``[rows, N, K]`` on ``split`` (test predictions, or the
    training targets on strong_train) with the row names, item ids and true labels
    (``.npz``, no pickle): what the reliability diagrams are drawn from."""
    np.savez_compressed(path, methods=np.array(list(probs), dtype=str),
                        probs=np.stack([np.asarray(p, dtype=np.float32) for p in probs.values()]),
                        ids=np.asarray(split["id"], dtype=str), labels=np.asarray(split["label"]))


def distinct_targets(targets: dict) -> dict:
    """Rows whose training targets differ (the first row of each), for the targets' diagram."""
    out = {}
    for name, probs in targets.items():
        if not any(p.shape == probs.shape and np.allclose(p, probs, atol=1e-6) for p in out.values()):
            out[name] = probs
    return out


def run_seed(cfg: ExperimentConfig, task, seed: int, save_dir: Path | None = None) -> list[dict]:
    """All rows of one seed: weak models, their vote and mean, and every method.

    With ``save_dir``, the weak labels of strong_train and test are written there
    (``weak_labels_seed<seed>_<split>.npz``, no pickle) for notebooks and benchmarks, every
    row's test probabilities (``test_probs_seed<seed>.npz``) and, if ``cfg.saves_students``,
    each method's student (:func:`student_dir`).
    """
    y_test = np.asarray(task.test["label"])
    weak = WeakEnsemble(cfg.weak_models, cfg.weak_train, seed=seed, prefer_offline=cfg.prefer_offline)
    weak.fit(task.weak_train, task.label_names)
    wl_train, wl_test = weak.predict(task.strong_train), weak.predict(task.test)
    wl_train.check_against(task.strong_train, task.label_names)
    wl_gold = weak.predict(task.weak_val) if task.weak_val is not None else None
    writes = save_dir is not None and distributed.is_main()   # under accelerate launch only rank 0 writes
    if writes:
        for split, labels in (("strong_train", wl_train), ("test", wl_test), ("weak_val", wl_gold)):
            if labels is not None:
                labels.save(Path(save_dir) / f"weak_labels_seed{seed}_{split}.npz")
    rows, test_probs, targets_seen = [], {}, {}
    y_strong = np.asarray(task.strong_train["label"])

    def add(name, kind, probs, extra=None):
        test_probs[name] = probs
        if not np.isfinite(probs).all():   # a diverged student: its row says so, and the other methods still run
            log.warning("seed %d, %s: the test probabilities hold NaN or inf (the training diverged); accuracy and "
                        "ECE are recorded as NaN", seed, name)
            scores = {"accuracy": float("nan"), "ece": float("nan")}
        else:
            scores = {"accuracy": accuracy(probs, y_test), "ece": expected_calibration_error(probs, y_test)}
        rows.append({"seed": seed, "method": name, "kind": kind, **scores, **(extra or {})})

    for m in weak.model_names:
        targets_seen[f"weak:{m}"] = wl_train.model(m)
        add(f"weak:{m}", "weak", wl_test.model(m), target_quality(wl_train.model(m), y_strong, None))
    targets_seen["weak_vote"], targets_seen["weak_mean"] = wl_train.majority_vote(), wl_train.mean()
    add("weak_vote", "weak_ensemble", wl_test.majority_vote(), target_quality(wl_train.majority_vote(), y_strong, None))
    add("weak_mean", "weak_ensemble", wl_test.mean(), target_quality(wl_train.mean(), y_strong, None))
    weak_acc = {m: accuracy(wl_test.model(m), y_test) for m in weak.model_names}
    best_weak = max(weak_acc, key=weak_acc.get)

    for method in tqdm(cfg.methods, desc=f"students (seed {seed})", unit="student",
                       disable=not distributed.is_main()):
        targets = _targets_for(method, cfg, task, wl_train, best_weak, wl_gold, seed)
        weights = None
        if isinstance(targets, tuple):          # crowdlab: (consensus one-hot, quality scores)
            targets, weights = targets
        extra = {}
        if method.targets != "ground_truth":
            # how good are the training targets themselves on strong_train's hidden ground truth?
            target_probs = _target_probs(targets, len(task.label_names))
            extra = target_quality(target_probs, y_strong, targets)
            targets_seen[method.name] = np.asarray(target_probs)
        t0 = time.perf_counter()
        student = train_student(cfg.strong_model, task.strong_train, targets, method.loss,
                                label_names=task.label_names, hard=method.hard, config=cfg.student_config(method),
                                seed=seed, loss_kwargs=method.loss_kwargs, prefer_offline=cfg.prefer_offline,
                                weights=weights)
        probs = student.predict_proba(task.test)
        extra["train_seconds"] = time.perf_counter() - t0
        if writes and cfg.saves_students:
            student.save_pretrained(student_dir(save_dir, method, seed))
        add(method.name, "ceiling" if method.targets == "ground_truth" else "student", probs,
            {"targets": method.targets, "loss": method.loss, **extra})
    for r in rows:
        r["best_weak"] = best_weak
    if writes:
        save_test_probs(Path(save_dir) / f"test_probs_seed{seed}.npz", test_probs, task.test)
        save_test_probs(Path(save_dir) / f"target_probs_seed{seed}.npz", distinct_targets(targets_seen),
                        task.strong_train)
    return rows


def _target_probs(targets, num_classes: int) -> np.ndarray:
    """``[N, K]`` the class probabilities a student is trained towards, whatever form its
    targets take (a posterior, weak labels — their mean —, probabilities, or labels)."""
    probs = getattr(targets, "item_probs", None)
    if probs is None:
        probs = targets.mean() if isinstance(targets, WeakLabels) else targets
    if np.ndim(probs) == 1:
        probs = np.eye(num_classes)[np.asarray(probs)]
    return np.asarray(probs)


def experiment_task(cfg: ExperimentConfig):
    """The task of ``cfg``, split by ``split_seed``, weak_train cut to ``weak_label_budget``,
    with a gold slice of ``weak_val_size`` items."""
    task = load_task(cfg.task, data_dir=cfg.data_dir, seed=cfg.split_seed, sizes=cfg.sizes)
    if cfg.weak_label_budget is not None:
        task = task.with_weak_budget(cfg.weak_label_budget, cfg.split_seed)
    if cfg.weak_val_size:
        task = task.with_gold_slice(cfg.weak_val_size, cfg.split_seed)
    return task


def target_quality(probs: np.ndarray, truth: np.ndarray, targets) -> dict:
    """How good a method's training targets are on strong_train's hidden truth: accuracy,
    ECE and log-loss; for a posterior also its chosen temperature, loop rounds and, for
    ``posterior:auto``, the model chosen on gold."""
    out = {"label_accuracy": accuracy(probs, truth), "label_ece": expected_calibration_error(probs, truth),
           "label_log_loss": log_loss(probs, truth)}
    info = getattr(targets, "info", {}) or {}
    for key in ("temperature_chosen", "student_rounds", "posterior_chosen"):
        if key in info:
            out[key] = info[key]
    return out


def run_experiment(cfg: ExperimentConfig, output_dir: str | Path | None = None, command: str = "", *,
                   restart: bool = False, overwrite: bool = False) -> pd.DataFrame:
    """Run every seed of ``cfg`` and write ``results.csv``, ``results.md``, ``meta.json`` and
    a plot (``accuracy.png``; ``slu_f1.png`` for generation tasks).

    Finished seeds are kept in ``results.partial.json`` (with a hash of the config and the
    data), so a rerun after a crash or Ctrl-C does only the missing seeds. A resume file
    of another config or other data is refused unless ``restart`` (its seeds are then
    discarded); a folder that already holds results is refused unless ``overwrite``.
    Everything the config names is checked before any model trains, and a run that fails
    before finishing a seed leaves no folder behind.
    """
    validate_experiment(cfg)
    seeds = list(dict.fromkeys(cfg.seeds))   # a seed given twice is run once
    if len(seeds) != len(cfg.seeds):
        log.warning("seeds %s repeat; running %s", cfg.seeds, seeds)
    if output_dir is not None and not str(output_dir).strip():   # Path("") is the current folder
        raise InvalidInputError("output folder: empty; name a folder, or leave it unset for <output_root>/<name>")
    out = Path(output_dir or Path(cfg.output_root) / cfg.name)
    check_output_folder(out, overwrite=overwrite)
    created = not out.exists()   # the folder is made by the first file written into it
    is_main = distributed.is_main()
    try:
        return _run_seeds(cfg, seeds, out, command, restart, is_main)
    except BaseException:        # Ctrl-C too: a run that finished no seed leaves nothing behind
        if created and is_main and not (out / RESUME_FILE).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_seeds(cfg: ExperimentConfig, seeds: list[int], out: Path, command: str, restart: bool,
               is_main: bool) -> pd.DataFrame:
    start = time.perf_counter()
    task = experiment_task(cfg)
    cfg.check_folds(len(task.strong_train))   # sizes.strong_train: null is known only now
    log.info("%s", task)
    resume = ResumeFile(out / RESUME_FILE, run_fingerprint(cfg, task))
    if restart and is_main:
        resume.discard()
    done = distributed.on_main(resume.read)   # every rank resumes the seeds rank 0 finds done
    frames = [done] if len(done) else []
    finished_elsewhere = sorted(set(done["seed"]) - set(seeds)) if len(done) else []
    if finished_elsewhere:      # computed work is never dropped by a narrower rerun
        log.warning("the resume file holds finished seed(s) %s that are not in this run's seeds %s; they stay in the "
                    "results (restart=True / --restart discards them)", finished_elsewhere, seeds)
        seeds = seeds + [int(s) for s in finished_elsewhere]
    for seed in seeds:
        if len(done) and seed in set(done["seed"]):
            continue
        seed_start = time.perf_counter()
        if task.kind == "generation":
            from .generation_pipeline import run_generation_seed
            frame = pd.DataFrame(run_generation_seed(cfg, task, seed, save_dir=out))
        else:
            frame = pd.DataFrame(run_seed(cfg, task, seed, save_dir=out))
        frame["seed_wall_seconds"] = time.perf_counter() - seed_start   # a resumed run still reports it
        frames.append(frame)
        if is_main:
            resume.write(pd.concat(frames, ignore_index=True))
    results = pd.concat(frames, ignore_index=True)
    results = results[results["seed"].isin(seeds)].reset_index(drop=True)
    config = {**cfg.to_dict(), "seeds": seeds}
    meta = {"config": config, "split_sizes": task.sizes(), "data_source": task.source,
            "metric": "slu_f1" if task.kind == "generation" else "accuracy",
            "wall_seconds": time.perf_counter() - start, "command": command,
            "seed_wall_seconds": {int(k): float(v) for k, v in results.groupby("seed")["seed_wall_seconds"].first().items()}
            if "seed_wall_seconds" in results else {},
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "processes": distributed.world_size(),   # > 1 under accelerate launch
            "python": platform.python_version()}
    if is_main:   # under `accelerate launch` only rank 0 writes
        write_report(results, meta, out)
        remove_stale_seed_files(out, seeds, [m.slug for m in cfg.methods] if cfg.saves_students else [])
        resume.discard()
    distributed.barrier()   # every rank returns once the report is on disk
    return results


# -- checks before anything trains ----------------------------------------------------------

def load_experiment_config(path: str | Path, **overrides) -> ExperimentConfig:
    """``ExperimentConfig.from_yaml``: every failure (malformed YAML, a top level that is not a
    mapping, non-UTF-8 bytes, a value of the wrong type) is a one-line ``ConfigError`` naming
    the file and the field."""
    return ExperimentConfig.from_yaml(path, **overrides)


def _method_error(method: MethodConfig, exc: BayesW2SError) -> BayesW2SError:
    return type(exc)(f"method {method.name!r}: {exc}")


def validate_experiment(cfg: ExperimentConfig) -> None:
    """Check everything the config names before any model trains: seeds, model cards,
    split sizes, posterior models / methods and their settings, and loss settings."""
    seeds = cfg.seeds
    if not isinstance(seeds, (list, tuple)) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < 2**32 for s in seeds):
        raise InvalidInputError(f"seeds must be a non-empty list of integers in [0, 2**32), got {seeds!r}")
    if isinstance(cfg.weak_models, str) or not isinstance(cfg.weak_models, (list, tuple)):
        raise InvalidInputError(f"weak_models must be a list of model cards, got {cfg.weak_models!r}; "
                                f"write [{cfg.weak_models}]")
    for field_name, card in [*(("weak_models", w) for w in cfg.weak_models), ("strong_model", cfg.strong_model)]:
        if not isinstance(card, str):
            raise InvalidInputError(f"{field_name}: a model card name, hub id or folder, got {card!r}")
        try:
            card = load_card(card)
        except BayesW2SError as exc:
            raise type(exc)(f"{field_name}: {exc}") from None
        try:   # a warning: cached features and weak labels let a run go without the weights
            check_weights_reachable(card, cfg.prefer_offline)
        except MissingWeightsError as exc:
            log.warning("%s: %s; the run fails when it needs them (nothing cached for this model)", field_name, exc)
    check_sizes(cfg.sizes)
    posteriors = set(available_posteriors())
    for m in cfg.methods:
        try:
            _validate_method(cfg, m, posteriors)
        except BayesW2SError as exc:
            raise _method_error(m, exc) from None


def _validate_method(cfg: ExperimentConfig, m: MethodConfig, posteriors: set) -> None:
    spec = m.spec
    kind = spec.kind
    names = ", ".join(f"{a}:{b}" for a, b in sorted(posteriors))
    if m.chooses_posterior:
        from .posterior.selection import check_candidates
        check_candidates(m.candidates)   # names, methods, settings and prior ranges
    elif kind == "posterior":
        from .posterior import METHODS
        inference = spec.method or METHODS.get(spec.name, ("em",))[0]   # None: the model's default
        if (spec.name, inference) not in posteriors:
            raise UnknownNameError(f"no posterior {spec.name}:{inference}; available: {names}")
        if not isinstance(m.posterior_kwargs, dict):
            raise InvalidInputError(f"posterior_kwargs must be a mapping, got {m.posterior_kwargs!r}")
        check_fit_settings(spec.name, inference, m.posterior_kwargs)
        # prior ranges too (beta_diag: -1 failed only at fit time, after the weak models trained)
        from .posterior import get_model, split_kwargs
        model = get_model(spec.name)
        priors, _, settings = split_kwargs(model, inference, m.posterior_kwargs)
        guide = settings.get("guide", getattr(model, "default_guide", None))
        model.priors(priors, point_estimate=inference == "em" or (inference == "svi" and guide == "delta"))
        counts = m.posterior_kwargs.get("prior_counts")
        m_weak = len(cfg.weak_models)
        if counts is not None and (np.ndim(counts) != 3 or np.shape(counts)[0] != np.shape(counts)[2]
                                   or np.shape(counts)[1] != m_weak):
            raise InvalidInputError(f"posterior_kwargs.prior_counts must have shape [K, {m_weak}, K] (true class, "
                                    f"weak model, given label), got {list(np.shape(counts))}")
    elif m.posterior_kwargs:
        raise InvalidInputError(f"posterior_kwargs {m.posterior_kwargs} are for posterior targets, "
                                f"not {m.targets!r}")
    if not isinstance(m.loss_kwargs, dict):
        raise InvalidInputError(f"loss_kwargs must be a mapping, got {m.loss_kwargs!r}")
    settings, loss = dict(m.loss_kwargs), m.loss
    if cfg.is_generation:
        if kind in ("weak_all", "joint_decoding") and "weights" in settings:   # λ per weak model
            lam = settings.pop("weights")
            if not isinstance(lam, (list, tuple)) or len(lam) != len(cfg.weak_models) or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 for v in lam) \
                    or not sum(lam) > 0:   # all zero: a loss of 0, a student that never moves
                raise InvalidInputError(f"loss_kwargs.weights must be {len(cfg.weak_models)} non-negative "
                                        f"numbers (one per weak model, not all 0), got {lam!r}")
        loss = "xent" if loss in ("xent", "weighted_xent", "token_weighted_xent", "multi_weak") else loss   # token-level
    get_loss(loss, **settings)
    pc = m.preference
    if pc is not None and (getattr(pc, "posterior_model", None), "em") not in posteriors:
        raise UnknownNameError(f"preference.posterior_model {pc.posterior_model!r} is not a posterior with EM; "
                               f"available: {names}")


def check_output_folder(out: Path, overwrite: bool = False) -> None:
    """Refuse a folder that already holds a report unless ``overwrite``, and one that cannot be
    written (found otherwise only when the first seed's files are, after its weak models trained)."""
    if "\0" in str(out):
        raise InvalidInputError(f"output folder {str(out)!r} cannot be made: a path cannot hold a NUL character")
    try:
        exists = out.exists()
    except OSError as exc:   # e.g. a name longer than the file system allows
        shown = str(out) if len(str(out)) <= 80 else str(out)[:80] + "…"
        raise InvalidInputError(f"output folder {shown} cannot be made ({exc.strerror})") from None
    if exists and not out.is_dir():
        raise InvalidInputError(f"output folder {out} is a file")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InvalidInputError(f"output folder {out} cannot be made: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"output folder {out} cannot be written: no write permission in {existing}")
    made = [p for p in (out.absolute(), *out.absolute().parents) if not p.exists()]
    try:   # os.access says yes to root anywhere, e.g. under /proc: write one file to know
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise InvalidInputError(f"output folder {out} cannot be written ({type(exc).__name__}: {exc})") from None
    finally:   # a run that finishes no seed leaves no folder behind
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()
    held = [name for name in REPORT_FILES if (out / name).exists()]
    if held and not overwrite:
        raise InvalidInputError(f"{out} already holds results ({', '.join(held)}); pass --overwrite "
                                "(overwrite=True) to replace them, or choose another --output folder")


def remove_stale_seed_files(out: Path, seeds: list[int], method_slugs: list[str] | None = None) -> list[Path]:
    """Delete per-seed files (weak labels, hypotheses, pairs, predictions, test probabilities,
    saved students) of seeds that are not in this run, and the saved students of methods that
    are not in it (``method_slugs``), so the folder holds one run's files only."""
    stale = [p for p in out.iterdir() if (m := _SEED_FILE.match(p.name)) and int(m.group(1)) not in seeds]
    stale += [p for p in out.glob("students/*/seed*") if p.name[4:].isdigit() and int(p.name[4:]) not in seeds]
    if method_slugs is not None:   # a folder of ours holds nothing but seed<N> folders
        stale += [p for p in out.glob("students/*") if p.is_dir() and p.name not in set(method_slugs)
                  and all(c.is_dir() and _STUDENT_SEED.match(c.name) for c in p.iterdir())]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if stale:
        log.info("removed %d file(s) of seeds or methods not in this run: %s", len(stale),
                 ", ".join(p.name for p in stale))
    return stale


# -- the resume file ---------------------------------------------------------------------------

RESUME_FILE = "results.partial.json"
LEGACY_RESUME_FILE = "results.partial.csv"   # written without a fingerprint: never trusted
REPORT_FILES = ("results.csv", "results.md", "meta.json")
_STUDENT_SEED = re.compile(r"^seed\d+$")
_SEED_FILE = re.compile(r"^(?:weak_labels|weak_hypotheses|pairs|predictions|test_probs|target_probs)_seed(\d+)[_.]")
#: config keys that do not change a seed's rows (the seed list itself, where files go), and method keys
#: that change only how fast they come
RUN_ONLY_KEYS = ("name", "seeds", "data_dir", "output_root")
RUN_ONLY_METHOD_KEYS = ("posterior_jobs",)


def data_fingerprint(task) -> dict:
    """A short hash per split of what the models see (ids, texts, labels or targets)."""
    out = {}
    for split in ("weak_train", "strong_train", "test"):
        ds = task.split(split)
        h = hashlib.sha256()
        for col in ("id", "text", "label", "target"):
            if col in ds.column_names:
                h.update(json.dumps([col, list(ds[col])], default=str).encode())
        out[split] = h.hexdigest()[:16]
    out["label_names"] = [str(x) for x in task.label_names]
    return out


def run_fingerprint(cfg: ExperimentConfig, task) -> dict:
    """What a finished seed's rows depend on: the config (less :data:`RUN_ONLY_KEYS` and each method's
    :data:`RUN_ONLY_METHOD_KEYS`) and the data."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY_KEYS}
    config["methods"] = [{k: v for k, v in m.items() if k not in RUN_ONLY_METHOD_KEYS} for m in config["methods"]]
    return json.loads(json.dumps({"config": config, "data": data_fingerprint(task)}, default=str, sort_keys=True))


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items()
                for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list):
        return {k: v for i, sub in enumerate(value) for k, v in _flatten(sub, f"{prefix}[{i}]").items()} or {prefix: []}
    return {prefix: value}


def fingerprint_differences(old: dict, new: dict, limit: int = 6) -> list[str]:
    """``["student_train.epochs: 10 → 3", …]``: what differs between two fingerprints."""
    a, b = _flatten(old), _flatten(new)
    diffs = [f"{k}: {a.get(k, '(absent)')!r} → {b.get(k, '(absent)')!r}"
             for k in sorted(set(a) | set(b)) if a.get(k, object) != b.get(k, object)]
    return diffs[:limit] + ([f"… {len(diffs) - limit} more"] if len(diffs) > limit else [])


def _json_default(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return str(x)


class ResumeFile:
    """The finished seeds' rows of one output folder, with the fingerprint of the config
    and data they came from.

    Written by temp-and-rename as ``sha256 <hex>`` on the first line and the JSON body
    below it, so a truncated or edited file is detected, never read as results.
    """

    def __init__(self, path: Path, fingerprint: dict):
        self.path, self.fingerprint = Path(path), fingerprint

    def discard(self) -> None:
        for p in (self.path, self.path.with_name(LEGACY_RESUME_FILE)):
            p.unlink(missing_ok=True)

    def write(self, rows: pd.DataFrame) -> None:
        body = json.dumps({"format": 1, "fingerprint": self.fingerprint, "columns": list(rows.columns),
                           "rows": rows.to_dict("records")}, default=_json_default, sort_keys=True)
        write_text(self.path, f"sha256 {hashlib.sha256(body.encode()).hexdigest()}\n{body}")

    def read(self) -> pd.DataFrame:
        """Rows of finished seeds (empty when there are none); refuses a file of another
        config or data, and a corrupt one."""
        legacy = self.path.with_name(LEGACY_RESUME_FILE)
        if legacy.exists():
            raise InvalidInputError(f"{legacy} was written without a config fingerprint, so its seeds cannot be "
                                    "checked against this config; rerun with --restart (restart=True) to redo them")
        if not self.path.exists():
            return pd.DataFrame()
        hint = "rerun with --restart (restart=True) to discard it and redo its seeds"
        try:
            head, _, body = self.path.read_text(encoding="utf-8").partition("\n")
            if head != f"sha256 {hashlib.sha256(body.encode()).hexdigest()}":
                raise ValueError("checksum mismatch: truncated or edited")
            payload = json.loads(body)
            rows = pd.DataFrame.from_records(payload["rows"], columns=payload["columns"])   # the columns' order
            if payload.get("format") != 1 or rows.empty or not {"seed", "method", "kind"} <= set(rows.columns) \
                    or not pd.api.types.is_integer_dtype(rows["seed"]):
                raise ValueError("unexpected content")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise CorruptCacheError(f"resume file {self.path} is unreadable ({exc}); {hint}") from None
        if payload["fingerprint"] != self.fingerprint:
            diffs = fingerprint_differences(payload["fingerprint"], self.fingerprint)
            raise InvalidInputError(
                f"{self.path} holds seed(s) {sorted(set(rows['seed']))} of another config or data "
                f"({'; '.join(diffs)}); {hint}, or choose another --output folder")
        log.info("resuming: seed(s) %s already done (%s)", sorted(set(rows["seed"])), self.path)
        return rows
