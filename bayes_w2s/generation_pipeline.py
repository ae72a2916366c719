"""One seed of a generation (slot-filling) experiment: weak generators → hypotheses →
word posterior / joint decoding → generation students → SLU-F1 rows.

The classification counterpart is :func:`bayes_w2s.pipeline.run_seed`; both go through the
same entry points (``WeakEnsemble``, ``fit_posterior``, ``train_student``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import distributed
from .backbones import texts_fingerprint
from .config import ExperimentConfig, MethodConfig
from .errors import CorruptCacheError, InvalidInputError
from .io import atomic_path, warn_unreadable
from .metrics import slu_scores
from .posterior import fit_posterior
from .student import train_student
from .tasks.generation import is_well_formed
from .weak import WeakEnsemble, WeakHypotheses

log = logging.getLogger(__name__)

#: the columns a generation row reports (SLU-F1 is the headline metric)
GEN_METRICS = ("slu_f1", "exact_match", "slu_precision", "slu_recall", "malformed", "no_slots")


def _targets_for(method: MethodConfig, task, weak: WeakEnsemble, hyps: WeakHypotheses, best_weak: str):
    """Training targets of one method on strong_train (strings, GenerationTargets or a WordPosterior)."""
    from .student.generation import GenerationTargets

    spec = method.spec
    texts = list(task.strong_train["text"])
    if spec.kind == "ground_truth":
        return list(task.strong_train["target"])
    if spec.kind in ("weak", "best_weak"):
        return hyps.best(hyps.model_names.index(spec.name if spec.kind == "weak" else best_weak))
    if spec.kind == "weak_all":   # naive multi-weak: one row per (item, weak model), weighted λ_m
        m = hyps.num_models
        lam = np.asarray(method.loss_kwargs.get("weights", [1.0 / m] * m), dtype=float)
        if lam.shape != (m,):
            raise InvalidInputError(f"method {method.name!r}: {len(lam)} weights λ for {m} weak models")
        return GenerationTargets([t for t in texts for _ in range(m)],
                                 [hyps.best(j)[n] for n in range(len(texts)) for j in range(m)],
                                 weights=np.tile(lam, len(texts)), source="weak_all")
    if spec.kind == "joint_decoding":
        return weak.generation_.joint_decode(task.strong_train, hyps, method.loss_kwargs.get("weights"))
    # word-level voting can mix pieces of different JSON targets: keep targets well-formed
    return distributed.on_main(lambda: fit_posterior(hyps, model=spec.name, method=spec.method,   # once, broadcast
                                                     temperature=method.temperature,
                                                     **method.posterior_kwargs).constrain(is_well_formed))


def _trained_student(cfg: ExperimentConfig, method: MethodConfig, task, targets, seed: int):
    """The method's SFT student, trained once and kept (safetensors) under the cache keyed
    by the strong card, the training settings, the seed and the exact targets, so a rerun
    after a crash — or another experiment with the same SFT rows — loads it instead."""
    from .cards import cache_dir, load_card
    from .student.generation import GenerationStudent
    from .weak.generators import CausalLMGenerator

    config = cfg.student_config(method)
    h = hashlib.sha256()
    for part in (load_card(cfg.strong_model).fingerprint(), config.key(), method.sft_key(), str(seed),
                 texts_fingerprint(list(task.strong_train["text"])), *_target_strings(targets)):
        h.update(part.encode() + b"\0")
    for array in (getattr(targets, "slot_probs", None), getattr(targets, "weights", None)):
        if array is not None:
            h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    if getattr(targets, "word_slots", None) is not None:
        h.update(json.dumps([targets.word_slots, targets.word_paths], sort_keys=True).encode())
    path = cache_dir("students") / f"{Path(cfg.strong_model).stem}-{h.hexdigest()[:16]}"
    if distributed.all_agree(path.exists()):   # loaded by every rank, or trained by all together
        log.info("seed %d, %s: loading the trained student from %s", seed, method.name, path)
        try:
            gen = CausalLMGenerator(cfg.strong_model, config, cfg.prefer_offline).load(path)
            return GenerationStudent(gen, method.loss, method.targets, history=gen.history)
        except CorruptCacheError as err:   # retrain; the new folder replaces the bad one
            warn_unreadable(path, err.__cause__ or err)
    student = train_student(cfg.strong_model, task.strong_train, targets, method.loss, hard=method.hard,
                            config=config, seed=seed, loss_kwargs=method.loss_kwargs, prefer_offline=cfg.prefer_offline)
    if distributed.is_main():
        try:
            student.save_pretrained(path)
        except OSError as err:   # a cache that cannot be written costs time, not results
            log.warning("could not write the student cache %s (%s); continuing without it", path, err)
    return student


def _pair_candidates(pc, student, task, seed: int):
    """A seeded subset of strong_train (``pc.max_items``) and the SFT student's N-best on it."""
    from .student.preference import student_candidates

    n = len(task.strong_train)
    items = np.arange(n) if pc.max_items is None or pc.max_items >= n else \
        np.sort(np.random.default_rng(seed).choice(n, pc.max_items, replace=False))
    texts = [task.strong_train["text"][i] for i in items]
    return items, texts, student_candidates(student, texts, pc.n_candidates)


