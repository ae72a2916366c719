"""What do the rankers teach? Reads the pairs files a generation experiment saved
(``pairs_seed<s>_<k>_<ranker>.jsonl``: every prompt's N-best, both rankers' scores,
chosen / rejected) and scores them against strong_train's hidden references: SLU-F1 of
chosen, rejected, the student's own top beam and the best candidate in hindsight (oracle),
and how often each says ``{}`` (no slot).

    python experiments/analyze_preference_pairs.py experiments/results/slurp_dpo_cpu
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import item_slu_f1
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.tasks.generation import fills_no_slot as _empty


def analyse(rows: list[dict], refs: dict[str, str]) -> dict:
    paired = [r for r in rows if "chosen" in r]
    ref = lambda r: refs[r["id"]]  # noqa: E731
    oracle = [max(r["candidates"], key=lambda c: item_slu_f1(c, ref(r))) for r in rows]
    return {"prompts": len(rows), "pairs": len(paired),
            "F1 chosen": np.mean([item_slu_f1(r["chosen"], ref(r)) for r in paired]),
            "F1 rejected": np.mean([item_slu_f1(r["rejected"], ref(r)) for r in paired]),
            "F1 top beam": np.mean([item_slu_f1(r["candidates"][0], ref(r)) for r in rows]),
            "F1 oracle": np.mean([item_slu_f1(o, ref(r)) for o, r in zip(oracle, rows)]),
            "chosen {}": np.mean([_empty(r["chosen"]) for r in paired]),
            "rejected {}": np.mean([_empty(r["rejected"]) for r in paired]),
            "top beam {}": np.mean([_empty(r["candidates"][0]) for r in rows]),
            "oracle {}": np.mean([_empty(o) for o in oracle]),
            "reference {}": np.mean([_empty(ref(r)) for r in rows]),
            "mean p": np.mean([r["p"] for r in paired]),
            # the pairs that teach "no slot beats slots", and how sure the posterior is of them
            "{} over slots": np.mean([_empty(r["chosen"]) and not _empty(r["rejected"]) for r in paired]),
            "mean p, {} over slots": np.mean([r["p"] for r in paired if _empty(r["chosen"]) and not _empty(r["rejected"])]
                                             or [np.nan]),
            "mean p, others": np.mean([r["p"] for r in paired if not (_empty(r["chosen"]) and not _empty(r["rejected"]))]
                                      or [np.nan])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", help="an experiment's results folder (with meta.json and pairs_*.jsonl)")
    a = ap.parse_args()
    folder = Path(a.results)
    cfg = ExperimentConfig.from_dict(json.loads((folder / "meta.json").read_text())["config"])
    task = experiment_task(cfg)
    refs = dict(zip(task.strong_train["id"], task.strong_train["target"]))
    table = []
    for path in sorted(folder.glob("pairs_seed*.jsonl")):
        rows = [json.loads(line) for line in open(path)]
        seed, _, ranker = path.stem.removeprefix("pairs_seed").split("_", 2)
        table.append({"seed": int(seed), "ranker": ranker, **analyse(rows, refs)})
    df = pd.DataFrame(table)
    pct = [c for c in df.columns if c.startswith(("F1", "mean p")) or "{}" in c]
    shown = df.copy()
    shown[pct] = (100 * shown[pct]).round(1)
    cmd = f"python experiments/analyze_preference_pairs.py {a.results}"
    text = ("# Preference pairs against the hidden references\n\n"
            "Per seed and ranker: mean item SLU-F1 (%) of chosen, rejected, the SFT student's top beam and the best "
            "of its N-best in hindsight (oracle), against strong_train's references (1.0 when neither has a slot); "
            "how often each fills no slot (`{}`, %); the posterior's mean p (%), overall, on the pairs whose chosen "
            "fills no slot and rejected does (*{} over slots*, % of pairs) and on the rest.\n\n"
            + "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
            + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.itertuples(index=False))
            + f"\n```\n{cmd}\n```\n")
    (folder / "pairs_analysis.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
