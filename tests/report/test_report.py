import json

import numpy as np
import pandas as pd
import pytest

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.report import add_pgr, redraw_plots, summarise, write_report


def _results(ceiling_acc):
    rows = []
    for seed in (0, 1):
        rows += [{"seed": seed, "method": "weak:a", "kind": "weak", "accuracy": 0.70, "ece": 0.1, "best_weak": "a"},
                 {"seed": seed, "method": "weak:b", "kind": "weak", "accuracy": 0.80, "ece": 0.1, "best_weak": "a"},
                 {"seed": seed, "method": "weak_vote", "kind": "weak_ensemble", "accuracy": 0.78, "ece": 0.1, "best_weak": "a"},
                 {"seed": seed, "method": "s", "kind": "student", "accuracy": 0.85 + 0.01 * seed, "ece": 0.1, "best_weak": "a"},
                 {"seed": seed, "method": "ceiling", "kind": "ceiling", "accuracy": ceiling_acc, "ece": 0.1, "best_weak": "a"}]
    return pd.DataFrame(rows)


def test_pgr_against_three_references():
    out = add_pgr(_results(0.90)).set_index(["seed", "method"])
    assert out.loc[(0, "s"), "pgr_best_weak"] == np.float64((0.85 - 0.80) / (0.90 - 0.80))
    assert np.isclose(out.loc[(1, "s"), "pgr_mean_weak"], (0.86 - 0.75) / (0.90 - 0.75))
    assert np.isclose(out.loc[(0, "s"), "pgr_vote"], (0.85 - 0.78) / (0.90 - 0.78))
    assert np.isnan(out.loc[(0, "weak:a"), "pgr_best_weak"])
    summary = summarise(add_pgr(_results(0.90)))
    assert summary.set_index("method").loc["s", "n_seeds"] == 2
    assert list(summary["kind"]) == ["weak", "weak", "weak_ensemble", "student", "ceiling"]


def test_report_files_and_gap_warning(tmp_path):
    meta = {"config": {"name": "t", "task": "x", "weak_models": ["a", "b"], "strong_model": "s", "split_seed": 0,
                       "seeds": [0, 1], "weak_train": {"mode": "head"}, "student_train": {"mode": "head"}},
            "data_source": "here", "split_sizes": {}, "wall_seconds": 1.0, "machine": "m", "python": "3", "command": "cmd"}
    write_report(_results(0.90), meta, tmp_path)
    assert {"results.csv", "results.md", "accuracy.png", "meta.json"} <= {p.name for p in tmp_path.iterdir()}
    assert "does not beat" not in (tmp_path / "results.md").read_text()
    write_report(_results(0.75), meta, tmp_path)
    assert "does not beat the best weak model" in (tmp_path / "results.md").read_text()


def test_wall_time_of_a_resumed_run_counts_every_seed(tmp_path):
    meta = {"config": {"name": "t", "task": "x", "weak_models": ["a", "b"], "strong_model": "s", "split_seed": 0,
                       "seeds": [0, 1], "weak_train": {"mode": "head"}, "student_train": {"mode": "head"},
                       "weak_label_budget": 50, "sizes": {"weak_train": 500}},
            "data_source": "here", "split_sizes": {}, "wall_seconds": 600.0, "machine": "m", "python": "3",
            "command": "cmd", "seed_wall_seconds": {"0": 3000.0, "1": 600.0}}
    write_report(_results(0.90), meta, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "Wall time: 60.0 min over resumed runs (seed 0: 50.0 min, seed 1: 10.0 min)" in md
    assert "stratified 50-item subset of a 500-item weak_train draw" in md
    write_report(_results(0.90), {**meta, "seed_wall_seconds": {"0": 300.0, "1": 300.0}}, tmp_path)
    assert "Wall time: 10.0 min on m" in (tmp_path / "results.md").read_text()   # one uninterrupted run


def test_calibration_bins_and_reliability_diagram(tmp_path):
    from bayes_w2s.metrics import expected_calibration_error
    from bayes_w2s.report import calibration_bins, reliability_diagram

    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.35, 0.65], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    bins = calibration_bins(probs, labels, n_bins=10).set_index("bin")
    assert bins.loc[9, "count"] == 2 and bins.loc[9, "accuracy"] == 0.5 and np.isclose(bins.loc[9, "confidence"], 0.925)
    assert bins.loc[6, "count"] == 2 and bins.loc[6, "accuracy"] == 1.0
    ece = sum(b["count"] / 4 * abs(b["accuracy"] - b["confidence"]) for _, b in bins.iterrows() if b["count"])
    assert np.isclose(ece, expected_calibration_error(probs, labels, n_bins=10))
    path = reliability_diagram({"a": probs, "b": probs[:, ::-1]}, labels, tmp_path / "r.png", "t")
    assert path.stat().st_size > 1000


