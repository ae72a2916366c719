"""The training layer (one builder of trainer arguments, logging, TensorBoard) and its
settings: every TrainConfig value is checked when the config is made, not mid-training."""
import dataclasses

import numpy as np
import pytest
import torch

from bayes_w2s import TrainConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.train_config import PreferenceConfig
from bayes_w2s.training import Classifier, lora_config, training_arguments
from bayes_w2s.weak import GeneratorConfig

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


BAD_SETTINGS = [
    ({"learning_rate": float("inf")}, "learning_rate must be a positive finite number, got inf"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive finite number"),
    ({"learning_rate": 0}, "learning_rate must be a positive"),
    ({"learning_rate": "1e-3"}, "learning_rate must be a positive finite number, got '1e-3'"),
    ({"weight_decay": -50}, r"weight_decay must be a finite number ≥ 0, got -50"),
    ({"weight_decay": float("inf")}, "weight_decay must be a finite number"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio must be a number in \[0, 1\)"),
    ({"warmup_ratio": 1.0}, r"warmup_ratio must be a number in \[0, 1\)"),   # transformers: one step
    ({"epochs": float("inf")}, "epochs must be a positive finite number"),
    ({"epochs": -1}, "epochs must be a positive"),
    ({"batch_size": "16"}, "batch_size must be a positive finite integer, got '16'"),
    ({"batch_size": 8.5}, "batch_size must be a positive finite integer"),
    ({"batch_size": True}, "batch_size must be a positive finite integer"),
    ({"max_length": 0}, "max_length must be a positive"),
    ({"lora_r": 0}, "lora_r must be a positive"),
    ({"save_steps": -1}, r"save_steps must be an integer ≥ 0"),
    ({"save_steps": 10}, "save_steps needs an output_dir"),
    ({"bf16": "yes"}, "bf16 must be true or false"),
    ({"mode": "qlora"}, "unknown training mode 'qlora'"),
]


@pytest.mark.parametrize("settings, match", BAD_SETTINGS, ids=[str(s) for s, _ in BAD_SETTINGS])
def test_bad_settings_name_the_field(settings, match):
    with pytest.raises(InvalidInputError, match=f"TrainConfig.*{match}" if "mode" not in settings else match):
        TrainConfig(**settings)


@pytest.mark.parametrize("settings, match", [({"learning_rate": float("inf")}, "learning_rate"),
                                             ({"weight_decay": -1.0}, "weight_decay"),
                                             ({"n_best": 0}, "n_best"), ({"batch_size": "16"}, "batch_size")])
def test_generator_config_checks_the_same(settings, match):
    with pytest.raises(InvalidInputError, match=f"GeneratorConfig.{match} must be"):
        GeneratorConfig(**settings)


def test_defaults_and_ordinary_values_pass():
    TrainConfig()
    TrainConfig(epochs=0.34, learning_rate=1e-5, weight_decay=0, warmup_ratio=0, batch_size=1)
    GeneratorConfig()


def test_checkpoints_in_a_shared_output_dir_belong_to_their_own_run(tiny_encoder, toy_texts, tmp_path):
    texts, labels = toy_texts
    cfg = TrainConfig(mode="head", epochs=2, batch_size=8, save_steps=2, output_dir=str(tmp_path))
    loss = lambda z, b, p: torch.nn.functional.cross_entropy(z, b["target_probs"])  # noqa: E731
    first = Classifier(tiny_encoder, 2, cfg).fit(texts, np.eye(2)[labels], loss)
    flipped = Classifier(tiny_encoder, 2, cfg).fit(texts, np.eye(2)[1 - np.asarray(labels)], loss)
    runs = sorted(p.name for p in tmp_path.glob("run-*"))
    assert len(runs) == 2                              # different targets: a run folder each, no resume
    assert not np.allclose(first.predict_logits(texts), flipped.predict_logits(texts))   # it trained, not resumed
    logged = dataclasses.replace(cfg, logging_steps=1, save_steps=3)        # settings that leave the weights alone
    Classifier(tiny_encoder, 2, logged).fit(texts, np.eye(2)[labels], loss)
    assert sorted(p.name for p in tmp_path.glob("run-*")) == runs   # the same run again resumes its own folder


def test_a_partial_loss_has_one_identity_in_every_process():
    import functools

    from bayes_w2s.training import _loss_identity
    first = functools.partial(torch.nn.functional.cross_entropy, label_smoothing=0.1)
    again = functools.partial(torch.nn.functional.cross_entropy, label_smoothing=0.1)
    assert "0x" not in _loss_identity(first) and _loss_identity(first) == _loss_identity(again)
    assert _loss_identity(first) != _loss_identity(functools.partial(torch.nn.functional.cross_entropy))


def test_report_to_names_are_transformers_integrations_and_unknown_ones_fail_at_load():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from bayes_w2s.train_config import REPORT_TO
    assert set(REPORT_TO) - {"none", "all"} == set(INTEGRATION_TO_CALLBACK)
    with pytest.raises(InvalidInputError, match=r"TrainConfig.report_to: unknown \['nosuch'\]"):
        TrainConfig(report_to="nosuch")
    with pytest.raises(InvalidInputError, match=r"GeneratorConfig.report_to: unknown \['x'\]"):
        GeneratorConfig(report_to=["tensorboard", "x"])


def test_folders_missing_loggers_and_bf16_without_support_fail_before_training(tmp_path, monkeypatch):
    import importlib.util

    import torch

    from bayes_w2s.errors import InvalidInputError
    (tmp_path / "f").write_text("x")
    for kwargs, match in ((dict(output_dir=5), "output_dir must be a folder path"),
                          (dict(logging_dir=""), "logging_dir must be a folder path"),
                          (dict(output_dir=str(tmp_path / "f")), "is a file, not a folder")):
        with pytest.raises(InvalidInputError, match=match):
            TrainConfig(**kwargs)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(InvalidInputError, match=r"report_to \['wandb'\] needs the package"):
        TrainConfig(report_to="wandb")                        # was transformers' RuntimeError at the first Trainer
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="cannot train in bf16"):
            training_arguments(TrainConfig(bf16=True), 0, str(tmp_path))
