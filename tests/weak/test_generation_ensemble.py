"""Cache reads of the generation ensemble: unreadable or mismatched files are recomputed."""
import json
from pathlib import Path

import numpy as np
import pytest

from bayes_w2s.io import UnreadableCacheWarning
from bayes_w2s.weak.generation_ensemble import GenerationEnsemble, _load_scores
from bayes_w2s.weak.hypotheses import Hypothesis, WeakHypotheses


def test_unreadable_hypotheses_are_recomputed(tmp_path):
    path = tmp_path / "hyp.json.gz"
    assert GenerationEnsemble._load_hypotheses(path, ["a"]) is None          # absent: no warning
    WeakHypotheses([[[Hypothesis(["{}"], np.zeros(1), 0.0, 1)]]], ["m"], ["a"]).save(path)
    assert GenerationEnsemble._load_hypotheses(path, ["a"]).ids == ["a"]
    with pytest.warns(UnreadableCacheWarning, match="other items"):
        assert GenerationEnsemble._load_hypotheses(path, ["b"]) is None
    path.write_bytes(b"\x1f\x8b truncated")
    with pytest.warns(UnreadableCacheWarning, match="hyp.json.gz"):
        assert GenerationEnsemble._load_hypotheses(path, ["a"]) is None


def test_unreadable_scores_are_recomputed(tmp_path):
    path = tmp_path / "joint.json"
    path.write_text(json.dumps([[0.1, 0.2], [0.3]]))
    assert [len(s) for s in _load_scores(path, [["x", "y"], ["z"]])] == [2, 1]
    with pytest.warns(UnreadableCacheWarning, match="other candidate lists"):
        assert _load_scores(path, [["x"], ["z"]]) is None
    path.write_text('[[0.1, 0.2], [0.')
    with pytest.warns(UnreadableCacheWarning, match="joint.json"):
        assert _load_scores(path, [["x", "y"], ["z"]]) is None


def test_hypotheses_name_a_missing_file_or_model():
    from bayes_w2s.errors import InvalidInputError
    with pytest.raises(FileNotFoundError, match="no weak-hypotheses file"):   # was "corrupt: delete it"
        WeakHypotheses.load("missing.json.gz")
    hyps = WeakHypotheses([[[Hypothesis(["{}"], np.zeros(1), 0.0, 1)]]], ["m"], ["a"])
    with pytest.raises(InvalidInputError, match=r"no weak model\(s\) \['zz'\] among \['m'\]"):
        hyps.select(["zz"])
    with pytest.raises(InvalidInputError, match="at least one"):
        WeakHypotheses.concat_models([])
    assert GenerationEnsemble._load_hypotheses(Path("."), ["a"]) is None   # a folder in its place: recomputed