def _preference_pairs(pc, candidates, task, weak: WeakEnsemble, hyp_train: WeakHypotheses, seed: int,
                      save_path: Path | None = None):
    """Rank the student's N-best (``_pair_candidates``) by ``pc.ranker``, with p from the word
    posterior. Also returns diagnostics against the hidden references: how often chosen is
    truly better than rejected (ties half), the mean p, and how often chosen / rejected
    fill no slot (a ranker that favours ``{}`` teaches the student to say nothing)."""
    from .metrics import item_slu_f1
    from .student.preference import make_pairs, posterior_utilities
    from .tasks.generation import fills_no_slot

    items, texts, cands = candidates
    refs = [task.strong_train["target"][i] for i in items]
    def fit_and_sample():   # global work: once, on rank 0, broadcast
        posterior = fit_posterior(hyp_train, model=pc.posterior_model, method="em").constrain(is_well_formed)
        return posterior_utilities(posterior, cands, item_slu_f1, pc.posterior_samples, seed, items=items)

    utilities = distributed.on_main(fit_and_sample)
    expected = [u @ w for u, w in utilities]
    weak_scores = weak.generation_.score_candidates(texts, cands) if pc.ranker == "weak" else None
    pairs = make_pairs(texts, cands, expected if weak_scores is None else weak_scores, utilities,
                       source=f"{pc.ranker} ranker")
    truly = [np.sign(item_slu_f1(c, refs[i]) - item_slu_f1(r, refs[i]))
             for i, c, r in zip(pairs.items, pairs.chosen, pairs.rejected)]

    extra = {"pairs": len(pairs), "pair_accuracy": float(np.mean([(d > 0) + 0.5 * (d == 0) for d in truly])),
             "mean_p": float(pairs.p.mean()), "chosen_empty": float(np.mean([fills_no_slot(c) for c in pairs.chosen])),
             "rejected_empty": float(np.mean([fills_no_slot(r) for r in pairs.rejected]))}
    log.info("seed %d: %d pairs (%s ranker), chosen truly better in %.1f%%, mean p %.2f, chosen {} %.0f%%, "
             "rejected {} %.0f%%", seed, len(pairs), pc.ranker, 100 * extra["pair_accuracy"], extra["mean_p"],
             100 * extra["chosen_empty"], 100 * extra["rejected_empty"])
    # every candidate, its expected SLU-F1 and (weak ranker) its weak score; rank 0 writes
    if save_path is not None and distributed.is_main():
        paired = {int(i): k for k, i in enumerate(pairs.items)}
        with atomic_path(save_path) as tmp, open(tmp, "w") as fh:
            for n, item in enumerate(items):
                row = {"id": task.strong_train["id"][int(item)], "candidates": cands[n],
                       "expected_slu_f1": np.round(expected[n], 4).tolist()}
                if weak_scores is not None:
                    row["weak_score"] = np.round(weak_scores[n], 4).tolist()
                if n in paired:
                    k = paired[n]
                    row.update(chosen=pairs.chosen[k], rejected=pairs.rejected[k], p=round(float(pairs.p[k]), 4))
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return pairs, extra


def _target_strings(targets) -> list[str]:
    if hasattr(targets, "consensus"):
        return targets.consensus
    if hasattr(targets, "token_rows"):
        return targets.targets
    return list(targets)


