"""GPU check: the training and labelling paths on one CUDA device, in bf16, with nothing to
download or carry (every model is built here from a config, random weights; the data are
the offline SST-2 / SLURP files when found, else synthetic sentences of the same shape).

Sections (each timed, each with its peak ``torch.cuda.max_memory_allocated``; a failing
section is recorded and the next one runs):

1. ``students``: a classification student in each mode (``head``, ``lora``, ``full``) on a
   BERT-base-sized encoder, bf16 mixed precision; the student's weights must be on the device.
2. ``sft``: a generation student (GPT-2-small-sized, its own BPE) trained on token soft
   targets, then greedy decoding.
3. ``preference``: a DPO step (TRL's sigmoid loss) and a per-pair conservative DPO step
   (``cdpo_pair``) on pairs from the SFT student's own beams.
4. ``labelling``: ``WeakEnsemble.predict`` against the forward-only floor and
   ``transformers.pipeline`` (``experiments/bench_weak_inference.py``) for the encoder
   and the generator, and the old figure: batched, length-sorted features against a loop
   of one example at a time (goal ≥ 3× on a GPU).

About 3–5 minutes on one recent GPU (budget: 8). ``--device cpu --tiny`` runs the same code
with 2-layer models in about a minute: the dry-run the tests execute.

    python experiments/gpu_check.py --out experiments/results/gpu_check
    python experiments/gpu_check.py --device cpu --tiny --out /tmp/gpu_check_dry
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""          # before torch: the dry-run must not touch a GPU
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench_weak_inference, next to this file

import numpy as np
import torch

SIZES = {  # encoder (BERT-base / 2-layer), decoder (GPT-2 small / 2-layer), items per stage
    "full": dict(enc=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
                 dec=dict(n_layer=12, n_embd=768, n_head=12, n_positions=256, vocab_size=8000),
                 train=2000, test=1000, gen_train=1000, gen_test=256, pairs=256, reps=5, label_items=2000,
                 gen_items=256, batch=64, gen_batch=32, epochs=1.0, new_tokens=32),
    "tiny": dict(enc=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
                 dec=dict(n_layer=2, n_embd=64, n_head=2, n_positions=128, vocab_size=500),
                 train=64, test=32, gen_train=48, gen_test=16, pairs=16, reps=1, label_items=48,
                 gen_items=8, batch=16, gen_batch=8, epochs=1.0, new_tokens=8),
}


# -- data ---------------------------------------------------------------------------------

def synthetic_tasks(n_cls: int, n_gen: int, seed: int = 0):
    """A learnable sentiment task and a slot-filling task of SLURP's shape."""
    from datasets import Dataset

    from bayes_w2s.tasks.base import GenerationTask, Task
    from bayes_w2s.tasks.generation import render_slots
    rng = np.random.default_rng(seed)
    good, bad = ["great", "wonderful", "moving", "sharp", "funny"], ["dull", "awful", "tedious", "flat", "clumsy"]
    filler = "the film was {} and the cast {} , with a plot that felt {} from start to finish".split()

    def cls_split(n, tag):
        labels = rng.integers(0, 2, n)
        texts = [" ".join(filler[: 4 + rng.integers(0, len(filler) - 3)]).format(
            *(rng.choice(good if y else bad, 3))) for y in labels]
        return Dataset.from_dict({"text": texts, "label": labels.tolist(), "id": [f"{tag}{i}" for i in range(n)]})

    times, places = ["five am", "noon", "seven pm", "tomorrow"], ["paris", "the office", "london", "home"]

    def gen_split(n, tag):
        texts, targets = [], []
        for i in range(n):
            t, p = rng.choice(times), rng.choice(places)
            kind = rng.integers(0, 3)
            if kind == 0:
                texts.append(f"wake me up at {t}"), targets.append(render_slots([("time", t)]))
            elif kind == 1:
                texts.append(f"what is the weather in {p} at {t}")
                targets.append(render_slots([("place_name", p), ("time", t)]))
            else:
                texts.append("tell me a joke"), targets.append(render_slots([]))
        return Dataset.from_dict({"text": texts, "target": targets, "id": [f"{tag}{i}" for i in range(n)],
                                  "scenario": ["x"] * n, "intent": ["x"] * n})

    cls = Task("synthetic_sentiment", ["negative", "positive"], cls_split(n_cls, "w"), cls_split(n_cls, "s"),
               cls_split(n_cls, "t"), source="synthetic")
    gen = GenerationTask("synthetic_slots", ["place_name", "time"], gen_split(n_gen, "w"), gen_split(n_gen, "s"),
                         gen_split(n_gen, "t"), source="synthetic")
    return cls, gen


