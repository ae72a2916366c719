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
from dataclasses import replace
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
from .tasks.generation import fills_no_slot, is_well_formed
from .train_config import DecodingConfig
from .weak import WeakEnsemble, WeakHypotheses

log = logging.getLogger(__name__)

#: the columns a generation row reports (SLU-F1 is the headline metric)
GEN_METRICS = ("slu_f1", "exact_match", "slu_precision", "slu_recall", "malformed", "no_slots")
#: the name the strong student goes by when it joins the word posterior as a supervisor
STUDENT = "strong_student"


def _fit_word_posterior(method: MethodConfig, hyps: WeakHypotheses):
    # word-level voting can mix pieces of different JSON targets: keep targets well-formed
    spec = method.spec
    return distributed.on_main(lambda: fit_posterior(hyps, model=spec.name, method=spec.method,   # once, broadcast
                                                     temperature=method.temperature,
                                                     **method.posterior_kwargs).constrain(is_well_formed))


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
    return _fit_word_posterior(method, hyps)


def _student_key(cfg: ExperimentConfig, method: MethodConfig, data, targets, seed: int) -> str:
    """Cache key of an SFT student: the strong card, the training settings, the seed, the
    training texts and the exact targets."""
    from .cards import load_card

    h = hashlib.sha256()
    for part in (load_card(cfg.strong_model).fingerprint(), cfg.student_config(method).key(), method.sft_key(),
                 str(seed), texts_fingerprint(list(data["text"])), *_target_strings(targets)):
        h.update(part.encode() + b"\0")
    for array in (getattr(targets, "slot_probs", None), getattr(targets, "weights", None)):
        if array is not None:
            h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    if getattr(targets, "word_slots", None) is not None:
        h.update(json.dumps([targets.word_slots, targets.word_paths], sort_keys=True).encode())
    if getattr(targets, "token_weighted", False):
        h.update(b"token_weighted")
    return f"{Path(cfg.strong_model).stem}-{h.hexdigest()[:16]}"


def _trained_student(cfg: ExperimentConfig, method: MethodConfig, data, targets, seed: int):
    """The method's SFT student on ``data`` (strong_train or a part of it), trained once and
    kept (safetensors) under the cache keyed by :func:`_student_key`, so a rerun after a
    crash — or another experiment with the same SFT rows — loads it instead."""
    from .cards import cache_dir
    from .student.generation import GenerationStudent
    from .weak.generators import CausalLMGenerator

    config = cfg.student_config(method)
    path = cache_dir("students") / _student_key(cfg, method, data, targets, seed)
    if distributed.all_agree(path.exists()):   # loaded by every rank, or trained by all together
        log.info("seed %d, %s: loading the trained student from %s", seed, method.name, path)
        try:
            gen = CausalLMGenerator(cfg.strong_model, config, cfg.prefer_offline).load(path)
            return GenerationStudent(gen, method.loss, method.targets, history=gen.history)
        except CorruptCacheError as err:   # retrain; the new folder replaces the bad one
            warn_unreadable(path, err.__cause__ or err)
    student = train_student(cfg.strong_model, data, targets, method.loss, hard=method.hard,
                            config=config, seed=seed, loss_kwargs=method.loss_kwargs, prefer_offline=cfg.prefer_offline)
    if distributed.is_main():
        try:
            student.save_pretrained(path)
        except OSError as err:   # a cache that cannot be written costs time, not results
            log.warning("could not write the student cache %s (%s); continuing without it", path, err)
    return student


def _target_strings(targets) -> list[str]:
    if hasattr(targets, "consensus"):
        return targets.consensus
    if hasattr(targets, "token_rows"):
        return targets.targets
    return list(targets)


def expected_no_slot_rate(targets, num_samples: int = 256, seed: int = 0) -> float:
    """The ``{}`` rate a student of ``targets`` should have on strong_train: for a word
    posterior the mean over items of its probability that the true target fills no slot;
    otherwise the share of training targets that fill none."""
    if hasattr(targets, "sample_targets"):
        draws = targets.sample_targets(num_samples, seed)
        return float(np.mean([sum(c for t, c in d.items() if fills_no_slot(t)) / sum(d.values()) for d in draws]))
    return float(np.mean([fills_no_slot(t) for t in _target_strings(targets)]))


