"""``bayes-w2s run``: every bad input is a one-line error with exit code 2, Ctrl-C a hint to rerun."""
import pytest
import yaml

import bayes_w2s.pipeline as pipeline
from bayes_w2s.cli import main

GOOD = dict(name="cli", task="TASK", weak_models=["minilm-l6", "mpnet-base"], strong_model="mpnet-base",
            sizes={"weak_train": 10, "strong_train": 10, "test": 10}, seeds=[0],
            methods=[{"name": "mean", "targets": "mean"}])


@pytest.fixture()
def write_config(tmp_path):
    task = tmp_path / "pets.csv"
    task.write_text("text,label\n" + "".join(f"pet {i},{'cat' if i % 2 else 'dog'}\n" for i in range(40)))

    def write(content=None, **over):
        path = tmp_path / "c.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if content is not None else yaml.safe_dump({**GOOD, "task": str(task), **over}))
        return str(path)
    return write


#: (config file content or overrides of a good config, extra CLI arguments, what stderr must name)
BAD_RUNS = [
    (dict(content="name: [unclosed\ntask: sst2\n"), [], r"c.yaml: not valid YAML"),
    (dict(content="- name: x\n- task: sst2\n"), [], r"c.yaml: the top level must be a mapping .* got a list"),
    (dict(content=b"name: caf\xe9\ntask: sst2\n"), [], r"c.yaml: not UTF-8 text"),
    (dict(content="name: x\ntask: sst2\n"), [], r"missing required key"),
    (dict(methods=5), [], r"c.yaml: invalid config"),
    (dict(methods=[{"name": "aux", "targets": "mean", "loss": "aux_conf", "loss_kwargs": {"alpha": 0.5}}]), [],
     r"method 'aux': loss 'aux_conf' has no setting\(s\) \['alpha'\]"),
    (dict(sizes={"weak_trian": 10}), [], r"sizes: unknown split\(s\) \['weak_trian'\]"),
    (dict(sizes={"weak_train": -10, "strong_train": 10, "test": 10}), [], r"sizes\['weak_train'\] must be a positive"),
    (dict(weak_models="minilm-l6"), [], r"weak_models must be a list of model cards"),
    (dict(strong_model="mpnet-bsae"), [], r"strong_model: unknown model 'mpnet-bsae'"),
    (dict(methods=[{"name": "DS", "targets": "posterior:dawid_skene:em", "posterior_kwargs": {"max_iter": 0}}]), [],
     r"method 'DS': .*max_iter must be an integer ≥ 1, got 0"),
    ({}, ["--seeds", "-1"], r"seeds must be a non-empty list of integers"),
    (dict(content="MISSING"), [], r"no config file"),
]


@pytest.mark.parametrize("config, extra, match", BAD_RUNS, ids=[str(i) for i in range(len(BAD_RUNS))])
def test_bad_runs_exit_2_with_a_one_line_error(write_config, tmp_path, capsys, monkeypatch, config, extra, match):
    monkeypatch.setattr(pipeline, "run_seed", lambda *a, **k: pytest.fail("trained despite a bad config"))
    path = write_config(**config) if config.get("content") != "MISSING" else str(tmp_path / "missing.yaml")
    code = main(["run", path, "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bayes-w2s: error: ") and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "out").exists()


def test_ctrl_c_says_how_to_resume(write_config, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "run_experiment", interrupted)
    assert main(["run", write_config(), "--output", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


def test_restart_and_overwrite_reach_run_experiment(write_config, tmp_path, monkeypatch):
    seen = {}

    def record(cfg, output, command="", **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "run_experiment", record)
    main(["run", write_config(), "--restart", "--overwrite"])
    assert seen == {"restart": True, "overwrite": True}
    main(["run", write_config()])
    assert seen == {"restart": False, "overwrite": False}
