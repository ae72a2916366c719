"""Typed configs: values coerced or rejected at load, with one-line messages naming the field."""
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from bayes_w2s.config import (LOSS_KWARGS, LOSSES, ExperimentConfig, TargetSpec, posterior_registry, read_yaml,
                              set_dotted)
from bayes_w2s.errors import ConfigError, InvalidInputError
from bayes_w2s.train_config import GeneratorConfig, TrainConfig

BASE = dict(name="t", task="sst2", weak_models=["minilm-l6", "mpnet-base"], strong_model="mpnet-base",
            methods=[{"name": "ceiling", "targets": "ground_truth"},
                     {"name": "aux", "targets": "best_weak", "loss": "aux_conf", "loss_kwargs": {"alpha_max": 0.5}},
                     {"name": "DS", "targets": "posterior:dawid_skene:em", "posterior_kwargs": {"beta_diag": 3}}])


def load(tmp_path, text: str | bytes = None, overrides=None, **changes):
    path = tmp_path / "c.yaml"
    if text is None:
        text = yaml.safe_dump({**BASE, **changes}, sort_keys=False)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ExperimentConfig.from_yaml(path, overrides)


def fails(tmp_path, match, text=None, overrides=None, **changes):
    with pytest.raises(ConfigError, match=match) as err:
        load(tmp_path, text, overrides, **changes)
    assert "\n" not in str(err.value)            # one line
    return str(err.value)


def test_yaml_1_1_exponents_and_numeric_strings_are_coerced(tmp_path):
    text = yaml.safe_dump(BASE) + "student_train: {learning_rate: 1e-3, batch_size: '16', epochs: 2}\n"
    assert "1e-3" in text                     # YAML 1.1 reads this as the string '1e-3'
    cfg = load(tmp_path, text)
    assert cfg.student_train == TrainConfig(learning_rate=0.001, batch_size=16, epochs=2.0)
    assert isinstance(cfg.student_train.epochs, float) and isinstance(cfg.student_train.batch_size, int)


def test_yaml_1_1_exponents_in_free_form_settings_are_numbers(tmp_path):
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "methods"}) + (
        "methods:\n"
        "  - {name: DS, targets: 'posterior:dawid_skene:em', posterior_kwargs: {tol: 1e-6, beta_diag: 2}}\n"
        "  - {name: aux, targets: best_weak, loss: aux_conf, loss_kwargs: {alpha_max: 5e-1}}\n"
        "  - {name: mw, targets: weak_all, loss: multi_weak, loss_kwargs: {lambdas: [1e0, 2]}}\n")
    cfg = load(tmp_path, text)
    assert cfg.methods[0].posterior_kwargs == {"tol": 1e-6, "beta_diag": 2}
    assert cfg.methods[1].loss_kwargs == {"alpha_max": 0.5} and cfg.methods[2].loss_kwargs == {"lambdas": [1.0, 2]}


def test_cross_fitting_folds_beyond_strong_train_are_refused_once_its_size_is_known(tmp_path):
    method = {"name": "loop", "targets": "posterior:dawid_skene:em", "student_rounds": 1, "crossfit_folds": 40}
    cfg = load(tmp_path, methods=[method], sizes={"strong_train": None})    # unknown until the data is read
    cfg.check_folds(40)
    with pytest.raises(ConfigError, match=r"crossfit_folds: 40 folds of 30 strong_train items"):
        cfg.check_folds(30)


