"""Where posteriors part from the majority vote: the items whose vote ties.

Reads an experiment's stored training targets (``target_probs_seed*.npz``, written by
``bayes-w2s run``) and, per seed, counts the strong_train items on which the weak models'
vote ties, scores the vote there (credit split among the tied classes, as
``bayes_w2s.metrics.accuracy`` does), and for each posterior row says how often it departs
from the vote elsewhere, how accurate it is on the tied items and which weak model it follows
there.

    python experiments/diagnose_vote_ties.py experiments/results/agnews --rows "one-coin DS" "DS, T(gold)"
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from bayes_w2s.metrics import hits

VOTE = "weak_vote"


def seed_rows(path: Path, rows: list[str]) -> list[dict]:
    stored = np.load(path)
    methods, probs, truth = [str(m) for m in stored["methods"]], stored["probs"], stored["labels"]
    missing = [r for r in rows + [VOTE] if r not in methods]
    if missing:
        raise SystemExit(f"{path}: no target rows {missing}; it has {methods}")
    vote = probs[methods.index(VOTE)]
    tied = (vote == vote.max(-1, keepdims=True)).sum(-1) > 1
    weak = [m for m in methods if m.startswith("weak:")]
    out = []
    for name in rows:
        pick = probs[methods.index(name)].argmax(-1)
        follows = {w.removeprefix("weak:"): float((pick[tied] == probs[methods.index(w)].argmax(-1)[tied]).mean())
                   for w in weak} if tied.any() else {}
        out.append({"row": name, "items": len(truth), "tied": int(tied.sum()),
                    "differs_off_ties": int((pick != vote.argmax(-1))[~tied].sum()),
                    "vote_on_ties": float(hits(vote[tied], truth[tied]).mean()) if tied.any() else float("nan"),
                    "row_on_ties": float((pick[tied] == truth[tied]).mean()) if tied.any() else float("nan"),
                    "follows": follows})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="an experiment's results folder (holds target_probs_seed*.npz)")
    ap.add_argument("--rows", nargs="+", default=["one-coin DS"], help="target rows to compare with the vote")
    ap.add_argument("--out", help="markdown file (default: <results>/vote_ties.md)")
    args = ap.parse_args()
    results = Path(args.results)
    files = sorted(results.glob("target_probs_seed*.npz"))
    if not files:
        raise SystemExit(f"no target_probs_seed*.npz in {results}: run the experiment first")
    lines = [f"# Vote ties and the posteriors that break them: {results.name}", "",
             "Per seed, on strong_train: *tied* items (the weak models' vote has several top classes); the vote's "
             "accuracy there with the credit split among the tied classes (a random pick); the row's accuracy "
             "there; how many untied items it labels differently from the vote; and on the tied items, the share "
             "where it takes each weak model's label.", "",
             "| seed | row | tied / items | vote on ties (%) | row on ties (%) | differs off ties | follows on ties |",
             "|---|---|---|---|---|---|---|"]
    for path in files:
        seed = path.stem.removeprefix("target_probs_seed")
        for r in seed_rows(path, args.rows):
            follows = ", ".join(f"{w} {100 * s:.0f}%" for w, s in r["follows"].items())
            lines.append(f"| {seed} | {r['row']} | {r['tied']} / {r['items']} | {100 * r['vote_on_ties']:.1f} "
                         f"| {100 * r['row_on_ties']:.1f} | {r['differs_off_ties']} | {follows} |")
    lines += ["", "```", "python experiments/diagnose_vote_ties.py " + shlex.join(sys.argv[1:]), "```"]
    out = Path(args.out) if args.out else results / "vote_ties.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
