"""Benchmark: weak labelling throughput (``WeakEnsemble.predict``) against the hardware floor
and against ``transformers.pipeline``.

For a classifier card (head mode: frozen backbone → pooled features → trained head) and a
generator card (n-best beam search, per-token scores through the word bridge), the same
texts go through three paths, interleaved in one process so background load hits each
alike, ``--reps`` times (medians reported):

* **predict**: ``WeakEnsemble.predict`` with every cache emptied first (features and weak
  labels are recomputed: tokenisation, batching, pooling, the head, the cache write);
* **floor**: the same length-sorted batches, tokenised beforehand, through the model's
  forward alone (the backbone; for a generator ``model.generate`` with the same beam
  settings, without per-token scores);
* **pipeline**: ``transformers.pipeline`` with the same model and ``batch_size``
  (``text-classification`` over backbone + trained head; ``text-generation`` with the
  same beams). It does not sort by length and returns no per-token scores.

Goals on this CPU: predict ≥ 0.8× the floor's examples/s and ≥ 1.0× the pipeline's.
``--per-example`` adds the old figure: batched, length-sorted features against a loop of
one example at a time (the goal of ≥ 3× is a GPU figure; see ``experiments/gpu_check.py``).

    python experiments/bench_weak_inference.py --out experiments/results/bench_weak_inference
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "BAYES_W2S_CACHE" not in os.environ:   # a throw-away cache: every predict recomputes
    os.environ["BAYES_W2S_CACHE"] = tempfile.mkdtemp(prefix="bench-weak-")
    for sub in ("weights", "converted"):   # the user's converted weights are reused, not rebuilt
        src = Path.home() / ".cache" / "bayes_w2s" / sub
        if src.is_dir():
            os.symlink(src, Path(os.environ["BAYES_W2S_CACHE"]) / sub)

import numpy as np
import torch

from bayes_w2s import WeakEnsemble, load_task
from bayes_w2s.backbones import FeatureCache, PooledClassifier
from bayes_w2s.training import TrainConfig
from bayes_w2s.weak.generators import GeneratorConfig, prompt_of


def timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of ``fn()``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def interleave(paths: dict, reps: int) -> dict:
    """Each path once per repetition, rotating the order: ``{"wall": {path: [s, …]}, "cpu": …}``."""
    names = list(paths)
    times = {"wall": {name: [] for name in names}, "cpu": {name: [] for name in names}}
    for name in names:              # warm-up (allocators, lazy imports, caches of the tokenizers)
        paths[name]()
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = timed(paths[name])
            times["wall"][name].append(wall)
            times["cpu"][name].append(cpu)
    return times


# -- classifier card ---------------------------------------------------------------------

def classifier_paths(card: str, task, items: int, batch_size: int, device: str) -> tuple[dict, dict]:
    data = task.test.select(range(min(items, len(task.test))))
    texts = list(data["text"])
    weak = WeakEnsemble([card], TrainConfig(mode="head", epochs=5), cache=False).fit(task.weak_train, task.label_names)
    clf = weak._classifier(weak.model_names[0])          # trained once, outside the timing
    clf.features.batch_size = batch_size
    tok, backbone = load_model(clf.features)
    backbone = backbone.to(device)
    max_length = clf.config.max_length

    def predict():   # every cache emptied: features and weak labels are recomputed
        FeatureCache._rows.clear()
        clf.features.path(texts).unlink(missing_ok=True)
        return weak.predict(data)

    order = np.argsort([len(t) for t in texts], kind="stable")
    batches = [tok([texts[i] for i in order[s:s + batch_size]], padding=True, truncation=True,
                   max_length=max_length, return_tensors="pt").to(device) for s in range(0, len(texts), batch_size)]

    @torch.inference_mode()
    def floor():
        for enc in batches:
            backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])

    full = PooledClassifier(clf.model.config.__class__(**{**clf.model.config.to_dict(), "head_only": False,
                                                           "backbone_config": backbone.config.to_dict()}), backbone)
    full.head.load_state_dict(clf.model.head.state_dict())
    full.feature_mean.copy_(clf.model.feature_mean)
    full.feature_scale.copy_(clf.model.feature_scale)
    full = full.to(device).eval()
    from transformers import pipeline
    pipe = pipeline("text-classification", model=full, tokenizer=tok, device=torch.device(device),
                    batch_size=batch_size, top_k=None, truncation=True, max_length=max_length)

    def run_pipeline():
        return pipe(texts)

    # the three paths compute the same thing: predict's probabilities against the pipeline's
    ours = predict().probs[:, 0]
    theirs = np.array([[next(d["score"] for d in out if d["label"] == name) for name in full.config.id2label.values()]
                       for out in run_pipeline()])
    check = {"max_abs_prob_diff_vs_pipeline": float(np.abs(ours - theirs).max()),
             "argmax_agreement_vs_pipeline": float((ours.argmax(1) == theirs.argmax(1)).mean())}
    return {"floor": floor, "predict": predict, "pipeline": run_pipeline}, {"items": len(texts), **check}


def load_model(features: FeatureCache):
    from bayes_w2s.backbones import load_backbone
    return load_backbone(features.card, features.prefer_offline)


def per_example_figure(card: str, texts: list[str], batch_size: int, device: str, reps: int,
                       clock: str = "wall") -> dict:
    """The old figure: batched, length-sorted features against one example at a time."""
    from bayes_w2s.backbones import embed, load_backbone
    tok, model = load_backbone(card)
    model = model.to(device)
    times = interleave({"per_example": lambda: embed(texts, tok, model, batch_size=1, sort_by_length=False),
                        "batched_sorted": lambda: embed(texts, tok, model, batch_size=batch_size)}, reps)
    med = {k: statistics.median(v) for k, v in times[clock].items()}
    return {"clock": clock, "per_example_s": med["per_example"], "batched_sorted_s": med["batched_sorted"],
            "speedup": med["per_example"] / med["batched_sorted"]}


# -- generator card ----------------------------------------------------------------------

def generator_paths(card: str, task, items: int, n_best: int, batch_size: int, device: str,
                    epochs: float, max_new_tokens: int = 32) -> tuple[dict, dict]:
    data = task.test.select(range(min(items, len(task.test))))
    texts = list(data["text"])
    config = GeneratorConfig(mode="full", epochs=epochs, batch_size=16, learning_rate=1e-3, n_best=n_best,
                             max_new_tokens=max_new_tokens, eval_batch_size=batch_size * n_best)
    weak = WeakEnsemble([card], {card: config}, cache=False).fit(task.weak_train, task.slot_types)
    gen = weak.generation_.generator(weak.model_names[0])      # trained once, outside the timing
    gen.model = gen.model.to(device).eval()
    tok, model = gen.tokenizer, gen.model
    settings = dict(max_new_tokens=config.max_new_tokens, num_beams=n_best, num_return_sequences=n_best,
                    do_sample=False, early_stopping=True, use_cache=True, eos_token_id=tok.eos_token_id,
                    pad_token_id=tok.pad_token_id)

    def predict():
        return weak.predict(data, progress=False)

    prompts = [prompt_of(t, gen.prompt_template) for t in texts]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    tok.padding_side = "left"
    batches = [tok([prompts[i] for i in order[s:s + batch_size]], return_tensors="pt", padding=True).to(device)
               for s in range(0, len(prompts), batch_size)]

    @torch.inference_mode()
    def floor():
        for enc in batches:
            model.generate(**enc, **settings)

    from transformers import pipeline
    pipe = pipeline("text-generation", model=model, tokenizer=tok, device=torch.device(device), batch_size=batch_size)

    def run_pipeline():
        tok.padding_side = "left"
        return pipe(prompts, return_full_text=False, **settings)

    # the same beams: predict's n-best texts against the pipeline's (ours are re-ranked by log-prob)
    norm = lambda t: " ".join(t.split())   # noqa: E731
    ours = [{norm(h.text) for h in item[0]} for item in predict().nbest]
    theirs = [{norm(o["generated_text"]) for o in out} for out in run_pipeline()]
    check = {"nbest_set_agreement_vs_pipeline": float(np.mean([a == b for a, b in zip(ours, theirs)]))}
    return {"floor": floor, "predict": predict, "pipeline": run_pipeline}, {"items": len(texts), "n_best": n_best, **check}


# -- report ------------------------------------------------------------------------------

def summarise(kind: str, card: str, times: dict, info: dict, batch_size: int, clock: str = "wall") -> dict:
    """Examples/s and throughput ratios from the medians of ``clock`` (``wall``, or ``cpu``:
    this process's CPU time, which on cores shared with other jobs leaves out the time spent
    waiting for a core). Wall-clock ratios are kept alongside."""
    n = info["items"]
    out = {"kind": kind, "card": card, "batch_size": batch_size, **info, "clock": clock}
    for which in ("wall", "cpu"):
        med = {k: statistics.median(v) for k, v in times[which].items()}
        tag = "" if which == clock else f"_{which}"
        out.update({f"{k}_examples_per_s{tag}": n / v for k, v in med.items()})
        out[f"predict_vs_floor{tag}"] = med["floor"] / med["predict"]          # throughput ratios
        out[f"predict_vs_pipeline{tag}"] = med["pipeline"] / med["predict"]
    out["seconds"] = times
    return out


def write(out: Path, rows: list[dict], extra: dict, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"rows": rows, **extra, "command": command}, indent=2))
    import csv
    keys = ["kind", "card", "items", "batch_size", "floor_examples_per_s", "predict_examples_per_s",
            "pipeline_examples_per_s", "predict_vs_floor", "predict_vs_pipeline"]
    with open(out / "result.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    other = "wall" if extra["clock"] == "cpu" else "cpu"
    lines = ["# Weak labelling throughput against the floor and `transformers.pipeline`\n",
             f"{extra['machine']}; load average before the run {extra['load_before']}, after {extra['load_after']}"
             f"{' (cores shared with other jobs)' if extra['shared'] else ''}. Median of {extra['reps']} "
             f"interleaved repetitions per path, in one process; examples/s and ratios from "
             f"{'this process' + chr(39) + 's CPU time' if extra['clock'] == 'cpu' else 'wall-clock time'} "
             f"(the {other}-clock ratios in parentheses).\n",
             "| card | kind | items | batch | floor (ex/s) | `WeakEnsemble.predict` (ex/s) | pipeline (ex/s) "
             "| predict / floor | predict / pipeline |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['card']} | {r['kind']} | {r['items']} | {r['batch_size']} | {r['floor_examples_per_s']:.1f} "
                     f"| {r['predict_examples_per_s']:.1f} | {r['pipeline_examples_per_s']:.1f} "
                     f"| **{r['predict_vs_floor']:.2f}×** ({r[f'predict_vs_floor_{other}']:.2f}×) "
                     f"| **{r['predict_vs_pipeline']:.2f}×** ({r[f'predict_vs_pipeline_{other}']:.2f}×) |")
    lines.append("\nGoals: predict / floor ≥ 0.8, predict / pipeline ≥ 1.0.\n")
    if extra.get("per_example"):
        p = extra["per_example"]
        lines.append(f"Batched, length-sorted features vs one example at a time ({p['card']}, {p['items']} items): "
                     f"{p['per_example_s']:.2f} s → {p['batched_sorted_s']:.2f} s, **{p['speedup']:.1f}×** "
                     "(the ≥ 3× goal is a GPU figure).\n")
    lines.append(f"```\n{command}\n```\n")
    (out / "result.md").write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier", default="minilm-l6", help="classifier card ('' to skip)")
    p.add_argument("--generator", default="gpt2-scratch", help="generator card ('' to skip)")
    p.add_argument("--items", type=int, default=400, help="texts labelled per repetition")
    p.add_argument("--generator-items", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32, help="classifier: texts per batch")
    p.add_argument("--generator-batch-size", type=int, default=16, help="generator: prompts per batch")
    p.add_argument("--n-best", type=int, default=4)
    p.add_argument("--generator-epochs", type=float, default=3.0)
    p.add_argument("--weak-train", type=int, default=300)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--per-example", action="store_true", help="also time the per-example loop (old 3× figure)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--clock", choices=["wall", "cpu"],
                   help="what the ratios are computed from (default: cpu on a CPU device, wall on a GPU; both "
                        "are reported). CPU time of this process leaves out waiting for cores other jobs hold")
    p.add_argument("--out", default="experiments/results/bench_weak_inference")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    clock = a.clock or ("cpu" if a.device == "cpu" else "wall")
    load_before = os.getloadavg()[0]
    rows, extra = [], {}
    if a.classifier:
        task = load_task("sst2", seed=0, sizes={"weak_train": a.weak_train, "strong_train": 10, "test": a.items})
        paths, info = classifier_paths(a.classifier, task, a.items, a.batch_size, a.device)
        rows.append(summarise("classifier (head)", a.classifier, interleave(paths, a.reps), info, a.batch_size, clock))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds"}), flush=True)
        if a.per_example:
            texts = list(task.test["text"])
            extra["per_example"] = {"card": a.classifier, "items": len(texts),
                                    **per_example_figure(a.classifier, texts, a.batch_size, a.device,
                                                         max(1, a.reps // 2), clock)}
            print(json.dumps(extra["per_example"]), flush=True)
    if a.generator:
        task = load_task("slurp", seed=0, sizes={"weak_train": a.weak_train, "strong_train": 10, "test": a.generator_items})
        paths, info = generator_paths(a.generator, task, a.generator_items, a.n_best, a.generator_batch_size,
                                      a.device, a.generator_epochs)
        rows.append(summarise(f"generator ({a.n_best}-best)", a.generator, interleave(paths, a.reps), info,
                              a.generator_batch_size, clock))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds"}), flush=True)
    load_after = os.getloadavg()[0]
    extra.update(machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads, device {a.device}",
                 load_before=round(load_before, 2), load_after=round(load_after, 2),
                 shared=max(load_before, load_after) > 1.0, reps=a.reps, clock=clock)
    command = "python experiments/bench_weak_inference.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    write(Path(a.out), rows, extra, command)
    return rows, extra


if __name__ == "__main__":
    main()