def test_saved_test_probabilities_give_a_reliability_diagram(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        p = rng.dirichlet([1, 1], size=(3, 20))
        np.savez(tmp_path / f"test_probs_seed{seed}.npz", methods=np.array(["weak:a", "s", "ceiling"]), probs=p,
                 ids=np.arange(20).astype(str), labels=rng.integers(0, 2, 20))
    meta = {"config": {"name": "t", "task": "x", "weak_models": ["a", "b"], "strong_model": "s", "split_seed": 0,
                       "seeds": [0, 1], "weak_train": {"mode": "head"}, "student_train": {"mode": "head"}},
            "data_source": "here", "split_sizes": {}, "wall_seconds": 1.0, "machine": "m", "python": "3", "command": "c"}
    write_report(_results(0.90), meta, tmp_path)
    assert (tmp_path / "reliability.png").is_file() and "reliability.png" in (tmp_path / "results.md").read_text()
    (tmp_path / "reliability.png").unlink()
    assert {p.name for p in redraw_plots(tmp_path)} == {"accuracy.png", "reliability.png"}
    with pytest.raises(InvalidInputError, match="not a results folder"):
        redraw_plots(tmp_path / "nothing")


def test_malformed_results_folders_are_one_line_errors(tmp_path):
    meta = {"config": {"name": "t", "task": "x", "weak_models": ["a", "b"], "strong_model": "s", "split_seed": 0,
                       "seeds": [0, 1], "weak_train": {"mode": "head"}, "student_train": {"mode": "head"}},
            "data_source": "here", "split_sizes": {}, "wall_seconds": 1.0, "machine": "m", "python": "3", "command": "c"}
    cases = [("{not json", _results(0.9).to_csv(index=False), "unreadable results.csv or meta.json"),
             ("{}", _results(0.9).to_csv(index=False), "must be an object with a 'config' object"),
             (json.dumps({**meta, "metric": "f1"}), _results(0.9).to_csv(index=False), r"lack the column\(s\) \['f1'\]"),
             (json.dumps(meta), "", "unreadable results.csv"),
             (json.dumps(meta), "seed,method,kind,accuracy\n", "no results to report"),
             (json.dumps(meta), pd.concat([_results(0.9)] * 2).to_csv(index=False), "more than once")]
    for i, (meta_text, csv_text, match) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "meta.json").write_text(meta_text)
        (folder / "results.csv").write_text(csv_text)
        with pytest.raises(InvalidInputError, match=match):
            redraw_plots(folder)
    with pytest.raises(InvalidInputError, match="no results to report"):
        write_report(_results(0.9).iloc[:0], meta, tmp_path / "empty")
    piped = _results(0.9).replace({"method": {"s": "a|b"}})
    write_report(piped, meta, tmp_path / "piped")
    assert "| a\\|b | student |" in (tmp_path / "piped" / "results.md").read_text()


def test_damaged_or_stray_probability_files_cost_a_diagram_seed_not_the_report(tmp_path):
    """A truncated test_probs file or a copy such as test_probs_seed0.bak.npz used to end the
    run (and `plots`) in a raw traceback after results.csv was written."""
    from bayes_w2s.io import UnreadableCacheWarning
    from bayes_w2s.report import load_test_probs
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        np.savez(tmp_path / f"test_probs_seed{seed}.npz", methods=np.array(["s"]), probs=rng.dirichlet([1, 1], (1, 5)),
                 labels=rng.integers(0, 2, 5))
    for copy in ("test_probs_seed0.bak.npz", "test_probs_seed01.npz"):
        (tmp_path / copy).write_bytes((tmp_path / "test_probs_seed0.npz").read_bytes())
    probs, labels = load_test_probs(tmp_path)
    assert probs["s"].shape == (10, 2) and labels.shape == (10,)          # the copy is not a third seed
    np.savez(tmp_path / "test_probs_seed1.npz", methods=np.array(["s"]), probs=rng.dirichlet([1, 1, 1], (1, 5)),
             labels=rng.integers(0, 2, 5))              # three classes where seed 0 has two
    with pytest.warns(UnreadableCacheWarning, match="another class count"):
        assert load_test_probs(tmp_path)[0]["s"].shape == (5, 2)
    (tmp_path / "test_probs_seed1.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UnreadableCacheWarning, match="test_probs_seed1.npz is unreadable.*leaves that seed out"):
        probs, labels = load_test_probs(tmp_path)
    assert probs["s"].shape == (5, 2)
    (tmp_path / "test_probs_seed0.npz").write_bytes(b"")
    with pytest.warns(UnreadableCacheWarning):
        assert load_test_probs(tmp_path) is None


def test_method_names_survive_the_csv_and_bad_columns_are_named(tmp_path):
    meta = {"config": {"name": "t", "task": "x", "weak_models": ["a", "b"], "strong_model": "s", "split_seed": 0,
                       "seeds": [0, 1], "weak_train": {"mode": "head"}, "student_train": {"mode": "head"}},
            "data_source": "here", "split_sizes": {}, "wall_seconds": 1.0, "machine": "m", "python": "3",
            "command": "c"}
    results = _results(0.9).replace({"method": {"s": "N/A"}})
    results.loc[results["method"] == "ceiling", "method"] = "None"
    write_report(results, meta, tmp_path)            # pandas read both names back as NaN: "more than once"
    assert {p.name for p in redraw_plots(tmp_path)} == {"accuracy.png"}
    assert {"N/A", "None"} <= set(pd.read_csv(tmp_path / "results.csv", keep_default_na=False)["method"])
    (tmp_path / "results.csv").write_text(results.assign(accuracy="high").to_csv(index=False))
    with pytest.raises(InvalidInputError, match=r"\['accuracy'\] hold values that are not numbers"):
        redraw_plots(tmp_path)


def test_calibration_bins_check_their_inputs_as_the_ece_does():
    from bayes_w2s.report import calibration_bins
    for probs, labels, n_bins, match in ((np.array([[2.0, -1.0], [0.5, 3.0]]), [0, 1], 4, "must lie in"),   # logits
                                         (np.zeros((0, 2)), [], 2, "empty set"),
                                         (np.array([[0.5, 0.5]]), [0], 0, "n_bins must be")):
        with pytest.raises(InvalidInputError, match=match):
            calibration_bins(probs, labels, n_bins=n_bins)
