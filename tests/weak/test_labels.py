import json

import numpy as np
import pytest

from bayes_w2s.errors import CorruptCacheError, InvalidInputError, LabelSetMismatchError
from bayes_w2s.weak import WeakLabels


def _probs(n=5, m=3, k=2, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=(n, m))


def test_views_and_round_trip(tmp_path):
    wl = WeakLabels(_probs(), ["a", "b", "c"], ["neg", "pos"], [f"i{j}" for j in range(5)])
    assert wl.votes().shape == (5, 3) and wl.mean().shape == (5, 2)
    assert np.allclose(wl.majority_vote().sum(-1), 1)
    back = WeakLabels.load(wl.save(tmp_path / "x.npz"))
    assert back.model_names == wl.model_names and back.item_ids == wl.item_ids
    assert np.allclose(back.probs, wl.probs, atol=1e-6)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p.__setitem__((0, 0, 0), np.nan), "NaN"),
    (lambda p: p.__imul__(0.5), "sum to 1"),
    (lambda p: p.__setitem__((1, 1), [1.5, -0.5]), r"\[0, 1\]"),
])
def test_bad_probabilities(mutate, match):
    p = _probs()
    mutate(p)
    with pytest.raises(InvalidInputError, match=match):
        WeakLabels(p, ["a", "b", "c"], ["neg", "pos"])


def test_shape_and_label_set_errors():
    with pytest.raises(InvalidInputError, match="3 dimensions"):
        WeakLabels(np.ones((4, 2)) / 2, ["a"], ["x", "y"])
    with pytest.raises(LabelSetMismatchError, match="3 label names for 2 classes"):
        WeakLabels(_probs(), ["a", "b", "c"], ["x", "y", "z"])
    wl = WeakLabels(_probs(), ["a", "b", "c"], ["neg", "pos"])
    from datasets import Dataset
    ds = Dataset.from_dict({"text": ["t"] * 5, "label": [0] * 5})
    with pytest.raises(LabelSetMismatchError, match="classes"):
        wl.check_against(ds, ["negative", "positive"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(model_names=["a", "a", "c"]), r"model_names must be distinct"),
    (dict(label_names=["x", "x"]), r"label_names must be distinct"),
    (dict(item_ids=["i0", "i0", "i2", "i3", "i4"]), r"item_ids must be distinct"),
    (dict(model_names="abc"), r"model_names must be an ordered list of names, got str 'abc'"),
    (dict(label_names={"neg", "pos"}), r"label_names must be an ordered list"),   # the order followed the hash seed
    (dict(probs=[[["a", "b"]]]), r"must be a numeric array"),        # was a raw ValueError
])
def test_bad_names_and_values(kwargs, match):
    args = {"probs": _probs(), "model_names": ["a", "b", "c"], "label_names": ["neg", "pos"], **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        WeakLabels(args.pop("probs"), **args)


def test_select_unknown_model_is_a_named_error():
    with pytest.raises(InvalidInputError, match=r"no weak model\(s\) \['d'\]"):
        WeakLabels(_probs(), ["a", "b", "c"], ["neg", "pos"]).select_models(["a", "d"])


@pytest.mark.parametrize("fill", [0.3, -0.5, 5.0])
def test_damaged_probabilities_in_a_file_are_not_renormalised_into_valid_ones(tmp_path, fill):
    path = WeakLabels(_probs(), ["a", "b", "c"], ["neg", "pos"]).save(tmp_path / "w.npz")
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
    header.pop("checksum")        # a file from before checksums: the probabilities themselves are checked
    np.savez(path, probs=np.full((5, 3, 2), fill, dtype=np.float32), header=np.array(json.dumps(header)))
    with pytest.raises(CorruptCacheError, match="w.npz"):
        WeakLabels.load(path)


def test_many_class_files_round_trip_and_edited_ones_are_caught(tmp_path):
    logits = np.random.default_rng(0).normal(size=(5000, 1, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    path = WeakLabels(probs, ["a"], ["w", "x", "y", "z"]).save(tmp_path / "w.npz")
    np.testing.assert_allclose(WeakLabels.load(path).probs, probs, atol=1e-6)      # its own checksum passes
    with np.load(path) as z:
        header, stored = z["header"], z["probs"]
    np.savez(path, probs=stored[:, :, ::-1], header=header)
    with pytest.raises(CorruptCacheError, match="do not match the checksum"):
        WeakLabels.load(path)


def test_corrupt_cache_names_the_file(tmp_path):
    bad = tmp_path / "weak.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CorruptCacheError, match="weak.npz"):
        WeakLabels.load(bad)
    with pytest.raises(FileNotFoundError, match="no weak-label file .*nope.npz"):   # was "corrupt: delete it"
        WeakLabels.load(tmp_path / "nope.npz")
    wl = WeakLabels(_probs(), np.array(["a", "b", "c"]), ["neg", "pos"])
    assert wl.model("b").shape == (5, 2) and wl.model_names == ["a", "b", "c"]   # numpy names are a list
    with pytest.raises(InvalidInputError, match="it is a folder"):
        wl.save(tmp_path)
    with pytest.raises(InvalidInputError, match="must be JSON data"):
        WeakLabels(_probs(), ["a", "b", "c"], ["neg", "pos"], meta={(1, 2): 3}).save(tmp_path / "m.npz")


def test_a_tied_output_is_an_abstention_not_a_vote_for_the_first_class():
    probs = np.array([[[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]],
                      [[0.45, 0.45, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
                      [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.25, 0.5, 0.25]],
                      [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]])
    wl = WeakLabels(probs, ["a", "b", "c"], ["x", "y", "z"])
    assert wl.votes().tolist() == [[0, -1, 2], [-1, 1, 2], [-1, -1, 1], [-1, -1, -1]]
    assert wl.abstained().tolist() == [False, False, False, True]
    # the tied models cast no vote: argmax made item 0 "x" (two votes) and item 1 a tie
    np.testing.assert_allclose(wl.majority_vote(), [[0.5, 0, 0.5], [0, 0.5, 0.5], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.parametrize("name", ["plain", "labels.cache", "labels.npz"])
def test_save_writes_the_exact_path_whatever_its_suffix(tmp_path, name):
    """np.savez appends ".npz" to a file name without it: "labels.cache" was left empty."""
    wl = WeakLabels(_probs(), ["a", "b", "c"], ["x", "y"], item_ids=np.arange(10, 15), meta={"seed": np.int64(3)})
    path = wl.save(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    back = WeakLabels.load(path)
    assert back.item_ids == [10, 11, 12, 13, 14] and back.meta == {"seed": 3}
    np.testing.assert_allclose(back.probs, wl.probs, atol=1e-6)
    with pytest.raises(InvalidInputError, match="not JSON data"):
        WeakLabels(_probs(), ["a", "b", "c"], ["x", "y"], meta={"x": object()}).save(tmp_path / "other")
    assert not (tmp_path / "other").exists()
