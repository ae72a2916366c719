"""Scripts under experiments/: the GPU check's CPU dry-run (which also runs the labelling
benchmark's three paths) end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu_check"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--data", "synthetic", "--out", str(out)], capture_output=True, text=True, timeout=900,
                          env=env)
    result = json.loads((out / "result.json").read_text())
    sections = result["sections"]
    errors = {k: v.get("traceback") for k, v in sections.items() if v["status"] != "ok"}
    assert done.returncode == 0 and not errors, (errors, done.stdout[-3000:], done.stderr[-3000:])
    assert set(sections) == {"students", "sft", "preference", "labelling"}
    assert result["meta"]["device_name"] == "CPU dry-run" and result["meta"]["bf16"] is False
    for mode in ("head", "lora", "full"):
        assert sections["students"][mode]["weights_on"] == "cpu"
        assert 0 <= sections["students"][mode]["test_accuracy"] <= 1
    assert sections["preference"]["pairs"] > 0
    for loss in ("dpo", "cdpo_pair"):
        assert sections["preference"][loss]["train_loss"] is not None
    lab = sections["labelling"]
    for key in ("classifier", "generator"):
        assert lab[key]["floor_examples_per_s"] > 0 and lab[key]["predict_examples_per_s"] > 0
        assert lab[key]["pipeline_examples_per_s"] > 0
    # the three labelling paths compute the same thing
    assert lab["classifier"]["argmax_agreement_vs_pipeline"] == 1.0
    assert lab["classifier"]["max_abs_prob_diff_vs_pipeline"] < 1e-4
    assert lab["per_example"]["speedup"] > 0
    md = (out / "result.md").read_text()
    assert "| students | ok |" in md and "python experiments/gpu_check.py --device cpu --tiny" in md


def test_iid_rhat_floor_ignores_what_separates_chains():
    """The NUTS benchmark's floor shuffles draws across chains: chains stuck apart have a large
    R-hat, but their shuffled draws sit at independent sampling's floor near 1."""
    import arviz as az
    import numpy as np

    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_nuts_crowd import iid_rhat_floor

    rng = np.random.default_rng(0)
    stuck = rng.normal(size=(4, 500, 50)) + np.arange(4)[:, None, None]     # every chain in its own place
    assert float(az.rhat(az.convert_to_dataset({"x": stuck}))["x"].values.min()) > 1.3
    assert 1.0 < iid_rhat_floor(stuck) < 1.01
    mixed = rng.normal(size=(4, 500, 50))
    assert abs(iid_rhat_floor(mixed) - float(az.rhat(az.convert_to_dataset({"x": mixed}))["x"].values.max())) < 0.01
