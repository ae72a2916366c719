"""The real pipeline on a few hundred SST-2 items with real MiniLM / MPNet weights."""
import json

import numpy as np
import pandas as pd
import pytest

from bayes_w2s.cli import main
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s import Student
from bayes_w2s.pipeline import experiment_task, run_experiment
from bayes_w2s.weak import WeakLabels

pytestmark = pytest.mark.real_cache

CONFIG = dict(
    name="integration", task="sst2",
    sizes={"weak_train": 200, "strong_train": 300, "test": 200},
    seeds=[0, 1], weak_models=["minilm-l6"], strong_model="mpnet-base",
    weak_train={"mode": "head", "epochs": 10},
    student_train={"mode": "head", "epochs": 10},
    methods=[{"name": "ceiling", "targets": "ground_truth"},
             {"name": "mean", "targets": "mean"},
             {"name": "DS", "targets": "posterior:dawid_skene:em", "loss": "weighted_xent"},
             {"name": "multi", "targets": "weak_all", "loss": "multi_weak"}],
)


@pytest.fixture()
def second_weak_card(tmp_path):
    """MiniLM-L6 read through its [CLS] token instead of the mean: a second, different weak model."""
    import yaml
    from bayes_w2s.cards import load_card
    card = {k: v for k, v in vars(load_card("minilm-l6")).items() if k != "path"}
    card.update(name="minilm-l6-cls", pooling="cls")
    path = tmp_path / "minilm-l6-cls.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


def test_real_pipeline_end_to_end(tmp_path, data_dir, second_weak_card):
    cfg = ExperimentConfig(**dict(CONFIG, weak_models=["minilm-l6", second_weak_card]), data_dir=str(data_dir))
    out = tmp_path / "results"
    results = run_experiment(cfg, out, command="pytest")
    assert {"results.csv", "results.md", "accuracy.png", "meta.json"} <= {p.name for p in out.iterdir()}
    table = pd.read_csv(out / "results.csv")
    assert set(table["seed"]) == {0, 1}
    acc = table.groupby("method")["accuracy"].mean()
    weak = acc[[m for m in acc.index if m.startswith("weak:")]]
    assert weak.min() > 0.6                           # real weights: well above chance (0.5)
    assert acc["ceiling"] > weak.max() + 0.03         # MPNet is the stronger model
    students = table[table["kind"] == "student"]
    assert students[["pgr_mean_weak", "pgr_best_weak", "pgr_vote"]].notna().all().all()
    md = (out / "results.md").read_text()
    assert "PGR vs best weak" in md and "{'weak_train': 200, 'strong_train': 300, 'test': 200}" in md
    assert (out / "reliability.png").is_file() and "reliability.png" in md
    # every student is saved, and a real one (MPNet head) reloads with identical predictions
    assert all((out / "students" / m / f"seed{s}" / "model.safetensors").is_file()
               for m in ("ceiling", "mean", "ds", "multi") for s in (0, 1))
    with np.load(out / "test_probs_seed1.npz") as z:
        saved_probs = z["probs"][list(z["methods"]).index("DS")]
    reloaded = Student.from_pretrained(out / "students" / "ds" / "seed1")
    assert reloaded.loss == "weighted_xent" and reloaded.classifier.card.name == "mpnet-base"
    assert np.array_equal(reloaded.predict_proba(experiment_task(cfg).test), saved_probs)
    # a rerun finds every weak label in the cache and reproduces the weak rows exactly
    again = run_experiment(cfg, tmp_path / "again", command="pytest")
    w = lambda df: df[df["kind"] == "weak"].sort_values(["seed", "method"])["accuracy"].to_numpy()
    assert np.array_equal(w(results), w(again))


def test_config_errors(tmp_path):
    bad = dict(CONFIG, weak_models=["minilm-l6", "mpnet-base"], methods=[{"name": "x", "targets": "weak:gpt9"}])
    with pytest.raises(InvalidInputError, match="not among weak_models"):
        ExperimentConfig(**bad)
    with pytest.raises(InvalidInputError, match="unknown key"):
        ExperimentConfig.from_dict(dict(CONFIG, learning_rate=3))
    with pytest.raises(InvalidInputError, match="multi_weak needs targets: weak_all"):
        ExperimentConfig(**dict(CONFIG, methods=[{"name": "x", "targets": "mean", "loss": "multi_weak"}]))
    with pytest.raises(InvalidInputError, match="unknown targets"):
        ExperimentConfig(**dict(CONFIG, methods=[{"name": "x", "targets": "oracle"}]))
    with pytest.raises(InvalidInputError, match="weak_label_budget must be between 1 and"):
        ExperimentConfig(**dict(CONFIG, weak_label_budget=10**6))
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntask: sst2\n")
    assert main(["run", str(p)]) == 2      # clear message, non-zero exit, no traceback


def test_shipped_configs_parse():
    from pathlib import Path
    for path in (Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"):
        ExperimentConfig.from_yaml(path)


def _fresh_cache(path):
    """An empty cache that reuses the user's converted weights (so both runs compute features)."""
    import os
    from pathlib import Path
    user = Path(os.environ.get("BAYES_W2S_CACHE", Path.home() / ".cache" / "bayes_w2s"))
    path.mkdir()
    for sub in ("weights", "converted"):
        (user / sub).mkdir(parents=True, exist_ok=True)
        (path / sub).symlink_to(user / sub)
    return path


def test_two_processes_match_one_process(tmp_path, data_dir):
    """`accelerate launch` with two gloo processes (real DDP) on the tiny SST-2 config equals one
    process: weak labels to float rounding, every accuracy and student probability to 1e-4."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    config = root / "experiments" / "configs" / "sst2_tiny.yaml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # one thread per process in both runs: the same kernels, so only the split over ranks differs
    env = dict(os.environ, BAYES_W2S_DATA=str(data_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    run = ["-m", "bayes_w2s.cli", "-q", "run", str(config)]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", str(port), *run]
    for cmd, name in (([sys.executable, *run], "one"), (launch, "two")):
        done = subprocess.run([*cmd, "--output", str(tmp_path / name)], capture_output=True, text=True, timeout=600,
                              env=dict(env, BAYES_W2S_CACHE=str(_fresh_cache(tmp_path / f"cache-{name}"))))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert json.loads((two / "meta.json").read_text())["processes"] == 2      # really two ranks ...
    assert json.loads((one / "meta.json").read_text())["processes"] == 1
    assert "in 2 processes" in (two / "results.md").read_text()
    written = sorted(p.relative_to(two).as_posix() for p in two.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file())   # ... one writer
    for split in ("strong_train", "test"):
        a, b = (WeakLabels.load(d / f"weak_labels_seed0_{split}.npz").probs for d in (one, two))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    with np.load(one / "test_probs_seed0.npz") as a, np.load(two / "test_probs_seed0.npz") as b:
        assert list(a["methods"]) == list(b["methods"])
        np.testing.assert_allclose(a["probs"], b["probs"], rtol=0, atol=1e-4)
    ra, rb = pd.read_csv(one / "results.csv"), pd.read_csv(two / "results.csv")
    assert list(ra["method"]) == list(rb["method"])
    np.testing.assert_array_equal(ra["accuracy"], rb["accuracy"])
    for col in ("label_accuracy", "label_log_loss", "ece"):
        np.testing.assert_allclose(ra[col], rb[col], rtol=0, atol=1e-4)
