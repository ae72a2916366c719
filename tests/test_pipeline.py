"""run_experiment's bookkeeping: the resume file, output folders, checks before training,
and kill-and-resume on random-weight tiny models (seconds, not minutes)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_w2s.pipeline as pipeline
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.errors import CorruptCacheError, InvalidInputError, UnknownNameError
from bayes_w2s.io import write_text
from bayes_w2s.pipeline import RESUME_FILE, run_experiment


@pytest.fixture(scope="module")
def tiny_setup(tiny_encoder, toy_texts, tmp_path_factory):
    """A 48-row cats/dogs CSV task and two differently named copies of the tiny encoder."""
    root = tmp_path_factory.mktemp("tiny-setup")
    texts, labels = toy_texts
    task = root / "pets.csv"
    pd.DataFrame({"text": texts, "label": ["cat" if y == 0 else "dog" for y in labels]}).to_csv(task, index=False)
    cards = []
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(tiny_encoder, root / name)
        cards.append(str(root / name))
    return str(task), cards, tiny_encoder


def make_config(tiny_setup, **over) -> ExperimentConfig:
    task, cards, strong = tiny_setup
    fields = dict(name="tiny", task=task, weak_models=cards, strong_model=strong,
                  sizes={"weak_train": 16, "strong_train": 16, "test": 16}, seeds=[0, 1],
                  weak_train={"mode": "head", "epochs": 3, "batch_size": 8, "learning_rate": 0.01},
                  student_train={"mode": "head", "epochs": 3, "batch_size": 8, "learning_rate": 0.01},
                  methods=[{"name": "ceiling", "targets": "ground_truth"},
                           {"name": "mean", "targets": "mean"},
                           {"name": "DS", "targets": "posterior:dawid_skene:em", "loss": "weighted_xent"}])
    fields.update(over)
    return ExperimentConfig(**fields)


class FakeSeeds:
    """Stands in for run_seed: deterministic rows, a weak-label file per seed, and an
    optional failure (an exception instance) when a given seed starts."""

    def __init__(self, fail_at=None, error=KeyboardInterrupt(), diverged=False):
        self.calls, self.fail_at, self.error, self.diverged = [], fail_at, error, diverged

    def __call__(self, cfg, task, seed, save_dir=None):
        if seed == self.fail_at:
            raise self.error
        self.calls.append(seed)
        write_text(save_dir / f"weak_labels_seed{seed}_test.npz", "stand-in")
        rows = [("weak:a", "weak", 0.6 + seed / 100), ("weak_vote", "weak_ensemble", 0.62), ("weak_mean", "weak_ensemble", 0.63),
                ("ceiling", "ceiling", 0.9), ("mean", "student", float("nan") if self.diverged else 0.7 + seed / 100)]
        return [{"seed": seed, "method": m, "kind": k, "accuracy": a, "ece": 0.1, "best_weak": "a"} for m, k, a in rows]


@pytest.fixture()
def fake(monkeypatch):
    def install(**kwargs):
        seeds = FakeSeeds(**kwargs)
        monkeypatch.setattr(pipeline, "run_seed", seeds)
        return seeds
    return install


def interrupted_run(tiny_setup, out, fake, **over):
    """A run killed (Ctrl-C) as seed 1 starts: the resume file holds seed 0."""
    fake(fail_at=1)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(make_config(tiny_setup, **over), out)
    assert (out / RESUME_FILE).exists() and not (out / "results.csv").exists()


def test_resume_after_a_config_change_is_refused_naming_the_difference(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake)
    changed = make_config(tiny_setup, student_train={"mode": "head", "epochs": 5, "batch_size": 8, "learning_rate": 0.01})
    seeds = fake()
    with pytest.raises(InvalidInputError, match=r"holds seed\(s\) \[0\] of another config.*config.student_train.epochs: 3(\.0)? → 5(\.0)?"
                                                r".*--restart"):
        run_experiment(changed, out)
    assert seeds.calls == []
    results = run_experiment(changed, out, restart=True)            # restart: seed 0 is redone
    assert seeds.calls == [0, 1] and sorted(set(results["seed"])) == [0, 1]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["student_train"]["epochs"] == 5


def test_resume_with_other_data_is_refused(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake)
    fake()
    with pytest.raises(InvalidInputError, match=r"data.strong_train"):
        run_experiment(make_config(tiny_setup, split_seed=1), out)


def test_an_unchanged_config_resumes_the_missing_seeds(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake)
    seeds = fake()
    results = run_experiment(make_config(tiny_setup, seeds=[0, 1, 2]), out)   # more seeds: still the same config
    assert seeds.calls == [1, 2] and sorted(set(results["seed"])) == [0, 1, 2]
    assert not (out / RESUME_FILE).exists()


def test_more_processes_for_the_posterior_choice_still_resume_the_run(tiny_setup, tmp_path, fake):
    """posterior_jobs changes how fast the candidates are fitted, not what they give."""
    auto = {"name": "auto", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene", "one_coin"]}
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake, weak_val_size=8, methods=[auto])
    seeds = fake()
    run_experiment(make_config(tiny_setup, weak_val_size=8, methods=[{**auto, "posterior_jobs": 2}]), out)
    assert seeds.calls == [1]


def test_a_rerun_with_fewer_seeds_keeps_the_finished_ones(tiny_setup, tmp_path, fake, caplog):
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake)
    seeds = fake()
    with caplog.at_level("WARNING"):
        results = run_experiment(make_config(tiny_setup, seeds=[1]), out)
    assert seeds.calls == [1] and sorted(set(results["seed"])) == [0, 1]
    assert "finished seed(s) [0]" in caplog.text
    assert (out / "weak_labels_seed0_test.npz").exists()              # seed 0's files stay too
    assert json.loads((out / "meta.json").read_text())["config"]["seeds"] == [1, 0]


def test_duplicate_seeds_run_once(tiny_setup, tmp_path, fake):
    seeds = fake()
    results = run_experiment(make_config(tiny_setup, seeds=[1, 0, 1, 0]), tmp_path / "run")
    assert seeds.calls == [1, 0]
    assert not results.duplicated(["seed", "method"]).any()
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["config"]["seeds"] == [1, 0]


@pytest.mark.parametrize("damage", [
    lambda text: text[:-40],                                        # truncated last row
    lambda text: text.replace('"accuracy": 0.7', '"accuracy": 0.4'),  # edited
    lambda text: "",                                                # emptied
])
def test_a_corrupt_resume_file_is_reported_not_used(tiny_setup, tmp_path, fake, damage):
    out = tmp_path / "run"
    interrupted_run(tiny_setup, out, fake)
    path = out / RESUME_FILE
    path.write_text(damage(path.read_text()))
    seeds = fake()
    with pytest.raises(CorruptCacheError, match=f"{RESUME_FILE} is unreadable.*--restart"):
        run_experiment(make_config(tiny_setup), out)
    assert seeds.calls == []
    results = run_experiment(make_config(tiny_setup), out, restart=True)
    assert seeds.calls == [0, 1] and np.allclose(results.loc[results["method"] == "mean", "accuracy"], [0.7, 0.71])


def test_a_resume_file_without_a_fingerprint_is_not_trusted(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.partial.csv").write_text("seed,method,kind,accuracy\n0,DS,student,0.4\n")
    fake()
    with pytest.raises(InvalidInputError, match="results.partial.csv was written without a config fingerprint"):
        run_experiment(make_config(tiny_setup), out)
    assert set(run_experiment(make_config(tiny_setup), out, restart=True)["seed"]) == {0, 1}
    assert not (out / "results.partial.csv").exists()


def test_a_folder_with_results_is_refused_unless_overwrite(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    fake()
    run_experiment(make_config(tiny_setup, seeds=[0, 1]), out)
    before = (out / "results.csv").read_text()
    seeds = fake()
    with pytest.raises(InvalidInputError, match=r"already holds results \(results.csv, results.md, meta.json\).*--overwrite"):
        run_experiment(make_config(tiny_setup, seeds=[2]), out)
    assert seeds.calls == [] and (out / "results.csv").read_text() == before
    results = run_experiment(make_config(tiny_setup, seeds=[2]), out, overwrite=True)
    assert seeds.calls == [2] and set(results["seed"]) == {2}
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {2}
    assert sorted(p.name for p in out.glob("weak_labels_*")) == ["weak_labels_seed2_test.npz"]   # stale seeds removed
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "meta.json", "results.csv", "results.md",
                                                     "weak_labels_seed2_test.npz"]           # no temp files


@pytest.mark.parametrize("error", [RuntimeError("a model crashed"), KeyboardInterrupt()])
def test_a_run_that_finishes_no_seed_leaves_no_folder(tiny_setup, tmp_path, fake, error):
    fake(fail_at=0, error=error)
    with pytest.raises(type(error)):
        run_experiment(make_config(tiny_setup), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(type(error)):
        run_experiment(make_config(tiny_setup), existing)
    assert existing.is_dir()                                         # a folder the user made is kept


#: config fields that are wrong → what the error must name; all found before anything loads or trains
BAD_CONFIGS = [
    (dict(strong_model="mpnet-bsae"), UnknownNameError, "strong_model: unknown model 'mpnet-bsae'"),
    (dict(weak_models="minilm-l6"), InvalidInputError, r"weak_models must be a list of model cards, got 'minilm-l6'"),
    (dict(seeds=[-1]), InvalidInputError, r"seeds must be a non-empty list of integers"),
    (dict(seeds=["a", "b"]), InvalidInputError, r"seeds must be a non-empty list of integers"),
    (dict(seeds=5), InvalidInputError, r"seeds must be a non-empty list of integers .*got 5"),
    (dict(sizes={"weak_trian": 10}), InvalidInputError, r"sizes: unknown split\(s\) \['weak_trian'\]"),
    (dict(sizes={"weak_train": -16, "strong_train": 16, "test": 16}), InvalidInputError, r"sizes\['weak_train'\] must be"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skeen:em"}]), UnknownNameError,
     r"method 'DS': no posterior dawid_skeen:em; available: .*dawid_skene:em"),
    (dict(methods=[{"name": "H", "targets": "posterior:hierarchical:em"}]), UnknownNameError,
     r"method 'H': no posterior hierarchical:em"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skene:em", "posterior_kwargs": {"beta_diagonal": 3}}]),
     InvalidInputError, r"method 'DS': .*has no prior or em setting named \['beta_diagonal'\]"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skene:nuts", "posterior_kwargs": {"num_chains": 1.5}}]),
     InvalidInputError, r"method 'DS': .*num_chains must be an integer"),
    (dict(methods=[{"name": "m", "targets": "mean", "posterior_kwargs": {"max_iter": 5}}]),
     InvalidInputError, r"method 'm': posterior_kwargs .* are for posterior targets"),
    (dict(methods=[{"name": "aux", "targets": "mean", "loss": "aux_conf", "loss_kwargs": {"alpha": 0.5}}]),
     InvalidInputError, r"method 'aux': loss 'aux_conf' has no setting\(s\) \['alpha'\]"),
    (dict(methods=[{"name": "aux", "targets": "mean", "loss": "aux_conf", "loss_kwargs": {"alpha_max": -3}}]),
     InvalidInputError, r"method 'aux': loss aux_conf: alpha_max must be"),
    (dict(methods=[{"name": "x", "targets": "mean", "loss_kwargs": {"alpha_max": 0.5}}]),
     InvalidInputError, r"method 'x': loss 'xent' has no setting"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skene:em",
                    "posterior_kwargs": {"prior_counts": [[1, 2]]}}]),
     InvalidInputError, r"method 'DS': posterior_kwargs.prior_counts must have shape \[K, 2, K\] .* got \[1, 2\]"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skene:em", "posterior_kwargs": {"prior_counts":
                                                                                                [[[1, 1]] * 2] * 3}}]),
     InvalidInputError, r"prior_counts must have shape \[K, 2, K\] .* got \[3, 2, 2\]"),
    (dict(methods=[{"name": "A", "targets": "posterior:auto", "posterior_candidates": ["one_coin:soft_votes=0"]}]),
     InvalidInputError, r"method 'A': .*soft_votes must be"),
    (dict(methods=[{"name": "A", "targets": "posterior:auto", "posterior_candidates": ["dawid_skene:beta_diag=-1"]}]),
     InvalidInputError, r"method 'A': posterior candidate 'dawid_skene:beta_diag=-1': .*beta_diag"),
]


@pytest.mark.parametrize("over, error, match", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_everything_the_config_names_is_checked_before_training(tiny_setup, tmp_path, monkeypatch, over, error, match):
    monkeypatch.setattr(pipeline, "experiment_task", lambda cfg: pytest.fail("loaded data before checking the config"))
    monkeypatch.setattr(pipeline, "run_seed", lambda *a, **k: pytest.fail("trained before checking the config"))
    cfg = make_config(tiny_setup)
    for key, value in over.items():   # set after construction: the checks under test are run_experiment's
        setattr(cfg, key, value if key != "methods" else [pipeline.MethodConfig(**m) for m in value])
    with pytest.raises(error, match=match):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- the real thing on tiny models ------------------------------------------------------------

def test_kill_and_resume_gives_the_uninterrupted_results(tiny_setup, tmp_path, monkeypatch):
    """Ctrl-C as seed 1 starts, then a rerun: results.csv equals an uninterrupted run's
    (each run with a fresh cache, so nothing is shared but the code)."""
    timing = ["train_seconds", "seed_wall_seconds"]
    monkeypatch.setenv("BAYES_W2S_CACHE", str(tmp_path / "cache-a"))
    whole = run_experiment(make_config(tiny_setup), tmp_path / "whole")

    monkeypatch.setenv("BAYES_W2S_CACHE", str(tmp_path / "cache-b"))
    real_run_seed = pipeline.run_seed

    def killed_at_seed_1(cfg, task, seed, save_dir=None):
        if seed == 1:
            raise KeyboardInterrupt
        return real_run_seed(cfg, task, seed, save_dir)

    monkeypatch.setattr(pipeline, "run_seed", killed_at_seed_1)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(make_config(tiny_setup), tmp_path / "resumed")
    monkeypatch.setattr(pipeline, "run_seed", real_run_seed)
    resumed = run_experiment(make_config(tiny_setup), tmp_path / "resumed")

    assert len(whole) == len(resumed) == 2 * 7        # 2 weak + vote + mean + 3 methods, per seed
    pd.testing.assert_frame_equal(whole.drop(columns=timing), resumed.drop(columns=timing))
    files = [pd.read_csv(tmp_path / d / "results.csv").drop(columns=timing) for d in ("whole", "resumed")]
    pd.testing.assert_frame_equal(*files)


def test_shipped_configs_pass_the_pre_run_checks():
    from pathlib import Path

    from bayes_w2s.pipeline import load_experiment_config, validate_experiment
    configs = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        validate_experiment(load_experiment_config(path))


def test_an_output_folder_that_cannot_be_made_fails_before_training(tiny_setup, tmp_path, fake):
    seeds = fake()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match="cannot be made: .*a_file is not a folder"):
        run_experiment(make_config(tiny_setup), blocker / "run")
    assert seeds.calls == []


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    """os.access says yes to root anywhere, /proc included; the run failed after its weak models trained."""
    import os

    from bayes_w2s.pipeline import check_output_folder
    monkeypatch.setattr(os, "access", lambda *a, **k: True)      # what root is told, whoever runs the test
    with pytest.raises(InvalidInputError, match=r"output folder /proc/bayes-w2s-x cannot be written \("):
        check_output_folder(Path("/proc/bayes-w2s-x"))
    check_output_folder(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()                       # probed, and nothing left behind


def test_a_diverged_students_nan_row_is_reported_not_a_crash(tiny_setup, tmp_path, fake):
    """run_seed records a student whose test probabilities are NaN as accuracy NaN (before, the
    metrics' new checks would have stopped the run); PGR and the report carry the NaN through."""
    fake(diverged=True)
    results = run_experiment(make_config(tiny_setup, seeds=[0]), tmp_path / "run")
    row = results[results["method"] == "mean"].iloc[0]
    assert np.isnan(row["accuracy"]) and (tmp_path / "run" / "results.md").exists()


def test_overwrite_removes_the_students_of_methods_no_longer_run(tiny_setup, tmp_path, fake):
    out = tmp_path / "run"
    for method in ("gone", "ds"):
        (out / "students" / method / "seed0").mkdir(parents=True)
    (out / "students" / "notes").mkdir()                 # not ours: holds something other than seed<N> folders
    (out / "students" / "notes" / "todo.txt").write_text("x")
    (out / "results.csv").write_text("seed,method,kind,accuracy\n")
    fake()
    run_experiment(make_config(tiny_setup, seeds=[0]), out, overwrite=True)
    assert sorted(p.name for p in (out / "students").iterdir()) == ["ds", "notes"]
    fake()
    run_experiment(make_config(tiny_setup, seeds=[0], save_students=False), out, overwrite=True)
    assert sorted(p.name for p in (out / "students").iterdir()) == ["notes"]   # no stale student of this run


def test_an_empty_output_folder_name_is_refused(tiny_setup, tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seeds = fake()
    for output in ("", "  "):
        with pytest.raises(InvalidInputError, match="output folder: empty"):
            run_experiment(make_config(tiny_setup), output)
    with pytest.raises(InvalidInputError, match="cannot be made: a path cannot hold a NUL"):
        run_experiment(make_config(tiny_setup), tmp_path / "a\0b")
    with pytest.raises(InvalidInputError, match="cannot be"):
        run_experiment(make_config(tiny_setup), tmp_path / ("x" * 300) / "y")
    assert seeds.calls == [] and list(tmp_path.iterdir()) == []


def test_a_hub_model_that_cannot_be_fetched_is_named_before_any_work(tiny_setup, monkeypatch, fake, caplog):
    """`validate` said OK to a hub id offline; `run` found out only when loading the data."""
    import logging

    from bayes_w2s.pipeline import validate_experiment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seeds = fake()
    cfg = make_config(tiny_setup)
    cfg.strong_model = "someorg/no-such-model"
    with caplog.at_level(logging.WARNING, logger="bayes_w2s.pipeline"):
        validate_experiment(cfg)      # a warning: cached features and weak labels need no weights
    assert "strong_model: model 'no-such-model' loads from the hub (someorg/no-such-model)" in caplog.text
    assert seeds.calls == []


def test_an_auto_posterior_row_chooses_on_the_gold_slice_and_says_what_it_chose(tiny_setup, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_W2S_CACHE", str(tmp_path / "cache"))
    candidates = ["dawid_skene", "one_coin:soft_votes=3"]
    cfg = make_config(tiny_setup, seeds=[0], sizes={"weak_train": 24, "strong_train": 16, "test": 16}, weak_val_size=8,
                      methods=[{"name": "auto", "targets": "posterior:auto", "temperature": "gold",
                                "posterior_candidates": candidates}])
    results = run_experiment(cfg, tmp_path / "out")
    [chosen] = results.loc[results["method"] == "auto", "posterior_chosen"]
    assert chosen in candidates
    assert f"auto: `{chosen}`" in (tmp_path / "out" / "results.md").read_text()


def test_folds_beyond_a_strong_train_sized_by_the_data_fail_before_any_seed_runs(tiny_setup, tmp_path, fake):
    """sizes.strong_train: null is known only once the data is read; this failed after the weak models trained."""
    from bayes_w2s.errors import ConfigError
    seeds = fake()
    cfg = make_config(tiny_setup, sizes={"weak_train": 16, "strong_train": None, "test": 16},
                      methods=[{"name": "loop", "targets": "posterior:dawid_skene:em", "student_rounds": 1,
                                "crossfit_folds": 40}])
    with pytest.raises(ConfigError, match=r"crossfit_folds: 40 folds of 16 strong_train items"):
        run_experiment(cfg, tmp_path / "out")
    assert seeds.calls == []