@pytest.mark.parametrize("changes, match", [
    ({"student_train": {"batch_size": 1.5}}, r"c.yaml: student_train.batch_size: expected an integer, got 1.5"),
    ({"student_train": {"learning_rate": "fast"}}, r"student_train.learning_rate: expected a number, got 'fast'"),
    ({"student_train": {"bf16": "yes"}}, r"student_train.bf16: expected true or false"),
    ({"weak_models": "minilm-l6"}, r"weak_models: expected a list of strings, got 'minilm-l6'"),
    ({"seeds": 5}, r"seeds: expected a list of integers, got 5"),
    ({"seeds": 0}, r"seeds: expected a list"),
    ({"seeds": ["a", "b"]}, r"seeds\[0\]: expected an integer, got 'a'"),
    ({"seeds": []}, r"needs at least one seed"),
    ({"seeds": [0, -1]}, r"seeds must be integers in \[0, 2\*\*32\)"),
    ({"sizes": {"test": -5}}, r"sizes.test must be a positive number"),
    ({"sizes": {"tset": 5}}, r"sizes: unknown split\(s\) \['tset'\]"),
    ({"strong_model": "gpt9"}, r"strong_model: unknown model 'gpt9'"),
    ({"weak_models": ["minilm-l6", "nope"]}, r"weak_models\[1\]: unknown model 'nope'"),
    ({"task": "imdb"}, r"task: unknown task 'imdb'"),
    ({"methods": [{"name": "a", "targets": "best_weak", "loss": "aux_conf", "loss_kwargs": {"alpha": 1}}]},
     r"methods\[0\] \('a'\).loss_kwargs: unknown setting\(s\) \['alpha'\] for loss 'aux_conf'; valid: \['alpha_max', 'warmup'\]"),
    ({"methods": [{"name": "a", "targets": "mean", "loss_kwargs": {"alpha_max": 1}}]}, r"for loss 'xent'; valid: none"),
    ({"methods": [{"name": "a", "targets": "posterior:dawid:em"}]}, r"targets: unknown posterior model 'dawid'"),
    ({"methods": [{"name": "a", "targets": "posterior:hierarchical:em"}]}, r"targets: posterior model 'hierarchical' has no method 'em'"),
    ({"methods": [{"name": "a", "targets": "posterior:dawid_skene:svi", "posterior_kwargs": {"stepz": 9}}]},
     r"methods\[0\] \('a'\).posterior_kwargs: unknown setting\(s\) \['stepz'\] for dawid_skene/svi; valid: \[.*'steps'"),
    ({"methods": [{"name": "a", "targets": "mean", "posterior_kwargs": {"steps": 9}}]}, r"methods\[0\] \('a'\): posterior_kwargs are for posterior targets, not 'mean'"),
    ({"methods": [{"name": "a", "targets": "oracle"}]}, r"method 'a': unknown targets 'oracle'"),
    ({"methods": [{"name": "A b", "targets": "mean"}, {"name": "a-B", "targets": "vote"}]}, r"more than punctuation"),
    ({"methods": []}, r"lists no methods"),
    ({"methods": [{"name": "a", "targets": "mean", "preference": {"beta": 0}}]},
     r"methods\[0\].preference: beta must be > 0"),
    ({"student_train": {"epochs": 1, "lr": 3}}, r"student_train: unknown key\(s\) \['lr'\]"),
    ({"student_train": {"batch_size": -4}}, r"student_train: TrainConfig.batch_size must be a positive finite integer, got -4"),
    ({"name": ""}, r"name: the results folder's name under output_root, got ''"),
    ({"name": "../elsewhere"}, r"name: the results folder's name under output_root"),
    # booleans are never numbers (True was seed 1, one item, …)
    ({"seeds": [True]}, r"seeds\[0\]: expected an integer, got True"),
    ({"split_seed": True}, r"split_seed: expected an integer, got True"),
    ({"sizes": {"weak_train": True}}, r"sizes.weak_train: expected an integer, got True"),
    ({"student_train": {"logging_steps": -1}}, r"TrainConfig.logging_steps must be an integer ≥ 0, got -1"),
    # validate said OK, the run refused it: fit_posterior gets the method's temperature already
    ({"methods": [{"name": "a", "targets": "posterior:dawid_skene:em", "posterior_kwargs": {"temperature": 2}}]},
     r"methods\[0\] \('a'\).posterior_kwargs: temperature is the method's own setting"),
    # NUTS on NumPyro needs a JAX twin of the model: refused at validation, not after weak labelling
    ({"methods": [{"name": "a", "targets": "posterior:logistic_t:nuts", "posterior_kwargs": {"backend": "numpyro"}}]},
     r"methods\[0\] \('a'\).posterior_kwargs: backend 'numpyro' is not available for logistic_t/nuts; "
     r"available: \['pyro'\]"),
    ({"methods": [{"name": "a", "targets": "posterior:dawid_skene:nuts", "posterior_kwargs": {"backend": "stan"}}]},
     r"backend 'stan' is not available for dawid_skene/nuts; available: \['pyro', 'numpyro'\]"),
    # one weight per weak model: a short list failed only at the first training step
    ({"methods": [{"name": "a", "targets": "weak_all", "loss": "multi_weak", "loss_kwargs": {"lambdas": [1]}}]},
     r"methods\[0\] \('a'\).loss_kwargs.lambdas: 1 weight\(s\) for 2 weak models"),
])
def test_a_wrong_value_is_one_line_naming_the_field(tmp_path, changes, match):
    fails(tmp_path, match, **changes)