def run_generation_seed(cfg: ExperimentConfig, task, seed: int, save_dir: Path | None = None) -> list[dict]:
    """All rows of one seed: each weak generator, ROVER and joint decoding of the weak
    ensemble on test, and every method's student. With ``save_dir`` the weak hypotheses
    and every row's test predictions are written there."""
    refs_test, refs_train = list(task.test["target"]), list(task.strong_train["target"])
    configs = {m: cfg.weak_config(m) for m in cfg.weak_models}
    weak = WeakEnsemble(cfg.weak_models, configs, seed=seed, prefer_offline=cfg.prefer_offline)
    weak.fit(task.weak_train, task.slot_types)
    hyp_train, hyp_test = weak.predict(task.strong_train), weak.predict(task.test)
    predictions: dict[str, list[str]] = {}
    writes = save_dir is not None and distributed.is_main()   # under accelerate launch only rank 0 writes
    if writes:
        hyp_train.save(Path(save_dir) / f"weak_hypotheses_seed{seed}_strong_train.json.gz")
        hyp_test.save(Path(save_dir) / f"weak_hypotheses_seed{seed}_test.json.gz")
    rows = []

    def add(name, kind, preds, extra=None):
        scores = slu_scores(preds, refs_test)
        predictions[name] = list(preds)
        log.info("seed %d, %s: SLU-F1 %.1f, exact match %.1f", seed, name, 100 * scores["slu_f1"],
                 100 * scores["exact_match"])
        rows.append({"seed": seed, "method": name, "kind": kind, **{k: scores[k] for k in GEN_METRICS},
                     **(extra or {})})

    names = hyp_test.model_names
    for j, m in enumerate(names):
        add(f"weak:{m}", "weak", hyp_test.best(j), {"label_slu_f1": slu_scores(hyp_train.best(j), refs_train)["slu_f1"]})
    # the reliabilities are learnt on strong_train and applied to the test items without a refit
    # (an inductive consensus: the test set's own labels never shape the weak models' weights)
    rover = distributed.on_main(lambda: fit_posterior(hyp_train, model="word_reliability", method="em")
                                .predict(hyp_test).constrain(is_well_formed))
    add("weak_rover", "weak_ensemble", rover.consensus)
    add("weak_joint_decoding", "weak_ensemble", weak.generation_.joint_decode(task.test, hyp_test))
    weak_f1 = {m: r["slu_f1"] for m, r in zip(names, rows)}
    best_weak = max(weak_f1, key=weak_f1.get)

    sft: dict[str, tuple] = {}          # SFT key → (student, its test predictions, its extra columns)
    candidate_cache: dict[tuple, tuple] = {}     # (SFT key, N, prompts) → the student's N-best
    pair_cache: dict[tuple, tuple] = {}
    for method in tqdm(cfg.methods, desc=f"students (seed {seed})", unit="student",
                       disable=not distributed.is_main()):
        key = method.sft_key()
        if key not in sft:
            targets = _targets_for(method, task, weak, hyp_train, best_weak)
            extra = {"targets": method.targets, "loss": method.loss}
            strings = _target_strings(targets)
            if method.targets != "ground_truth" and len(strings) == len(refs_train):
                extra["label_slu_f1"] = slu_scores(strings, refs_train)["slu_f1"]
            t0 = time.perf_counter()
            student = _trained_student(cfg, method, task, targets, seed)
            preds = student.generate(task.test["text"])
            extra["train_seconds"] = time.perf_counter() - t0
            sft[key] = (student, preds, extra)
        student, preds, extra = sft[key]
        if method.preference is not None:
            t0 = time.perf_counter()
            pc = method.preference
            cand_key = (key, pc.n_candidates, pc.max_items)
            if cand_key not in candidate_cache:
                candidate_cache[cand_key] = _pair_candidates(pc, student, task, seed)
            pair_key = (*cand_key, pc.ranker, pc.posterior_model, pc.posterior_samples)
            if pair_key not in pair_cache:
                save_path = None if save_dir is None else \
                    Path(save_dir) / f"pairs_seed{seed}_{len(pair_cache)}_{pc.ranker}.jsonl"
                pair_cache[pair_key] = _preference_pairs(pc, candidate_cache[cand_key], task, weak, hyp_train,
                                                         seed, save_path)
            pairs, pair_extra = pair_cache[pair_key]
            from .student.preference import train_preference
            tuned = train_preference(student, pairs, pc, seed=seed)
            preds = tuned.generate(task.test["text"])
            extra = {**extra, **pair_extra, "preference": pc.loss, "beta": pc.beta,
                     "epsilon": pc.epsilon if pc.loss in ("cdpo", "robust") else float("nan"),
                     "sft_seconds": extra["train_seconds"], "train_seconds": time.perf_counter() - t0}
        if writes and cfg.saves_students:
            from .pipeline import student_dir
            (tuned if method.preference is not None else student).save_pretrained(student_dir(save_dir, method, seed))
        add(method.name, "ceiling" if method.targets == "ground_truth" else "student", preds, extra)
    for r in rows:
        r["best_weak"] = best_weak
    if writes:   # model outputs only: the references stay in the dataset (by id)
        with atomic_path(Path(save_dir) / f"predictions_seed{seed}.jsonl") as tmp, open(tmp, "w") as fh:
            for i, item_id in enumerate(task.test["id"]):
                fh.write(json.dumps({"id": item_id, **{name: p[i] for name, p in predictions.items()}}) + "\n")
    return rows