def pair_stats(pairs, refs: list[str]) -> dict:
    """Diagnostics of preference pairs against the hidden references: how often chosen is
    truly better than rejected (ties half), the mean p, and how often chosen / rejected fill
    no slot (a ranker that favours ``{}`` teaches the student to say nothing)."""
    from .metrics import item_slu_f1

    if len(pairs) == 0:   # min_p can filter every pair out: no rates to report, and no empty-mean warnings
        return {"pairs": 0, "pair_accuracy": float("nan"), "mean_p": float("nan"), "chosen_empty": float("nan"),
                "rejected_empty": float("nan")}
    truly = [np.sign(item_slu_f1(c, refs[i]) - item_slu_f1(r, refs[i]))
             for i, c, r in zip(pairs.items, pairs.chosen, pairs.rejected)]
    return {"pairs": len(pairs), "pair_accuracy": float(np.mean([(d > 0) + 0.5 * (d == 0) for d in truly])),
            "mean_p": float(pairs.p.mean()), "chosen_empty": float(np.mean([fills_no_slot(c) for c in pairs.chosen])),
            "rejected_empty": float(np.mean([fills_no_slot(r) for r in pairs.rejected]))}


class _SeedRun:
    """The students of one seed, with everything rows share cached: SFT students (by SFT
    key), their test outputs (by decoding), N-best lists, rankings, and the ``{}`` scores
    that calibrate the no-slot decision."""

    def __init__(self, cfg: ExperimentConfig, task, weak: WeakEnsemble, hyp_train: WeakHypotheses, best_weak: str,
                 seed: int, save_dir: Path | None):
        self.cfg, self.task, self.weak, self.hyp_train = cfg, task, weak, hyp_train
        self.best_weak, self.seed, self.save_dir = best_weak, seed, save_dir
        self.train_texts = list(task.strong_train["text"])
        self.test_texts = list(task.test["text"])
        self.sft: dict[str, tuple] = {}           # SFT key → (student, targets, extra columns)
        self.outputs: dict[tuple, tuple] = {}     # (SFT key, decoding key) → (test outputs, extra)
        self.calibration: dict[str, np.ndarray] = {}     # SFT key → its P({}) scores on strong_train
        self.candidates: dict[tuple, tuple] = {}
        self.rankings: dict[tuple, object] = {}

    # -- SFT ---------------------------------------------------------------------------------
    def sft_student(self, method: MethodConfig):
        key = method.sft_key()
        if key not in self.sft:
            t0 = time.perf_counter()
            targets = _targets_for(method, self.task, self.weak, self.hyp_train, self.best_weak)
            extra = {"targets": method.targets, "loss": method.loss}
            if method.student_rounds:
                targets, extra["student_rounds"] = self.loop_targets(method, targets), method.student_rounds
            strings = _target_strings(targets)
            if method.targets != "ground_truth" and len(strings) == len(self.train_texts):
                extra["label_slu_f1"] = slu_scores(strings, list(self.task.strong_train["target"]))["slu_f1"]
            student = _trained_student(self.cfg, method, self.task.strong_train, targets, self.seed)
            extra["train_seconds"] = time.perf_counter() - t0
            self.sft[key] = (student, targets, extra)
        return self.sft[key]

    def loop_targets(self, method: MethodConfig, posterior):
        """The strong model in the loop (``student_rounds``): students cross-fitted on
        ``crossfit_folds`` folds of strong_train write the held-out items' targets (with word
        log-probs, through the word bridge; constrained when the method decodes so); their
        outputs join the weak hypotheses as one more supervisor and the word posterior is
        refitted, ``student_rounds`` times. A student never writes an item it trained on (nor a copy
        of its text), unless ``crossfit_folds`` is 1: then the student of the current targets (round 1:
        the method's plain SFT student, reused) writes every item — one SFT cheaper per round, but
        its outputs partly echo the targets it learnt."""
        from .student.generation import posterior_targets
        from .student.loop import fold_indices

        n = len(self.train_texts)
        for r in range(method.student_rounds):
            base = posterior_targets(posterior, self.train_texts, soft=not method.hard,
                                     weighted=method.loss == "weighted_xent",
                                     token_weighted=method.loss == "token_weighted_xent")
            written: list = [None] * n
            if method.crossfit_folds == 1:    # no cross-fitting: the student of the current targets writes all
                writer = _trained_student(self.cfg, replace(method, student_rounds=0), self.task.strong_train,
                                          posterior, self.seed)
                hyps = writer.generator.generate(self.train_texts, n_best=1,
                                                 processors=self.processors(writer, method, self.train_texts))
                written = [h[:1] for h in hyps]
            folds = (fold_indices(n, method.crossfit_folds, self.seed + r, groups=self.train_texts)
                     if method.crossfit_folds > 1 else [])
            for held in folds:
                keep = np.setdiff1d(np.arange(n), held)
                fold = _trained_student(self.cfg, method, self.task.strong_train.select(keep), base.subset(keep),
                                        self.seed)
                texts = [self.train_texts[i] for i in held]
                hyps = fold.generator.generate(texts, n_best=1, processors=self.processors(fold, method, texts))
                for i, h in zip(held, hyps):
                    written[i] = h[:1]
            student = WeakHypotheses([[h] for h in written], [STUDENT], self.hyp_train.ids)
            posterior = _fit_word_posterior(method, WeakHypotheses.concat_models([self.hyp_train, student]))
            log.info("seed %d, %s: loop round %d, student targets SLU-F1 %.1f, refitted targets %.1f", self.seed,
                     method.name, r + 1, 100 * slu_scores(student.best(0), list(self.task.strong_train["target"]))
                     ["slu_f1"], 100 * slu_scores(posterior.consensus, list(self.task.strong_train["target"]))["slu_f1"])
        return posterior

    # -- decoding ----------------------------------------------------------------------------
    def processors(self, student, method: MethodConfig, texts: list[str], forbid_empty=None):
        from .student.decoding import slot_processors

        dec = method.decoding or DecodingConfig()
        if not dec.constrained and forbid_empty is None:
            return None
        return slot_processors(student.generator.tokenizer, texts, self.task.slot_types if dec.constrained else None,
                               forbid_empty)

    def closed(self, method: MethodConfig, texts: list[str], outputs: list[str]) -> list[str]:
        """Constrained outputs that the length limit cut mid-object, closed after their last
        whole entity (:meth:`SlotGrammar.close`); others as they are."""
        from .student.decoding import close_all

        dec = method.decoding or DecodingConfig()
        return close_all(texts, outputs, self.task.slot_types) if dec.constrained else outputs

    def decode(self, student, method: MethodConfig, targets, cache: bool = True) -> tuple[list[str], dict]:
        """The student's test outputs under the method's decoding, and columns saying how.
        ``cache``: the student is the method's SFT student (outputs and ``{}`` scores are kept
        for the rows that share it)."""
        from .student.decoding import empty_scores, no_slot_threshold

        dec = method.decoding or DecodingConfig()
        key = (method.sft_key(), dec.key())
        if cache and key in self.outputs:
            return self.outputs[key]
        extra = {"decoding": ("constrained" if dec.constrained else "free") + f", {dec.no_slot} no-slot"}
        if dec.no_slot == "calibrated":
            calibration = self.calibration.get(method.sft_key()) if cache else None
            if calibration is None:
                calibration = empty_scores(student.generator, self.train_texts)
                if cache:
                    self.calibration[method.sft_key()] = calibration
            rate = dec.no_slot_rate if dec.no_slot_rate is not None else expected_no_slot_rate(targets, seed=self.seed)
            threshold = no_slot_threshold(calibration, rate)
            empty = empty_scores(student.generator, self.test_texts) >= threshold
            rest = [t for t, e in zip(self.test_texts, empty) if not e]
            written = iter(self.closed(method, rest, student.generate(
                rest, processors=self.processors(student, method, rest, np.ones(len(rest), bool)))))
            outputs = ["{}" if e else next(written) for e in empty]
            extra.update(no_slot_target=rate, no_slot_threshold=threshold)
        else:
            outputs = self.closed(method, self.test_texts, student.generate(
                self.test_texts, processors=self.processors(student, method, self.test_texts)))
        if cache:
            self.outputs[key] = (outputs, extra)
        return outputs, extra

    # -- preference ----------------------------------------------------------------------------
    def pairs(self, method: MethodConfig, student):
        """The student's N-best on a seeded subset of strong_train (``max_items``), ranked by
        the method's ranker with p from the word posterior (cached per setting, saved beside
        the results), then filtered by ``min_p``."""
        from .metrics import item_slu_f1
        from .student.preference import make_pairs, posterior_utilities, reference_scores, student_candidates

        pc, dec = method.preference, method.decoding or DecodingConfig()
        n = len(self.train_texts)
        cand_key = (method.sft_key(), pc.n_candidates, pc.max_items, dec.constrained)
        if cand_key not in self.candidates:
            items = np.arange(n) if pc.max_items is None or pc.max_items >= n else \
                np.sort(np.random.default_rng(self.seed).choice(n, pc.max_items, replace=False))
            texts = [self.train_texts[i] for i in items]
            cands = student_candidates(student, texts, pc.n_candidates, processors=self.processors(student, method, texts))
            cands = [list(dict.fromkeys(self.closed(method, [t] * len(c), c))) for t, c in zip(texts, cands)]
            self.candidates[cand_key] = (items, texts, cands)
        items, texts, cands = self.candidates[cand_key]
        refs = [self.task.strong_train["target"][i] for i in items]   # hidden: pair diagnostics and the oracle
        pair_key = (*cand_key, pc.ranker, pc.rejected, pc.posterior_model, pc.posterior_samples)
        if pair_key not in self.rankings:
            def fit_and_sample():   # global work: once, on rank 0, broadcast
                posterior = fit_posterior(self.hyp_train, model=pc.posterior_model, method="em").constrain(is_well_formed)
                return posterior_utilities(posterior, cands, item_slu_f1, pc.posterior_samples, self.seed, items=items)

            utilities = distributed.on_main(fit_and_sample)
            expected = [u @ w for u, w in utilities]
            if pc.ranker == "weak":
                scores = self.weak.generation_.score_candidates(texts, cands)
            elif pc.ranker == "oracle":
                scores = reference_scores(cands, refs, item_slu_f1)
            else:
                scores = expected
            pairs = make_pairs(texts, cands, scores, utilities, source=f"{pc.ranker} ranker", rejected=pc.rejected)
            if self.save_dir is not None and distributed.is_main():   # rank 0 writes
                self._save_ranking(len(self.rankings), pc.ranker, items, cands, expected,
                                   None if pc.ranker == "posterior" else scores, pairs)
            self.rankings[pair_key] = pairs
        pairs = self.rankings[pair_key]
        pairs = pairs.filter(pc.min_p) if pc.min_p else pairs
        extra = pair_stats(pairs, refs)
        log.info("seed %d: %d pairs (%s ranker, p ≥ %g), chosen truly better in %.1f%%, mean p %.2f, chosen {} %.0f%%, "
                 "rejected {} %.0f%%", self.seed, len(pairs), pc.ranker, pc.min_p, 100 * extra["pair_accuracy"],
                 extra["mean_p"], 100 * extra["chosen_empty"], 100 * extra["rejected_empty"])
        return pairs, extra

    def _save_ranking(self, k: int, ranker: str, items, cands, expected, ranker_scores, pairs) -> None:
        """Every candidate, its expected SLU-F1 and (weak or oracle ranker) the ranker's score
        (``weak_score`` / ``oracle_score``), chosen / rejected, p."""
        paired = {int(i): j for j, i in enumerate(pairs.items)}
        with atomic_path(Path(self.save_dir) / f"pairs_seed{self.seed}_{k}_{ranker}.jsonl") as tmp, \
                open(tmp, "w") as fh:
            for n, item in enumerate(items):
                row = {"id": self.task.strong_train["id"][int(item)], "candidates": cands[n],
                       "expected_slu_f1": np.round(expected[n], 4).tolist()}
                if ranker_scores is not None:
                    row[f"{ranker}_score"] = np.round(ranker_scores[n], 4).tolist()
                if n in paired:
                    j = paired[n]
                    row.update(chosen=pairs.chosen[j], rejected=pairs.rejected[j], p=round(float(pairs.p[j]), 4))
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    # -- one row -------------------------------------------------------------------------------
    def row(self, method: MethodConfig) -> tuple[list[str], dict, object]:
        """A method's test outputs, its extra columns and the model that wrote them."""
        from .student.preference import train_preference

        student, targets, extra = self.sft_student(method)
        if method.preference is None:
            outputs, how = self.decode(student, method, targets)
            return outputs, {**extra, **how}, student
        t0 = time.perf_counter()
        pc = method.preference
        pairs, pair_extra = self.pairs(method, student)
        tuned = train_preference(student, pairs, pc, seed=self.seed)
        outputs, how = self.decode(tuned, method, targets, cache=False)
        return outputs, {**extra, **pair_extra, **how, "preference": pc.loss, "beta": pc.beta,
                         "epsilon": pc.epsilon if pc.loss in ("cdpo", "robust") else float("nan"),
                         "min_p": pc.min_p, "sft_weight": pc.sft_weight, "pref_learning_rate": pc.learning_rate,
                         "sft_seconds": extra["train_seconds"], "train_seconds": time.perf_counter() - t0}, tuned


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
        log.info("seed %d, %s: SLU-F1 %.1f, exact match %.1f, {} %.0f%%", seed, name, 100 * scores["slu_f1"],
                 100 * scores["exact_match"], 100 * scores["no_slots"])
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

    run = _SeedRun(cfg, task, weak, hyp_train, best_weak, seed, save_dir)
    for method in tqdm(cfg.methods, desc=f"students (seed {seed})", unit="student",
                       disable=not distributed.is_main()):
        preds, extra, model = run.row(method)
        if writes and cfg.saves_students:
            from .pipeline import student_dir
            model.save_pretrained(student_dir(save_dir, method, seed))
        kind = "ceiling" if method.targets == "ground_truth" else \
            "oracle" if method.preference is not None and method.preference.ranker == "oracle" else "student"
        add(method.name, kind, preds, extra)
    for r in rows:
        r["best_weak"] = best_weak
    if writes:   # model outputs only: the references stay in the dataset (by id)
        with atomic_path(Path(save_dir) / f"predictions_seed{seed}.jsonl") as tmp, open(tmp, "w") as fh:
            for i, item_id in enumerate(task.test["id"]):
                fh.write(json.dumps({"id": item_id, **{name: p[i] for name, p in predictions.items()}}) + "\n")
    return rows