@pytest.mark.parametrize("changes, match", [
    ({"sizes": {"weak_train": 120}, "weak_val_size": 119}, r"weak_val_size 119 leaves 1 of the 120 weak_train items"),
    ({"sizes": {"weak_train": 120}, "weak_label_budget": 100, "weak_val_size": 24},
     r"weak_val_size 24: the gold slice is drawn from the 20 weak_train items"),
    ({"sizes": {"strong_train": 160}, "methods": [{"name": "loop", "targets": "posterior:dawid_skene:em",
                                                   "student_rounds": 1, "crossfit_folds": 1000}]},
     r"methods\[0\] \('loop'\).crossfit_folds: 1000 folds of 160 strong_train items"),
])
def test_sizes_that_cannot_fit_fail_at_load_not_at_the_split(tmp_path, changes, match):
    fails(tmp_path, match, **changes)


def test_a_generation_config_needs_a_causal_strong_model_trained_beyond_its_head(tmp_path):
    tiny = yaml.safe_load((Path(__file__).parents[1] / "experiments/configs/slurp_tiny.yaml").read_text())
    fails(tmp_path, r"strong_model: a generation student is a causal LM; 'minilm-l6' is an encoder",
          **{**tiny, "strong_model": "minilm-l6"})
    fails(tmp_path, r"student_train.mode: a generation student trains in mode 'full' or 'lora'",
          **{**tiny, "student_train": {**tiny.get("student_train", {}), "mode": "head"}})
    assert load(tmp_path, **{**tiny, "strong_model": "openai-community/gpt2"}).strong_model   # a hub id: left to the run


def test_overrides_are_used_coerced_and_huge_numbers_are_no_traceback(tmp_path):
    """Override values are coerced like the blocks they override ("1e-3" failed only when the
    model trained); an integer beyond int64 is a number, not a TypeError from np.isfinite."""
    cfg = load(tmp_path, methods=[{"name": "a", "targets": "mean", "train_overrides": {"learning_rate": "1e-3"}}],
               weak_overrides={"minilm-l6": {"learning_rate": "1e-2", "batch_size": "16"}})
    assert cfg.student_config(cfg.methods[0]).learning_rate == 0.001
    assert cfg.weak_config("minilm-l6").learning_rate == 0.01 and cfg.weak_config("minilm-l6").batch_size == 16
    assert load(tmp_path, student_train={"batch_size": 10**20}).student_train.batch_size == 10**20
    assert GeneratorConfig(batch_size=10**20).batch_size == 10**20


def test_a_generation_posterior_keys_its_student_by_temperature():
    from bayes_w2s.config import MethodConfig
    plain = MethodConfig("w", "posterior:word_reliability_conf")
    assert plain.sft_key() == MethodConfig("w2", "posterior:word_reliability_conf", temperature=1).sft_key()
    assert plain.sft_key() != MethodConfig("w", "posterior:word_reliability_conf", temperature=2.0).sft_key()


def test_unreadable_files_are_one_line_errors(tmp_path):
    fails(tmp_path, r"not valid YAML: .* at line 2, column", text="name: x\n  task: [sst2\n")
    fails(tmp_path, r"the top level must be a mapping of config keys .* got a list", text="- a\n- b\n")
    fails(tmp_path, r"not UTF-8 text \(byte 0xff at offset 6\)", text=b"name: \xff\xfe\n")
    fails(tmp_path, r"the file is empty", text="# nothing\n")
    fails(tmp_path, r"not valid YAML: key 'loss' written twice at line 3, column 3",   # was last-wins, silently
          text="name: t\nx: {loss: xent,\n  loss: edl}\n")
    with pytest.raises(ConfigError, match="no config file .*missing.yaml"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"\(it is a folder\)"):
        read_yaml(tmp_path)


