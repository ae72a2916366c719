"""TrainConfig: every setting is checked when the config is made, not mid-training."""
import pytest

from bayes_w2s import TrainConfig
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.weak import GeneratorConfig

BAD_SETTINGS = [
    ({"learning_rate": float("inf")}, "learning_rate must be a positive finite number, got inf"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive finite number"),
    ({"learning_rate": 0}, "learning_rate must be a positive"),
    ({"learning_rate": "1e-3"}, "learning_rate must be a positive finite number, got '1e-3'"),
    ({"weight_decay": -50}, r"weight_decay must be a finite number ≥ 0, got -50"),
    ({"weight_decay": float("inf")}, "weight_decay must be a finite number"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio must be a number in \[0, 1\]"),
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
