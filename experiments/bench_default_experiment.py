"""Benchmark: wall time of the default experiment from a cold cache.

Runs ``bayes-w2s run experiments/configs/sst2.yaml`` in a subprocess with an empty
``$BAYES_W2S_CACHE`` (so GGUF conversion, feature extraction, weak training and every
student are included), then again with the now-warm cache. Goal: cold ≤ 20 minutes on
the 2-core machine.

    python experiments/bench_default_experiment.py --out experiments/results/bench_default_experiment
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(config: str, cache: str, output: str) -> float:
    env = dict(os.environ, BAYES_W2S_CACHE=cache, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bayes_w2s.cli", "run", config, "--output", output], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/configs/sst2.yaml")
    p.add_argument("--out", default="experiments/results/bench_default_experiment")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as output:
        cold = timed_run(a.config, cache, output + "/cold")
        warm = timed_run(a.config, cache, output + "/warm")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    cmd = f"python experiments/bench_default_experiment.py --config {a.config} --out {a.out}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"config": a.config, "cold_seconds": cold, "warm_seconds": warm,
                                                 "goal_cold_seconds": 1200, "machine": machine, "command": cmd}, indent=2))
    (out / "result.md").write_text(
        f"# Default experiment wall time\n\n`bayes-w2s run {a.config}` on {machine}.\n\n"
        f"| cache | wall time |\n|---|---|\n| cold (GGUF conversion, features, weak models, all students) | **{cold / 60:.1f} min** |\n"
        f"| warm (features and weak labels cached) | {warm / 60:.1f} min |\n\nGoal: cold ≤ 20 min.\n\n```\n{cmd}\n```\n")
    print(f"cold {cold:.0f}s, warm {warm:.0f}s")


if __name__ == "__main__":
    main()