def test_set_overrides_dotted_keys(tmp_path):
    cfg = load(tmp_path, overrides=["student_train.epochs=3", "methods.1.loss_kwargs.alpha_max=0.25",
                                     "seeds=[4]", "weak_train.learning_rate=1e-2"])
    assert cfg.student_train.epochs == 3.0 and cfg.seeds == [4] and cfg.weak_train.learning_rate == 0.01
    assert cfg.methods[1].loss_kwargs == {"alpha_max": 0.25}
    fails(tmp_path, r"--set 'epochs': expected key.path=value", overrides=["epochs"])
    with pytest.raises(ConfigError, match="seeds given twice: by its own flag and by --set"):
        path = tmp_path / "c.yaml"
        ExperimentConfig.from_yaml(path, ["seeds=[0, 1]"], seeds=[5])
    fails(tmp_path, r"name: the results folder's name under output_root, got '.'", name=".")
    fails(tmp_path, r"data_dir: empty", data_dir="")
    fails(tmp_path, r"--set methods.7.loss: methods.7 is not an index of a 3-item list", overrides=["methods.7.loss=x"])
    fails(tmp_path, r"student_train.epochs: expected a number, got 'many'", overrides=["student_train.epochs=many"])
    data = {"a": {"b": 1}}
    set_dotted(data, "a.c.d=x y")
    assert data == {"a": {"b": 1, "c": {"d": "x y"}}}


def test_generation_tasks_get_generator_configs(tmp_path):
    cfg = load(tmp_path, task="slurp", methods=[{"name": "w", "targets": "posterior:word_reliability_conf"}],
               student_train={"mode": "lora", "n_best": "2"}, strong_model="smollm2-135m")
    assert isinstance(cfg.student_train, GeneratorConfig) and cfg.student_train.n_best == 2
    assert cfg.kind == "generation" and cfg.methods[0].spec == TargetSpec("posterior", "word_reliability_conf")
    assert not cfg.saves_students and load(tmp_path).saves_students     # default: classification only
    fails(tmp_path, r"generation posteriors are word models", task="slurp",
          methods=[{"name": "w", "targets": "posterior:dawid_skene"}])
    fails(tmp_path, r"loss_kwargs: unknown setting\(s\) \['alpha_max'\] for loss 'xent'", task="slurp",
          methods=[{"name": "w", "targets": "weak_all", "loss_kwargs": {"alpha_max": 1, "weights": [0.5, 0.5]}}])


def test_target_spec_parses_once():
    assert TargetSpec.parse("posterior:soft") == TargetSpec("posterior", "soft")      # the model's default method
    assert str(TargetSpec.parse("posterior:hierarchical:svi")) == "posterior:hierarchical:svi"
    assert TargetSpec.parse("weak:minilm-l6") == TargetSpec("weak", "minilm-l6")
    assert TargetSpec.parse("vote") == TargetSpec("vote")
    for bad, match in [("posterior", "needs a name"), ("weak:", "needs a name"), ("vote:x", "too many"),
                       ("oracle", "unknown targets")]:
        with pytest.raises(InvalidInputError, match=match):
            TargetSpec.parse(bad)


def test_slugs_name_the_student_folders():
    from bayes_w2s.config import MethodConfig
    assert MethodConfig("Dawid-Skene conf-weighted", "posterior:dawid_skene").slug == "dawid-skene-conf-weighted"
    assert MethodConfig("+ cDPO (per-pair ε), posterior ranker", "mean").slug == "cdpo-per-pair-posterior-ranker"


def test_loss_settings_table_matches_the_loss_classes():
    from bayes_w2s.student import losses
    assert LOSSES == losses.LOSSES
    for name, kwargs in LOSS_KWARGS.items():
        fn = losses.get_loss(name).fn
        expected = tuple(f.name for f in dataclasses.fields(fn)) if dataclasses.is_dataclass(fn) else ()
        assert kwargs == expected, name


