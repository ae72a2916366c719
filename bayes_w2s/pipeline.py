"""Run a whole experiment: task → weak ensemble → posteriors → students → metrics → report."""
from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .config import ExperimentConfig, MethodConfig
from .metrics import accuracy, expected_calibration_error
from .posterior import fit_posterior
from .report import write_report
from .student import train_student
from .tasks import load_task
from .weak import WeakEnsemble, WeakLabels

log = logging.getLogger(__name__)


def _targets_for(method: MethodConfig, task, wl_train: WeakLabels, best_weak: str):
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
    return fit_posterior(wl_train, model=spec.name, method=spec.method, **method.posterior_kwargs)


def student_dir(out: Path, method: MethodConfig, seed: int) -> Path:
    """Where ``run_experiment`` saves a method's student: ``<results>/students/<method>/seed<s>/``."""
    return Path(out) / "students" / method.slug / f"seed{seed}"


def save_test_probs(path: Path, probs: dict, task) -> None:
    """Every row's test probabilities ``[rows, N, K]`` with the row names, item ids and
    true labels (``.npz``, no pickle): what the reliability diagram is drawn from."""
    np.savez_compressed(path, methods=np.array(list(probs), dtype=str),
                        probs=np.stack([np.asarray(p, dtype=np.float32) for p in probs.values()]),
                        ids=np.asarray(task.test["id"], dtype=str), labels=np.asarray(task.test["label"]))


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
    if save_dir is not None:
        wl_train.save(Path(save_dir) / f"weak_labels_seed{seed}_strong_train.npz")
        wl_test.save(Path(save_dir) / f"weak_labels_seed{seed}_test.npz")
    rows, test_probs = [], {}
    y_strong = np.asarray(task.strong_train["label"])

    def add(name, kind, probs, extra=None):
        test_probs[name] = probs
        rows.append({"seed": seed, "method": name, "kind": kind, "accuracy": accuracy(probs, y_test),
                     "ece": expected_calibration_error(probs, y_test), **(extra or {})})

    for m in weak.model_names:
        add(f"weak:{m}", "weak", wl_test.model(m),
            {"label_accuracy": accuracy(wl_train.model(m), y_strong)})
    add("weak_vote", "weak_ensemble", wl_test.majority_vote(), {"label_accuracy": accuracy(wl_train.majority_vote(), y_strong)})
    add("weak_mean", "weak_ensemble", wl_test.mean(), {"label_accuracy": accuracy(wl_train.mean(), y_strong)})
    weak_acc = {m: accuracy(wl_test.model(m), y_test) for m in weak.model_names}
    best_weak = max(weak_acc, key=weak_acc.get)

    for method in tqdm(cfg.methods, desc=f"students (seed {seed})", unit="student"):
        targets = _targets_for(method, task, wl_train, best_weak)
        # how good are the training targets themselves on strong_train's hidden ground truth?
        target_probs = getattr(targets, "item_probs", None)
        if target_probs is None:
            target_probs = targets.mean() if isinstance(targets, WeakLabels) else targets
        extra = {"label_accuracy": accuracy(target_probs, y_strong)} if method.targets != "ground_truth" else {}
        t0 = time.perf_counter()
        student = train_student(cfg.strong_model, task.strong_train, targets, method.loss,
                                label_names=task.label_names, hard=method.hard, config=cfg.student_config(method),
                                seed=seed, loss_kwargs=method.loss_kwargs, prefer_offline=cfg.prefer_offline)
        probs = student.predict_proba(task.test)
        extra["train_seconds"] = time.perf_counter() - t0
        if save_dir is not None and cfg.saves_students:
            student.save_pretrained(student_dir(save_dir, method, seed))
        add(method.name, "ceiling" if method.targets == "ground_truth" else "student", probs,
            {"targets": method.targets, "loss": method.loss, **extra})
    for r in rows:
        r["best_weak"] = best_weak
    if save_dir is not None:
        save_test_probs(Path(save_dir) / f"test_probs_seed{seed}.npz", test_probs, task)
    return rows


def experiment_task(cfg: ExperimentConfig):
    """The task of ``cfg``, split by ``split_seed``, weak_train cut to ``weak_label_budget``."""
    task = load_task(cfg.task, data_dir=cfg.data_dir, seed=cfg.split_seed, sizes=cfg.sizes)
    if cfg.weak_label_budget is not None:
        task = task.with_weak_budget(cfg.weak_label_budget, cfg.split_seed)
    return task


def run_experiment(cfg: ExperimentConfig, output_dir: str | Path | None = None, command: str = "") -> pd.DataFrame:
    """Run every seed of ``cfg`` and write ``results.csv``, ``results.md`` and a plot
    (``accuracy.png``; ``slu_f1.png`` for generation tasks)."""
    out = Path(output_dir or Path(cfg.output_root) / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    task = experiment_task(cfg)
    log.info("%s", task)
    partial = out / "results.partial.csv"   # resumable: finished seeds are not rerun
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame()
    frames = [done] if len(done) else []
    for seed in cfg.seeds:
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
        pd.concat(frames).to_csv(partial, index=False)
    results = pd.concat(frames, ignore_index=True)
    results = results[results["seed"].isin(cfg.seeds)]
    meta = {"config": cfg.to_dict(), "split_sizes": task.sizes(), "data_source": task.source,
            "metric": "slu_f1" if task.kind == "generation" else "accuracy",
            "wall_seconds": time.perf_counter() - start, "command": command,
            "seed_wall_seconds": {int(k): float(v) for k, v in results.groupby("seed")["seed_wall_seconds"].first().items()}
            if "seed_wall_seconds" in results else {},
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "python": platform.python_version()}
    from accelerate import PartialState
    if PartialState().is_main_process:   # under `accelerate launch` only rank 0 writes
        write_report(results, meta, out)
        partial.unlink(missing_ok=True)
    return results
