"""The generation pipeline end to end on real SLURP data (tiny scratch models: plumbing)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.pipeline import run_experiment

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "configs" / "slurp_tiny.yaml"


@pytest.mark.slow
def test_tiny_slurp_config_runs_end_to_end(tmp_path, data_dir):
    cfg = ExperimentConfig.from_yaml(TINY, ["save_students=true"], data_dir=str(data_dir))
    results = run_experiment(cfg, tmp_path, command="pytest")
    methods = set(results["method"])
    assert {m.name for m in cfg.methods} <= methods
    assert {"weak:gpt2-tiny-scratch", "weak:minilm-l6", "weak_rover", "weak_joint_decoding"} <= methods
    for col in ("slu_f1", "exact_match", "malformed"):
        assert results[col].between(0, 1).all()
    table = pd.read_csv(tmp_path / "results.csv")
    assert "pgr_best_weak" in table and (tmp_path / "slu_f1.png").stat().st_size > 0
    md = (tmp_path / "results.md").read_text()
    assert "test SLU-F1 (%)" in md and "pytest" in md.split("Reproduce")[1]
    rows = [json.loads(line) for line in open(tmp_path / "predictions_seed0.jsonl")]
    assert len(rows) == 40 and "ceiling" in rows[0] and "reference" not in rows[0]   # no dataset text committed
    assert (tmp_path / "weak_hypotheses_seed0_strong_train.json.gz").exists()
    dpo = results.set_index("method").loc[["+ DPO", "+ cDPO per-pair"]]
    assert (dpo["pairs"] > 0).all() and dpo["pair_accuracy"].between(0, 1).all() and dpo["mean_p"].between(0, 1).all()
    assert list(dpo["preference"]) == ["dpo", "cdpo_pair"]
    assert dpo["chosen_empty"].between(0, 1).all() and results["no_slots"].between(0, 1).all()
    # one N-best per SFT student, ranked once per pair setting, saved with its candidates
    first, second = ([json.loads(line) for line in open(tmp_path / f"pairs_seed0_{k}_weak.jsonl")] for k in (0, 1))
    assert len(first) == len(second) == 20
    assert [r["candidates"] for r in first] == [r["candidates"] for r in second]
    for r in first:   # the weak ranker pairs the candidates of highest and lowest ensemble score
        if "chosen" in r:
            score = dict(zip(r["candidates"], r["weak_score"]))
            assert score[r["chosen"]] == max(score.values()) and score[r["rejected"]] == min(score.values())
            assert len(r["expected_slu_f1"]) == len(r["candidates"]) and 0 <= r["p"] <= 1
    # every method's student is saved (save_students) and reloads with the same test outputs
    from bayes_w2s.pipeline import experiment_task
    from bayes_w2s.student import GenerationStudent
    texts = experiment_task(cfg).test["text"]
    for method in (cfg.methods[0], cfg.methods[-1]):                # the ceiling, a preference-tuned student
        again = GenerationStudent.from_pretrained(tmp_path / "students" / method.slug / "seed0")
        assert again.generate(texts, progress=False) == [r[method.name] for r in rows]
    # one saved SFT student per distinct SFT setting: the two preference rows reuse "word posterior soft"
    from bayes_w2s.cards import cache_dir
    saved = [p for p in cache_dir("students").iterdir() if (p / "model.safetensors").exists()]
    assert len(saved) == len({m.sft_key() for m in cfg.methods}) == len(cfg.methods) - 2


def test_generation_config_errors():
    base = ExperimentConfig.from_yaml(TINY).to_dict()
    base["methods"] = [{"name": "x", "targets": "mean"}]
    with pytest.raises(InvalidInputError, match="do not exist for generation"):
        ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "best_weak", "loss": "aux_conf"}]
    with pytest.raises(InvalidInputError, match="is for classification"):
        ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "posterior:dawid_skene:em"}]
    with pytest.raises(InvalidInputError, match="generation posteriors are word models"):
        ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "best_weak"}]
    with pytest.raises(InvalidInputError, match="unknown key"):
        ExperimentConfig.from_dict({**base, "weak_train": {"mode": "full", "lora_dropout": 0.1}})
    with pytest.raises(InvalidInputError, match="not among weak_models"):
        ExperimentConfig.from_dict({**base, "weak_overrides": {"gpt9": {"epochs": 1}}})
    for bad, message in [({"epsilon": 0.5}, r"epsilon must be in \[0, 0.5\)"), ({"beta": 0}, "beta must be > 0"),
                         ({"n_candidates": 1}, "must be ≥ 2"), ({"eps": 0.1}, "unknown key")]:
        base["methods"] = [{"name": "x", "targets": "best_weak", "preference": bad}]
        with pytest.raises(InvalidInputError, match=message):
            ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "ground_truth", "preference": {}}]
    with pytest.raises(InvalidInputError, match="not the ceiling"):
        ExperimentConfig.from_dict(base)
    sst2 = ExperimentConfig.from_yaml(ROOT / "experiments" / "configs" / "sst2.yaml").to_dict()
    sst2["methods"] = [{"name": "x", "targets": "joint_decoding"}]
    with pytest.raises(InvalidInputError, match="are for generation tasks"):
        ExperimentConfig.from_dict(sst2)
