"""The training layer: one builder of trainer arguments, logging settings, TensorBoard."""
import numpy as np
import pytest
import torch

from bayes_w2s.train_config import GeneratorConfig, PreferenceConfig, TrainConfig
from bayes_w2s.training import Classifier, lora_config, training_arguments


def test_one_builder_for_every_trainer(tmp_path):
    import transformers
    from trl import DPOConfig, SFTConfig

    assert int(transformers.__version__.split(".")[0]) >= 5      # warmup_steps < 1 is a ratio from 5 on
    plain = training_arguments(TrainConfig(warmup_ratio=0.1, save_steps=7, output_dir=str(tmp_path)), 3, str(tmp_path))
    assert (plain.warmup_steps, plain.seed, plain.data_seed, plain.save_steps) == (0.1, 3, 3, 7)
    assert plain.report_to in ("none", []) and plain.logging_steps == 10**9           # no logging by default
    sft = training_arguments(GeneratorConfig(), 0, str(tmp_path), args_cls=SFTConfig, max_length=32)
    dpo = training_arguments(PreferenceConfig(), 0, str(tmp_path), args_cls=DPOConfig)
    assert isinstance(sft, SFTConfig) and isinstance(dpo, DPOConfig)
    assert sft.activation_checkpointing is False and dpo.activation_checkpointing is False and not dpo.bf16
    logged = training_arguments(TrainConfig(report_to="tensorboard"), 0, str(tmp_path))
    assert logged.report_to == ["tensorboard"] and logged.logging_steps == 10           # reporting: every 10 steps
    assert training_arguments(TrainConfig(logging_steps=3), 0, str(tmp_path)).logging_steps == 3
    lora = lora_config(TrainConfig(lora_r=4, lora_alpha=8), task_type="CAUSAL_LM")
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.task_type) == (4, 8, 0.0, "CAUSAL_LM")


def test_logging_settings_do_not_change_cache_keys():
    assert TrainConfig(logging_steps=5, report_to="tensorboard", logging_dir="x").key() == TrainConfig().key()
    assert GeneratorConfig(logging_steps=5, report_to="tensorboard").key() == GeneratorConfig().key()


def test_report_to_tensorboard_writes_event_files(tiny_encoder, toy_texts, tmp_path):
    pytest.importorskip("tensorboardX")
    texts, labels = toy_texts
    cfg = TrainConfig(mode="head", epochs=2, batch_size=8, report_to="tensorboard", logging_steps=2,
                      logging_dir=str(tmp_path / "tb"))
    clf = Classifier(tiny_encoder, 2, cfg).fit(texts, np.eye(2)[labels], lambda z, b, p: torch.nn.functional.cross_entropy(
        z, b["target_probs"]))
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 0
    assert any("loss" in row for row in clf.history)                  # logged every 2 of 12 steps
