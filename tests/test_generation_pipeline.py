"""The generation pipeline end to end on real SLURP data (tiny scratch models: plumbing)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from bayes_w2s.config import ExperimentConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.pipeline import experiment_task, run_experiment
from bayes_w2s.tasks.generation import parse_slots

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
    dpo = results.set_index("method").loc[["+ DPO", "+ cDPO per-pair", "+ IPO + SFT filtered"]]
    assert (dpo["pairs"] > 0).all() and dpo["pair_accuracy"].between(0, 1).all() and dpo["mean_p"].between(0, 1).all()
    assert list(dpo["preference"]) == ["dpo", "cdpo_pair", "ipo"]
    # constrained decoding: every output is well-formed slot JSON of known types, fillers from the utterance
    task = experiment_task(cfg)
    texts = dict(zip(task.test["id"], task.test["text"]))
    for name in ("word posterior soft constrained calibrated", "word posterior in the loop", "+ IPO + SFT filtered"):
        for r in rows:
            entities, ok = parse_slots(r[name])
            assert ok and all(e["type"] in task.slot_types and f" {e['filler']} " in f" {texts[r['id']]} "
                              for e in entities), (name, r[name])
    calibrated = results.set_index("method").loc["+ IPO + SFT filtered"]
    assert calibrated["no_slot_target"] == 0.3 and "constrained" in calibrated["decoding"]
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
    oracle = table.set_index("method").loc["+ DPO oracle pairs"]   # ranked by the hidden references
    assert oracle["kind"] == "oracle" and oracle["pair_accuracy"] == 1.0 and pd.isna(oracle["pgr_best_weak"])
    for r in (json.loads(line) for line in open(tmp_path / "pairs_seed0_3_oracle.jsonl")):
        if "chosen" in r:
            score = dict(zip(r["candidates"], r["oracle_score"]))
            assert score[r["chosen"]] == max(score.values()) > score[r["rejected"]] == min(score.values())
    # every method's student is saved (save_students) and reloads with the same test outputs
    from bayes_w2s.student import GenerationStudent
    for method in (cfg.methods[0], cfg.methods[-3]):                # the ceiling, a preference-tuned student
        again = GenerationStudent.from_pretrained(tmp_path / "students" / method.slug / "seed0")
        assert again.generate(task.test["text"], progress=False) == [r[method.name] for r in rows]
    # one saved SFT student per distinct SFT setting (the preference and decoding rows reuse "word posterior
    # soft"), plus the cross-fitted loop's two fold students (the in-sample loop reuses "word posterior soft")
    from bayes_w2s.cards import cache_dir
    saved = [p for p in cache_dir("students").iterdir() if (p / "model.safetensors").exists()]
    assert len(saved) == len({m.sft_key() for m in cfg.methods}) + 2 == len(cfg.methods) - 5 + 2


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
    for bad, message in [({"no_slot": "sometimes"}, "no_slot must be one of"),
                         ({"no_slot_rate": 0.3}, "setting of no_slot: calibrated"),
                         ({"no_slot": "calibrated", "no_slot_rate": 1.5}, r"in \[0, 1\]")]:
        base["methods"] = [{"name": "x", "targets": "best_weak", "decoding": bad}]
        with pytest.raises(InvalidInputError, match=message):
            ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "best_weak", "loss": "token_weighted_xent"}]
    with pytest.raises(InvalidInputError, match="weights items by posterior confidence"):
        ExperimentConfig.from_dict(base)
    base["methods"] = [{"name": "x", "targets": "best_weak", "student_rounds": 1}]
    with pytest.raises(InvalidInputError, match="settings of posterior targets"):
        ExperimentConfig.from_dict(base)
    sst2 = ExperimentConfig.from_yaml(ROOT / "experiments" / "configs" / "sst2.yaml").to_dict()
    sst2["methods"] = [{"name": "x", "targets": "joint_decoding"}]
    with pytest.raises(InvalidInputError, match="are for generation tasks"):
        ExperimentConfig.from_dict(sst2)
    sst2["methods"] = [{"name": "x", "targets": "vote", "decoding": {"constrained": True}}]
    with pytest.raises(InvalidInputError, match="decoding settings are for generation tasks"):
        ExperimentConfig.from_dict(sst2)
    sst2["methods"] = [{"name": "x", "targets": "posterior:dawid_skene:em", "student_rounds": 1, "crossfit_folds": 1}]
    with pytest.raises(InvalidInputError, match="crossfit_folds must be ≥ 2 for classification"):
        ExperimentConfig.from_dict(sst2)


def test_loop_and_decoding_rows_have_their_own_sft_keys():
    base = ExperimentConfig.from_yaml(TINY)
    by_name = {m.name: m for m in base.methods}
    soft = by_name["word posterior soft"].sft_key()
    assert by_name["word posterior soft constrained calibrated"].sft_key() == soft     # decoding shares the student
    assert by_name["+ IPO + SFT filtered"].sft_key() == soft
    assert by_name["word posterior in the loop"].sft_key() != by_name["word posterior soft"].sft_key()


def test_expected_no_slot_rate_and_pair_stats():
    import numpy as np

    from bayes_w2s.generation_pipeline import expected_no_slot_rate, pair_stats
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.student.preference import PreferencePairs

    assert expected_no_slot_rate(["{}", '{"a": "b"}', "{}", "x"]) == 0.75          # malformed counts as {}
    hyps = [["{}", "{}", '{"time": "five"}']] * 10 + [['{"time": "five"}'] * 3] * 10
    post = fit_posterior(hyps, model="word_reliability", method="em")
    assert 0.4 < expected_no_slot_rate(post, num_samples=400) < 0.6
    pairs = PreferencePairs(["a", "b"], ['{"t": "x"}', "{}"], ["{}", '{"t": "y"}'], np.array([0.9, 0.6]),
                            items=np.array([1, 0]))
    stats = pair_stats(pairs, ["{}", '{"t": "x"}'])
    assert stats == {"pairs": 2, "pair_accuracy": 1.0, "mean_p": pytest.approx(0.75), "chosen_empty": 0.5,
                     "rejected_empty": 0.5}
