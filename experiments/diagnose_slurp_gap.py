"""Where does a generation student lose to the best weak model? Reads the test predictions a
generation experiment saved (``predictions_seed<s>.jsonl``) and breaks the SLU-F1 gap
between a student row and the best weak model down by

* the ``{}`` decision: how often each says "no slot" against the references, and the
  four cells (student {} or not × weak {} or not) with each system's SLU counts there;
* counterfactuals: the student with the weak model's ``{}`` decisions, or backed off to
  the weak model where it says ``{}`` (what a better no-slot decision could recover);
* malformed outputs, unknown slot types and fillers that are not a span of the utterance;
* slot type (the corpus SLU-F1 the student would have with the weak model's counts on
  that type alone);
* gold filler length, and exact / partial (right type, filler off) / wrong-type / missed
  gold entities (spurious / … predicted entities).

With ``--hypotheses`` the word posterior's own view of "no slot" is added: its consensus
``{}`` rate on strong_train and its expected ``{}`` rate on test (fitted on strong_train,
applied to test without refitting), from the weak hypotheses the experiment saved.

    python experiments/diagnose_slurp_gap.py experiments/results/slurp_cpu experiments/results/slurp_dpo_cpu \
        --out experiments/results/slurp_gap_diagnosis
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import slu_scores
from bayes_w2s.metrics.slu import _prf, _span_counts, char_distance, word_distance
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.tasks.generation import fills_no_slot, parse_slots

LENGTHS = ("1", "2", "3", "4+")


def counts(gold: list[dict], pred: list[dict]) -> np.ndarray:
    """(TP, FP, FN) of one utterance, word + char tables summed (as SLU-F1)."""
    return _span_counts(gold, pred, word_distance) + _span_counts(gold, pred, char_distance)


def f1(c: np.ndarray) -> float:
    return _prf(*c)[2]


def entity_outcomes(gold: list[dict], pred: list[dict]) -> tuple[list[str], list[str]]:
    """Each gold entity as exact / partial (a prediction of its type with another filler) /
    wrong_type (its filler predicted under another type) / missed; each predicted entity as
    exact / partial / wrong_type / spurious. Matched greedily, exact matches first."""
    g_out, p_out = [None] * len(gold), [None] * len(pred)
    rules = (("exact", lambda g, p: g == p), ("partial", lambda g, p: g["type"] == p["type"]),
             ("wrong_type", lambda g, p: g["filler"] == p["filler"]))
    for name, match in rules:
        for i, g in enumerate(gold):
            if g_out[i] is not None:
                continue
            for j, p in enumerate(pred):
                if p_out[j] is None and match(g, p):
                    g_out[i] = p_out[j] = name
                    break
    return [o or "missed" for o in g_out], [o or "spurious" for o in p_out]


def _bucket(filler: str) -> str:
    n = len(filler.split())
    return LENGTHS[min(n, 4) - 1]


def _is_span(filler: str, text: str) -> bool:
    return f" {filler} " in f" {text} "


def compare(texts: list[str], refs: list[str], student: list[str], weak: list[str], slot_types: set) -> dict:
    """Every breakdown of one (student, weak) pair of prediction lists on one seed."""
    gold = [parse_slots(r)[0] for r in refs]
    parsed = {name: [parse_slots(p) for p in preds] for name, preds in (("student", student), ("weak", weak))}
    out: dict = {"overall": {}, "cells": {}, "types": {}, "lengths": {}, "outcomes": {}, "off_span": {}}
    for name, preds in (("student", student), ("weak", weak)):
        s = slu_scores(preds, refs)
        ents = [e for p, _ in parsed[name] for e in p]
        out["overall"][name] = {
            "SLU-F1": s["slu_f1"], "precision": s["slu_precision"], "recall": s["slu_recall"],
            "exact match": s["exact_match"], "{} outputs": s["no_slots"], "malformed": s["malformed"],
            "entities / item": len(ents) / len(refs),
            "unknown types": np.mean([e["type"] not in slot_types for e in ents]) if ents else 0.0,
            "fillers not in utterance": np.mean([not _is_span(e["filler"], t) for (p, _), t in zip(parsed[name], texts)
                                                 for e in p]) if ents else 0.0}
    out["overall"]["reference"] = {"{} outputs": np.mean([not g for g in gold]),
                                   "entities / item": sum(map(len, gold)) / len(gold)}

    # the {} decision: four cells, each system's SLU counts inside each
    for s_empty in (True, False):
        for w_empty in (True, False):
            idx = [i for i in range(len(refs)) if fills_no_slot(student[i]) == s_empty
                   and fills_no_slot(weak[i]) == w_empty]
            cs = sum((counts(gold[i], parsed["student"][i][0]) for i in idx), np.zeros(3))
            cw = sum((counts(gold[i], parsed["weak"][i][0]) for i in idx), np.zeros(3))
            out["cells"][(s_empty, w_empty)] = {"items": len(idx),
                                                "reference {}": np.mean([not gold[i] for i in idx]) if idx else np.nan,
                                                "student TP/FP/FN": cs, "weak TP/FP/FN": cw}

    # counterfactuals on the {} decision
    def corpus(preds):
        return slu_scores(preds, refs)["slu_f1"]
    swap_decision = [w if fills_no_slot(w) else (s if not fills_no_slot(s) else w) for s, w in zip(student, weak)]
    backoff = [w if fills_no_slot(s) else s for s, w in zip(student, weak)]
    oracle_empty = [("{}" if not g else s) for s, g in zip(student, gold)]
    out["counterfactual"] = {"student as is": corpus(student),
                             "student with the weak model's {} decisions": corpus(swap_decision),
                             "student, backed off to the weak model where it says {}": corpus(backoff),
                             "student with {} exactly where the reference has none": corpus(oracle_empty),
                             "weak model": corpus(weak)}

    # per slot type: counts of each system, and the student's corpus F1 with the weak counts on that type
    per_type = {name: defaultdict(lambda: np.zeros(3)) for name in ("student", "weak")}
    for i, g in enumerate(gold):
        for name in ("student", "weak"):
            p = parsed[name][i][0]
            for kind in {e["type"] for e in g + p}:
                per_type[name][kind] += counts([e for e in g if e["type"] == kind], [e for e in p if e["type"] == kind])
    total_s = sum(per_type["student"].values(), np.zeros(3))
    gold_n = Counter(e["type"] for g in gold for e in g)
    for kind in set(per_type["student"]) | set(per_type["weak"]):
        cs, cw = per_type["student"][kind], per_type["weak"][kind]
        out["types"][kind] = {"gold": gold_n.get(kind, 0), "student F1": f1(cs), "weak F1": f1(cw),
                              "gain": f1(total_s - cs + cw) - f1(total_s)}

    # gold filler length × outcome; predicted entity outcomes
    for name in ("student", "weak"):
        by_len = {b: Counter() for b in LENGTHS}
        pred_out, off_span = Counter(), Counter()
        for i, g in enumerate(gold):
            pred = parsed[name][i][0]
            go, po = entity_outcomes(g, pred)
            for e, o in zip(g, go):
                by_len[_bucket(e["filler"])][o] += 1
            pred_out.update(po)
            off_span.update(o for e, o in zip(pred, po) if not _is_span(e["filler"], texts[i]))
        out["lengths"][name] = by_len
        out["outcomes"][name] = pred_out
        out["off_span"][name] = off_span
    out["lengths"]["gold"] = Counter(_bucket(e["filler"]) for g in gold for e in g)
    return out


def posterior_view(folder: Path, seed: int, task) -> dict | None:
    """The word posterior's "no slot" on the saved weak hypotheses: consensus {} rate and
    mean P({}) on strong_train (fitted there), and mean P({}) on test (applied, no refit)."""
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.tasks.generation import is_well_formed
    from bayes_w2s.weak import WeakHypotheses

    paths = [folder / f"weak_hypotheses_seed{seed}_{s}.json.gz" for s in ("strong_train", "test")]
    if not all(p.exists() for p in paths):
        return None
    train, test = (WeakHypotheses.load(p) for p in paths)
    post = fit_posterior(train, model="word_reliability_conf", method="em").constrain(is_well_formed)

    def p_empty(p):
        draws = p.sample_targets(256, seed)
        return np.array([sum(c for t, c in d.items() if fills_no_slot(t)) / sum(d.values()) for d in draws])

    on_test = post.predict(test)
    return {"strong_train: reference {}": np.mean([fills_no_slot(t) for t in task.strong_train["target"]]),
            "strong_train: consensus {}": np.mean([fills_no_slot(t) for t in post.consensus]),
            "strong_train: mean P({})": p_empty(post).mean(),
            "strong_train: MiniLM 1-best {}": np.mean([fills_no_slot(t) for t in train.best(0)]),
            "test: consensus {} (fitted posterior applied)": np.mean([fills_no_slot(t) for t in on_test.consensus]),
            "test: mean P({}) (fitted posterior applied)": p_empty(on_test).mean(),
            "test: reference {}": np.mean([fills_no_slot(t) for t in task.test["target"]])}


def pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}"


def report(results: list[tuple[str, dict]], views: list[tuple[str, dict]], weak_name: str, cmd: str) -> str:
    lines = [f"# Where the word-posterior student loses to the best weak model ({weak_name})\n",
             "Test split of each run (400 items); *student* is the row named in each heading. SLU counts are the "
             "word + char tables summed, as SLU-F1. Figures in %.\n"]
    lines.append("## 1. Overall\n")
    cols = ["SLU-F1", "precision", "recall", "exact match", "{} outputs", "malformed", "entities / item",
            "unknown types", "fillers not in utterance"]
    lines.append("| run | system | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols))
    for label, r in results:
        for name in ("student", "weak", "reference"):
            row = r["overall"][name]
            vals = [(f"{row[c]:.2f}" if c == "entities / item" else pct(row[c])) if c in row else "–" for c in cols]
            lines.append(f"| {label} | {name} | " + " | ".join(vals) + " |")
    lines.append("\n## 2. The `{}` decision: four cells\n")
    lines.append("Items split by whether the student and the weak model fill no slot; per cell the share of "
                 "references that are `{}` and each system's SLU-F1 counts (TP / FP / FN, word + char).\n")
    lines.append("| run | student {} | weak {} | items | reference {} | student TP / FP / FN | weak TP / FP / FN |\n"
                 "|---|---|---|---|---|---|---|")
    for label, r in results:
        for (s_empty, w_empty), c in r["cells"].items():
            fmt = lambda v: " / ".join(f"{x:.0f}" for x in v)  # noqa: E731
            lines.append(f"| {label} | {'yes' if s_empty else 'no'} | {'yes' if w_empty else 'no'} | {c['items']} | "
                         f"{pct(c['reference {}'])} | {fmt(c['student TP/FP/FN'])} | {fmt(c['weak TP/FP/FN'])} |")
    lines.append("\n## 3. Counterfactuals on the `{}` decision (test SLU-F1)\n")
    keys = list(results[0][1]["counterfactual"])
    lines.append("| run | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for label, r in results:
        lines.append(f"| {label} | " + " | ".join(pct(r["counterfactual"][k]) for k in keys) + " |")
    if views:
        lines.append("\n## 4. The word posterior's own `{}` rate (from the saved weak hypotheses)\n")
        keys = list(views[0][1])
        lines.append("| run | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
        for label, v in views:
            lines.append(f"| {label} | " + " | ".join(pct(v[k]) for k in keys) + " |")
    lines.append("\n## 5. Slot types\n")
    lines.append("Per slot type, summed over runs: gold entities, SLU-F1 of each system on that type (mean over "
                 "runs), and *gain* = the student's corpus SLU-F1 if it had the weak model's counts on this type "
                 "alone (mean over runs; positive: the weak model is better there). The 15 types of largest |gain|.\n")
    agg = defaultdict(lambda: defaultdict(list))
    for _, r in results:
        for kind, v in r["types"].items():
            for k, x in v.items():
                agg[kind][k].append(x)
    kinds = sorted(agg, key=lambda k: -abs(np.mean(agg[k]["gain"])))[:15]
    lines.append("| type | gold (sum) | student F1 | weak F1 | gain (pts) |\n|---|---|---|---|---|")
    for k in kinds:
        a = agg[k]
        lines.append(f"| {k} | {int(np.sum(a['gold']))} | {pct(np.mean(a['student F1']))} | "
                     f"{pct(np.mean(a['weak F1']))} | {100 * np.mean(a['gain']):+.2f} |")
    pos = sum(np.mean(agg[k]["gain"]) for k in agg if np.mean(agg[k]["gain"]) > 0)
    neg = sum(np.mean(agg[k]["gain"]) for k in agg if np.mean(agg[k]["gain"]) < 0)
    lines.append(f"\nSum of positive gains {100 * pos:+.1f} pts over {sum(np.mean(agg[k]['gain']) > 0 for k in agg)} "
                 f"types; of negative gains {100 * neg:+.1f} pts over {sum(np.mean(agg[k]['gain']) < 0 for k in agg)}.")
    lines.append("\n## 6. Gold entities by filler length, and what became of them (summed over runs)\n")
    lines.append("*exact*: predicted with its type and filler; *partial*: its type predicted with another filler; "
                 "*wrong type*: its filler under another type; *missed*: neither.\n")
    lines.append("| filler words | gold | system | exact | partial | wrong type | missed |\n|---|---|---|---|---|---|---|")
    for b in LENGTHS:
        n = sum(r["lengths"]["gold"][b] for _, r in results)
        for name in ("student", "weak"):
            c = sum((r["lengths"][name][b] for _, r in results), Counter())
            lines.append(f"| {b} | {n} | {name} | " + " | ".join(pct(c[o] / max(n, 1))
                                                                 for o in ("exact", "partial", "wrong_type", "missed"))
                         + " |")
    lines.append("\nPredicted entities (summed over runs): share exact / partial / wrong type / spurious.\n")
    lines.append("| system | predicted | exact | partial | wrong type | spurious | partial or spurious with a filler "
                 "not in the utterance (% of those) |\n|---|---|---|---|---|---|---|")
    for name in ("student", "weak"):
        c = sum((r["outcomes"][name] for _, r in results), Counter())
        off = sum((r["off_span"][name] for _, r in results), Counter())
        n = sum(c.values())
        lines.append(f"| {name} | {n} | " + " | ".join(pct(c[o] / max(n, 1))
                                                      for o in ("exact", "partial", "wrong_type", "spurious"))
                     + f" | {pct((off['partial'] + off['spurious']) / max(c['partial'] + c['spurious'], 1))} |")
    lines += ["\n## What it points to\n", reading(results, views), f"\n```\n{cmd}\n```\n"]
    return "\n".join(lines)


def reading(results: list[tuple[str, dict]], views: list[tuple[str, dict]]) -> str:
    """The diagnosis in a few sentences, every figure from the tables above (means over runs)."""
    avg = lambda f: 100 * np.mean([f(r) for _, r in results])  # noqa: E731
    gap = avg(lambda r: r["overall"]["weak"]["SLU-F1"] - r["overall"]["student"]["SLU-F1"])
    s_empty, w_empty = avg(lambda r: r["overall"]["student"]["{} outputs"]), avg(lambda r: r["overall"]["weak"]["{} outputs"])
    ref_empty = avg(lambda r: r["overall"]["reference"]["{} outputs"])
    cell = [r["cells"][(True, False)] for _, r in results]
    cell_items = np.mean([c["items"] for c in cell])
    cell_ref = 100 * np.mean([c["reference {}"] for c in cell])
    d_tp = sum(c["weak TP/FP/FN"][0] - c["student TP/FP/FN"][0] for _, r in results for c in r["cells"].values())
    d_cell = sum(r["cells"][(True, False)]["weak TP/FP/FN"][0] for _, r in results)
    backoff = avg(lambda r: r["counterfactual"]["student, backed off to the weak model where it says {}"]
                  - r["counterfactual"]["student as is"])
    off = avg(lambda r: r["overall"]["student"]["fillers not in utterance"])
    unknown = avg(lambda r: r["overall"]["student"]["unknown types"])
    c = sum((r["outcomes"]["student"] for _, r in results), Counter())
    o = sum((r["off_span"]["student"] for _, r in results), Counter())
    off_bad = 100 * (o["partial"] + o["spurious"]) / max(c["partial"] + c["spurious"], 1)
    post = f" (the word posterior expects {100 * np.mean([v['strong_train: mean P({})'] for _, v in views]):.0f}% on " \
           f"strong_train)" if views else ""
    return (f"The student trails the best weak model by {gap:.1f} SLU-F1 on average. Its precision is higher and its "
            f"recall far lower, and the recall goes mostly in one decision: it writes `{{}}` for {s_empty:.0f}% of "
            f"test items against {w_empty:.0f}% for the weak model and {ref_empty:.0f}% in the references{post}. "
            f"On the ~{cell_items:.0f} items where only the student says `{{}}`, {100 - cell_ref:.0f}% of the "
            f"references have slots, and the weak model earns {100 * d_cell / max(d_tp, 1):.0f}% of its extra true "
            f"positives there; backing off to the weak model on those items alone is worth {backoff:+.1f} points. "
            f"Second, {off:.0f}% of the entities the student writes have a filler that is not a run of the "
            f"utterance's words ({unknown:.1f}% an unknown type): copy errors that a tagger cannot make, and "
            f"{off_bad:.0f}% of its partial and spurious entities. Levers: a calibrated no-slot decision (the `{{}}` rate "
            f"set by the posterior, not by greedy decoding) and decoding constrained to well-formed JSON over the "
            f"known slot types with fillers copied from the utterance; neither needs retraining. Malformed output "
            f"is not the problem (≤ 0.2%).")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="results folders with meta.json and predictions_seed*.jsonl")
    ap.add_argument("--student", nargs="+", default=["word posterior (token soft labels)", "SFT (word posterior soft)"],
                    help="the student row(s) to diagnose (the first a folder has)")
    ap.add_argument("--weak", default=None, help="the weak row (default: each seed's best_weak)")
    ap.add_argument("--hypotheses", action="store_true", help="add the word posterior's view (fits EM, ~1 min)")
    ap.add_argument("--out", default="experiments/results/slurp_gap_diagnosis")
    a = ap.parse_args()
    results, views, weak_name = [], [], None
    for folder in map(Path, a.results):
        cfg = ExperimentConfig.from_dict(json.loads((folder / "meta.json").read_text())["config"])
        task = experiment_task(cfg)
        refs = dict(zip(task.test["id"], task.test["target"]))
        texts = dict(zip(task.test["id"], task.test["text"]))
        csv = (folder / "results.csv").read_text().splitlines()
        header = csv[0].split(",")
        for path in sorted(folder.glob("predictions_seed*.jsonl")):
            seed = int(path.stem.removeprefix("predictions_seed"))
            rows = [json.loads(line) for line in open(path)]
            weak = a.weak or "weak:" + next(line.split(",")[header.index("best_weak")] for line in csv[1:]
                                            if line.split(",")[header.index("seed")] == str(seed))
            weak_name = weak
            student = next(s for s in a.student if s in rows[0])
            ids = [r["id"] for r in rows]
            label = f"{folder.name} s{seed}"
            results.append((label, compare([texts[i] for i in ids], [refs[i] for i in ids],
                                           [r[student] for r in rows], [r[weak] for r in rows],
                                           set(task.slot_types))))
            if a.hypotheses:
                view = posterior_view(folder, seed, task)
                if view is not None:
                    views.append((label, view))
    cmd = "python experiments/diagnose_slurp_gap.py " + " ".join(a.results) + \
          (" --hypotheses" if a.hypotheses else "") + f" --out {a.out}"
    text = report(results, views, weak_name, cmd)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