def tasks(size: dict, data: str):
    if data != "synthetic":
        try:
            from bayes_w2s import load_task
            cls = load_task("sst2", seed=0, sizes={"weak_train": size["train"], "strong_train": size["train"],
                                                     "test": max(size["test"], size["label_items"])})
            gen = load_task("slurp", seed=0, sizes={"weak_train": size["gen_train"], "strong_train": size["gen_train"],
                                                      "test": max(size["gen_test"], size["gen_items"])})
            return cls, gen
        except Exception as exc:   # no offline data on this machine
            if data == "real":
                raise
            print(f"offline data not found ({type(exc).__name__}: {exc}); using synthetic data", flush=True)
    return synthetic_tasks(max(size["train"], size["label_items"]), max(size["gen_train"], size["gen_items"]))


# -- models built here --------------------------------------------------------------------

def encoder_folder(root: Path, texts: list[str], dims: dict) -> str:
    """A BERT encoder with random weights and a BPE tokenizer trained on ``texts``, saved as
    a local folder (a model card by path)."""
    from transformers import BertConfig, BertModel

    from bayes_w2s.weak.generators import train_bpe_tokenizer
    tok = train_bpe_tokenizer(texts, 8000 if dims["hidden_size"] >= 256 else 500)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, max_position_embeddings=512,
                                 **dims))
    path = root / "encoder"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


def decoder_card(root: Path, dims: dict) -> str:
    """A scratch GPT-2 card (its BPE is trained on the task when the generator trains)."""
    import yaml
    path = root / "gpt2-check-scratch.yaml"
    path.write_text(yaml.safe_dump({"name": "gpt2-check-scratch", "hub_id": "openai-community/gpt2",
                                    "architecture": "decoder", "family": "gpt2", "pooling": "last",
                                    "scratch": {"model_type": "gpt2", **dims}}))
    return str(path)


# -- sections -----------------------------------------------------------------------------

