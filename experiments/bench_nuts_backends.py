"""Benchmark: Dawid–Skene NUTS (or ``--model``'s) with Pyro against NumPyro (``backend="numpyro"``),
on the crowd of ``experiments/bench_nuts_crowd.py`` (1,000 items × 100 annotators × 4 classes, 10 labels per
item; 1,600 confusion entries), 4 chains × 500 kept draws in worker processes.

Each row is one ``fit_posterior(method="nuts")`` call, timed from the call to the fitted
posterior (start, whitening, worker start-up, JAX compilation and sampling included), with the
largest split R-hat and the smallest bulk ESS over π and every confusion entry
(``Posterior.diagnostics``), divergences, leapfrog steps per kept draw and the accuracy against
the planted truth. Rows run one after another in one process, so their times compare.

    python experiments/bench_nuts_backends.py --out experiments/results/bench_nuts_backends
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_aggregation import crowd  # noqa: E402  (the benchmark's crowd generator)
from markdown_result import write_markdown  # noqa: E402


def run(backend: str, thinning: int, seed: int, whitened: bool | None, accept: float, warmup: int,
        model: str = "dawid_skene") -> dict:
    from bayes_w2s import fit_posterior

    votes, truth, _ = crowd(1000, 100, 4, 10)
    t0 = time.perf_counter()
    post = fit_posterior(votes, model=model, method="nuts", num_classes=4, num_chains=4, num_samples=500,
                         warmup_steps=warmup, target_accept_prob=accept, thinning=thinning, backend=backend,
                         precondition=whitened, seed=seed, progress=False)
    wall = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = post.diagnostics(warn=False)
    return {"model": model, "backend": backend, "whitened": bool(post.info["preconditioned"]), "thinning": thinning,
            "seed": seed,
            "target_accept_prob": accept, "warmup": warmup, "seconds": round(wall, 1),
            "max_rhat": round(d["max_rhat"], 4), "min_ess_bulk": round(d["min_ess_bulk"]),
            "divergences": int(d["divergences"]),
            "leapfrog_per_draw": round(float(post.sample_stats["tree_size"].mean()), 1),
            "accuracy": round(float((post.labels == truth).mean()), 4)}


def parse_row(spec: str) -> dict:
    """``backend:thinning:seed[:whitened[:accept[:warmup]]]``, e.g. ``numpyro:3:0`` or ``pyro:1:0:yes``."""
    parts = spec.split(":")
    if len(parts) < 3:
        raise SystemExit(f"row {spec!r}: expected backend:thinning:seed[:whitened[:accept[:warmup]]]")
    whitened = {"yes": True, "no": False, "default": None}[parts[3]] if len(parts) > 3 else None
    return {"backend": parts[0], "thinning": int(parts[1]), "seed": int(parts[2]), "whitened": whitened,
            "accept": float(parts[4]) if len(parts) > 4 else 0.8, "warmup": int(parts[5]) if len(parts) > 5 else 300}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="+", default=["pyro:1:0", "numpyro:1:0:yes"]
                    + [f"numpyro:{t}:{s}" for t in (1, 2, 3) for s in range(4)],
                    help="backend:thinning:seed[:whitened yes|no|default[:target_accept[:warm-up]]]")
    ap.add_argument("--model", default="dawid_skene", help="a posterior model with a JAX twin")
    ap.add_argument("--out", default="experiments/results/bench_nuts_backends")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite results.md from the rows already in --out's results.json (no sampling)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render_only:
        saved = json.loads((out / "results.json").read_text())
        rows, command = saved["rows"], saved["command"]
    else:
        rows, command = [], "python experiments/bench_nuts_backends.py " + " ".join(sys.argv[1:])
        for spec in args.rows:
            rows.append(run(**parse_row(spec), model=args.model))
            print(json.dumps(rows[-1]), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    from bayes_w2s import fit_posterior
    votes, truth, _ = crowd(1000, 100, 4, 10)
    model = rows[0].get("model", "dawid_skene")
    em_accuracy = float((fit_posterior(votes, model="dawid_skene", method="em", num_classes=4).labels == truth).mean())
    import jax
    import numpyro
    import torch
    lines = [f"# {model} NUTS: Pyro against NumPyro "
             "(1,000 items × 100 annotators × 4 classes, 10 labels per item)",
             "", f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch "
             f"{torch.__version__}, JAX {jax.__version__}, NumPyro {numpyro.__version__}; 4 chains × 500 kept draws "
             "in worker processes; one row at a time. Goal (issue 12, for Dawid–Skene): ≤ 120 s, R-hat ≤ 1.01, "
             "no label switching "
             f"(Dawid–Skene EM's accuracy is {em_accuracy:.3f}). *whitened*: sampled in the Laplace-whitened "
             "coordinates "
             "(the Pyro default); "
             "otherwise NumPyro's diagonal metric on the log-ratio coordinates (the NumPyro default).", "",
             "| backend | whitened | thinning | target accept | warm-up | seed | seconds | max R-hat | min bulk ESS "
             "| divergences | leapfrog / kept draw | accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {'yes' if r['whitened'] else 'no'} | {r['thinning']} | {r['target_accept_prob']} "
              f"| {r['warmup']} | {r['seed']} | {r['seconds']} | {r['max_rhat']} | {r['min_ess_bulk']} "
              f"| {r['divergences']} | {r['leapfrog_per_draw']} | {r['accuracy']:.3f} |" for r in rows]
    pyro_rows = [r for r in rows if r["backend"] == "pyro"]
    same = [(p, r) for p in pyro_rows for r in rows if r["backend"] == "numpyro" and r["whitened"] == p["whitened"]
            and (r["thinning"], r["seed"], r["target_accept_prob"], r["warmup"])
            == (p["thinning"], p["seed"], p["target_accept_prob"], p["warmup"])]
    if same:
        lines += ["", "Same settings, same run: " + "; ".join(
            f"seed {p['seed']}, thinning {p['thinning']}: Pyro {p['seconds']} s, NumPyro {r['seconds']} s "
            f"({p['seconds'] / r['seconds']:.1f}× faster)" for p, r in same) + "."]
    write_markdown(out, "results.md", lines, command)


if __name__ == "__main__":
    main()