def test_posterior_registry_matches_what_fit_posterior_accepts(tmp_path, monkeypatch):
    """Every setting the registry lists is one fit_posterior takes for that model and method
    (its split_kwargs accepts it), and the registry is read back from the cache unchanged."""
    from bayes_w2s.posterior import METHODS, split_kwargs
    from bayes_w2s.posterior.models import get_model
    registry = posterior_registry()
    assert {m: r["methods"] for m, r in registry.items()} == {m: list(me) for m, me in METHODS.items()}
    for model, entry in registry.items():
        for method, names in entry["settings"].items():
            split_kwargs(get_model(model), method, {n: None for n in names if n != "temperature"})
            with pytest.raises(InvalidInputError, match="unknown"):
                split_kwargs(get_model(model), method, {"not_a_setting": 1})
    assert {"beta_diag", "max_iter", "temperature"} <= set(registry["dawid_skene"]["settings"]["em"])
    assert posterior_registry() == registry                             # the cached copy


def test_shipped_configs_load_without_torch(tmp_path):
    """Once the posterior registry is cached (the first validation builds it), loading
    configs imports neither torch nor transformers."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = ("import sys, glob; from bayes_w2s.config import ExperimentConfig; "
            "[ExperimentConfig.from_yaml(p) for p in glob.glob('experiments/configs/*.yaml')]; "
            "print([m for m in ('torch', 'transformers', 'pyro', 'trl') if m in sys.modules])")
    env = {**os.environ, "BAYES_W2S_CACHE": str(tmp_path)}
    first, second = (subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True,
                                    text=True).stdout.strip() for _ in range(2))
    assert "'torch'" in first and second == "[]", (first, second)


def test_a_missing_optional_package_is_found_at_load_not_after_training(tmp_path, monkeypatch):
    """Without cleanlab a crowdlab row used to fail after every earlier student had trained."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cleanlab" else real(name, *a))
    fails(tmp_path, r"methods\[1\] \('CROWDLAB'\): targets: crowdlab needs cleanlab: pip install",
          methods=[BASE["methods"][0], {"name": "CROWDLAB", "targets": "crowdlab"}], weak_val_size=20)


def test_yaml_merge_keys_work_and_repeated_own_keys_are_still_refused(tmp_path):
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "methods"}) + (
        "methods:\n  - &d {name: a, targets: vote, loss: xent}\n"
        "  - {<<: *d, name: b, loss: weighted_xent, targets: 'posterior:dawid_skene'}\n  - {<<: *d, name: c}\n")
    cfg = load(tmp_path, text)
    assert [(m.name, m.targets, m.loss) for m in cfg.methods] == [
        ("a", "vote", "xent"), ("b", "posterior:dawid_skene", "weighted_xent"), ("c", "vote", "xent")]
    fails(tmp_path, r"key 'name' written twice", text="x: &d {a: 1}\ny: {<<: *d, name: a, name: b}\n")