def memory() -> dict:
    if not torch.cuda.is_available():
        return {}
    return {"max_memory_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "max_memory_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


def run_section(name: str, fn, results: dict) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        out = {"status": "ok", **fn()}
    except Exception as exc:   # one failing section must not hide the others' results
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    out.update(seconds=round(time.perf_counter() - t0, 2), **memory())
    results[name] = out
    print(f"[{name}] {out['status']} in {out['seconds']} s {json.dumps({k: v for k, v in out.items() if k not in ('traceback',)})[:600]}",
          flush=True)


def students(cls_task, encoder: str, size: dict, bf16: bool, device: str) -> dict:
    from bayes_w2s import train_student
    from bayes_w2s.training import TrainConfig
    y_test = np.asarray(cls_task.test["label"])[: size["test"]]
    test = cls_task.test.select(range(size["test"]))
    train = cls_task.strong_train.select(range(size["train"]))
    out = {}
    for mode, lr in (("head", 1e-3), ("lora", 5e-4), ("full", 5e-5)):
        t0 = time.perf_counter()
        student = train_student(encoder, train, np.asarray(train["label"]), "xent", label_names=cls_task.label_names,
                                config=TrainConfig(mode=mode, epochs=size["epochs"], batch_size=32, learning_rate=lr,
                                                   bf16=bf16, eval_batch_size=size["batch"]))
        acc = float((student.predict(test) == y_test).mean())
        param = next(student.classifier.model.parameters())
        if device == "cuda" and param.device.type != "cuda":
            raise RuntimeError(f"{mode} student's weights ended on {param.device}, not the GPU")
        out[mode] = {"seconds": round(time.perf_counter() - t0, 2), "test_accuracy": acc,
                     "weights_on": str(param.device), "train_seconds": round(student.classifier.train_seconds, 2)}
    return out


def sft_and_preference(gen_task, card: str, size: dict, bf16: bool, state: dict) -> dict:
    from bayes_w2s import train_student
    from bayes_w2s.weak.generators import GeneratorConfig
    train = gen_task.strong_train.select(range(size["gen_train"]))
    config = GeneratorConfig(mode="full", epochs=max(2.0, size["epochs"]), batch_size=16, learning_rate=1e-3,
                             max_new_tokens=24, n_best=4, eval_batch_size=size["gen_batch"] * 4, bf16=bf16)
    t0 = time.perf_counter()
    student = train_student(card, train, list(train["target"]), "xent", config=config)
    train_s = time.perf_counter() - t0
    test = list(gen_task.test["text"])[: size["gen_test"]]
    t0 = time.perf_counter()
    preds = student.generate(test, progress=False)
    state["student"] = student
    refs = list(gen_task.test["target"])[: size["gen_test"]]
    return {"train_seconds": round(train_s, 2), "generate_seconds": round(time.perf_counter() - t0, 2),
            "exact_match": float(np.mean([p == r for p, r in zip(preds, refs)])),
            "weights_on": str(next(student.generator.model.parameters()).device)}


def preference(gen_task, size: dict, state: dict) -> dict:
    from bayes_w2s.student.preference import PreferenceConfig, PreferencePairs, student_candidates, train_preference
    student = state.get("student")
    if student is None:
        raise RuntimeError("the sft section failed: no student to prefer from")
    texts = list(gen_task.strong_train["text"])[: size["pairs"]]
    refs = list(gen_task.strong_train["target"])[: size["pairs"]]
    cands = student_candidates(student, texts, 4, progress=False)
    # chosen = the reference, rejected = the student's best beam that differs from it; p from a seeded draw
    keep = [(t, r, next((c for c in cs if c != r), r + " ")) for t, r, cs in zip(texts, refs, cands)]
    p = np.random.default_rng(0).uniform(0.55, 1.0, len(keep))
    pairs = PreferencePairs([k[0] for k in keep], [k[1] for k in keep], [k[2] for k in keep], p, "gpu check")
    out = {"pairs": len(pairs)}
    for loss in ("dpo", "cdpo_pair"):
        t0 = time.perf_counter()
        tuned = train_preference(student, pairs, PreferenceConfig(loss=loss, mode="lora", epochs=1, batch_size=8,
                                                                  learning_rate=5e-4), seed=0)
        out[loss] = {"seconds": round(time.perf_counter() - t0, 2),
                     "train_loss": next((h["train_loss"] for h in reversed(tuned.history) if "train_loss" in h), None),
                     "weights_on": str(next(tuned.generator.model.parameters()).device)}
    return out


def labelling(cls_task, gen_task, encoder: str, card: str, size: dict, device: str) -> dict:
    import bench_weak_inference as bench
    out = {}
    paths, info = bench.classifier_paths(encoder, cls_task, size["label_items"], size["batch"], device)
    clock = "wall" if device == "cuda" else "cpu"
    out["classifier"] = bench.summarise("classifier (head)", "encoder", bench.interleave(paths, size["reps"]), info,
                                        size["batch"], clock)
    texts = list(cls_task.test["text"])[: size["label_items"]]
    out["per_example"] = bench.per_example_figure(encoder, texts, size["batch"], device, max(1, size["reps"] // 2),
                                                  clock)
    paths, info = bench.generator_paths(card, gen_task, size["gen_items"], 4, size["gen_batch"], device,
                                        max(2.0, size["epochs"]), size["new_tokens"])
    out["generator"] = bench.summarise("generator (4-best)", "gpt2-check-scratch", bench.interleave(paths, size["reps"]),
                                       info, size["gen_batch"], clock)
    return out


def write_report(out: Path, results: dict, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"meta": meta, "sections": results}, indent=2, default=str))
    lines = [f"# GPU check ({meta['device_name']})\n", f"{meta['machine']}; {meta['sizes']} sizes, bf16 {meta['bf16']}, "
             f"{meta['wall_seconds']:.0f} s in all.\n", "| section | status | seconds | peak memory (MiB) |",
             "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['status']} | {r['seconds']} | {r.get('max_memory_allocated_mib', '–')} |")
    st = results.get("students", {})
    if st.get("status") == "ok":
        lines += ["", "| student mode | seconds | test accuracy | weights on |", "|---|---|---|---|"]
        lines += [f"| {m} | {st[m]['seconds']} | {st[m]['test_accuracy']:.3f} | {st[m]['weights_on']} |"
                  for m in ("head", "lora", "full")]
    lab = results.get("labelling", {})
    if lab.get("status") == "ok":
        lines += ["", "| labelling | floor (ex/s) | predict (ex/s) | pipeline (ex/s) | predict / floor | predict / pipeline |",
                  "|---|---|---|---|---|---|"]
        for key in ("classifier", "generator"):
            r = lab[key]
            lines.append(f"| {r['kind']} | {r['floor_examples_per_s']:.0f} | {r['predict_examples_per_s']:.0f} | "
                         f"{r['pipeline_examples_per_s']:.0f} | {r['predict_vs_floor']:.2f}× | {r['predict_vs_pipeline']:.2f}× |")
        pe = lab["per_example"]
        lines.append(f"\nBatched, length-sorted features vs one example at a time: {pe['speedup']:.1f}× (goal ≥ 3×).")
    errors = {k: r["error"] for k, r in results.items() if r["status"] != "ok"}
    if errors:
        lines += ["", "Errors:", *[f"- {k}: `{e}`" for k, e in errors.items()]]
    lines += ["", f"```\n{meta['command']}\n```", ""]
    (out / "result.md").write_text("\n".join(lines))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for result.json and result.md")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="2-layer models and a few dozen items (the CPU dry-run)")
    p.add_argument("--data", choices=["auto", "real", "synthetic"], default="auto",
                   help="offline SST-2 / SLURP (real), synthetic sentences, or real when found (auto)")
    p.add_argument("--sections", nargs="+", default=["students", "sft", "preference", "labelling"])
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device: use --device cpu --tiny for the dry-run")
    size = SIZES["tiny" if a.tiny else "full"]
    bf16 = a.device == "cuda" and torch.cuda.is_bf16_supported()
    start = time.perf_counter()
    results, state = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BAYES_W2S_CACHE", str(Path(tmp) / "cache"))   # nothing cached from other runs
        cls_task, gen_task = tasks(size, a.data)
        encoder = encoder_folder(Path(tmp), list(cls_task.weak_train["text"]) + list(cls_task.strong_train["text"]),
                                 size["enc"])
        card = decoder_card(Path(tmp), size["dec"])
        sections = {"students": lambda: students(cls_task, encoder, size, bf16, a.device),
                    "sft": lambda: sft_and_preference(gen_task, card, size, bf16, state),
                    "preference": lambda: preference(gen_task, size, state),
                    "labelling": lambda: labelling(cls_task, gen_task, encoder, card, size, a.device)}
        for name in a.sections:
            run_section(name, sections[name], results)
    meta = {"device_name": torch.cuda.get_device_name(0) if a.device == "cuda" else "CPU dry-run",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
            "sizes": "tiny" if a.tiny else "full", "bf16": bf16, "data": cls_task.source,
            "wall_seconds": time.perf_counter() - start,
            "command": "python experiments/gpu_check.py " + shlex.join(argv if argv is not None else sys.argv[1:])}
    write_report(Path(a.out), results, meta)
    return {"meta": meta, "sections": results}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(r["status"] == "ok" for r in result["sections"].values()) else 1)