@pytest.mark.parametrize("method, match", [
    ({"name": "weak_mean", "targets": "ground_truth"}, "'weak_mean' is the name of a row the pipeline adds itself"),
    ({"name": "weak:mpnet-base", "targets": "vote"}, "'weak:mpnet-base' is the name of a row"),
    ({"name": " ", "targets": "vote"}, "every method needs a name"),
    ({"name": "w", "targets": "posterior:word_reliability"}, "word_reliability is a word posterior, for generation"),
    ({"name": "l", "targets": "posterior:dawid_skene:em", "gold": "prior", "student_rounds": 1},
     "the loop's refit adds the student as one more supervisor"),
    ({"name": "p", "targets": "posterior:dawid_skene:em", "gold": "prior",
      "posterior_kwargs": {"prior_counts": [[[5, 1], [5, 1]], [[1, 5], [1, 5]]]}},
     "gold: prior builds prior_counts from the gold slice"),
    ({"name": "a", "targets": "posterior:auto:em"}, r"posterior:auto takes no method; name it in each candidate"),
    ({"name": "a", "targets": "posterior:auto", "posterior_kwargs": {"soft_votes": 3}},
     "candidates carry their own settings"),
    ({"name": "a", "targets": "posterior:auto", "gold": "prior"}, r"gold: prior is a Dawid–Skene prior"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene", "nope"]},
     r"posterior_candidates: posterior candidate 'nope': unknown classification model"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["one_coin:bogus=0"]},
     r"posterior candidate 'one_coin:bogus=0': unknown setting\(s\) \['bogus'\] for one_coin/em"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["one_coin@nuts2"]},
     r"posterior model 'one_coin' has no method 'nuts2'"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["one_coin", "one_coin"]}, "repeat a fit"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["one_coin:soft_votes=3",
                                                                         "one_coin:soft_votes=3.0"]}, "repeat a fit"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene", "dawid_skene@em"]},
     "repeat a fit"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["logistic_t@"]}, "'' is not a method name"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene:"]}, "nothing after ':'"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["one_coin:soft_votes=3,,"]},
     "'' is not name=value"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene:prior_counts=1"]},
     "prior_counts is an array"),
    ({"name": "a", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene@nuts:backend=jax"]},
     "backend 'jax' is not available for dawid_skene/nuts"),
    ({"name": "a", "targets": "posterior:dawid_skene", "posterior_candidates": ["one_coin"]},
     r"posterior_candidates and posterior_jobs are settings of targets: posterior:auto, not of "
     r"'posterior:dawid_skene'"),
    ({"name": "a", "targets": "posterior:one_coin", "posterior_jobs": 2}, "settings of targets: posterior:auto"),
    ({"name": "a", "targets": "posterior:auto", "posterior_jobs": 0}, "posterior_jobs must be a positive integer or"),
    ({"name": "a", "targets": "posterior:auto", "posterior_jobs": -3}, "posterior_jobs must be a positive integer"),
])
def test_methods_that_would_fail_after_training_are_refused_at_load(tmp_path, method, match):
    """Each of these passed validation and failed (or silently did something else) only after
    the weak models and students had trained."""
    fails(tmp_path, match, methods=[method], weak_val_size=20)


def test_folder_names_the_file_system_refuses_are_config_errors(tmp_path):
    fails(tmp_path, "at most 255 bytes", name="x" * 300)
    fails(tmp_path, "NUL character", name="a\0b")
    fails(tmp_path, "NUL character", output_root="out\0")


@pytest.mark.parametrize("cached", ["{}", "[]", "null", '"x"', '{"dawid_skene": {}}'])
def test_a_cached_registry_that_is_not_one_is_rebuilt(tmp_path, monkeypatch, cached):
    import bayes_w2s.config as config_module
    monkeypatch.setenv("BAYES_W2S_CACHE", str(tmp_path))
    registry = posterior_registry()
    [path] = (tmp_path / "config").glob("posterior-*.json")
    build = config_module._posterior_registry_from_import
    monkeypatch.setattr(config_module, "_posterior_registry_from_import", lambda: pytest.fail("rebuilt a good cache"))
    assert posterior_registry() == registry
    monkeypatch.setattr(config_module, "_posterior_registry_from_import", build)
    path.write_text(cached)
    assert posterior_registry() == registry and json.loads(path.read_text()) == registry


def test_auto_posterior_needs_the_gold_slice_and_its_candidates_key_the_student(tmp_path):
    auto = {"name": "a", "targets": "posterior:auto", "temperature": "gold"}
    fails(tmp_path, r"posterior:auto chooses the posterior on the gold slice; set weak_val_size",
          methods=[{**auto, "temperature": 1.0}])
    default = load(tmp_path, methods=[auto], weak_val_size=20).methods[0]
    named = load(tmp_path, methods=[{**auto, "posterior_candidates": ["dawid_skene@vb", "one_coin:soft_votes=3"]}],
                 weak_val_size=20).methods[0]
    assert default.candidates == ["dawid_skene", "one_coin:soft_votes=3", "logistic_t_pooled", "logistic_t_anchored"]
    assert named.candidates == ["dawid_skene@vb", "one_coin:soft_votes=3"]
    assert default.sft_key() != named.sft_key() and "logistic_t_pooled" in default.sft_key()
