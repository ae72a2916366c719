import numpy as np
import pytest
from datasets import Dataset, Value

from bayes_w2s import TrainConfig, WeakEnsemble, WeakLabels
from bayes_w2s.errors import InvalidInputError, UnknownNameError
from bayes_w2s.io import UnreadableCacheWarning


@pytest.fixture()
def toy(toy_texts):
    texts, labels = toy_texts
    return Dataset.from_dict({"text": texts, "label": labels, "id": [str(i) for i in range(len(texts))]})


def test_predict_is_cached_and_resumable(tiny_encoder, toy, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=5, batch_size=8, learning_rate=1e-2)
    weak = WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"])
    wl = weak.predict(toy)
    assert wl.probs.shape == (48, 1, 2) and wl.item_ids == toy["id"]
    assert (wl.votes()[:, 0] == np.array(toy["label"])).mean() > 0.9
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    # a fresh ensemble (a rerun) loads the cache and never trains
    again = WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"])
    monkeypatch.setattr(again, "_classifier", lambda name: pytest.fail("retrained a cached model"))
    assert np.allclose(again.predict(toy).probs, wl.probs, atol=1e-6)
    # another training config is another cache entry
    other = WeakEnsemble([tiny_encoder], TrainConfig(epochs=1, batch_size=8), cache=tmp_path).fit(toy, ["cat", "dog"])
    name = weak.model_names[0]
    assert other._key(name, toy["text"]) != weak._key(name, toy["text"])
    # a corrupt cache file is recomputed, with a warning naming it, and replaced
    files[0].write_bytes(b"garbage")
    with pytest.warns(UnreadableCacheWarning, match=files[0].name):
        redone = WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"]).predict(toy)
    assert np.allclose(redone.probs, wl.probs, atol=1e-5)
    assert np.allclose(WeakLabels.load(files[0]).probs, wl.probs, atol=1e-5)
    # so is a readable file whose probabilities were changed after it was written (classes swapped)
    with np.load(files[0]) as z:
        header, probs = z["header"], z["probs"]
    np.savez(files[0].with_suffix(""), probs=probs[:, :, ::-1], header=header)   # np.savez appends .npz
    with pytest.warns(UnreadableCacheWarning, match="do not match the checksum"):
        redone = WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"]).predict(toy)
    assert np.allclose(redone.probs, wl.probs, atol=1e-5)
    # and one that belongs to other items or classes
    WeakLabels(np.full((3, 1, 2), 0.5), ["x"], ["cat", "dog"]).save(files[0])
    with pytest.warns(UnreadableCacheWarning, match="expected 48 x 1"):
        WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"]).predict(toy)


@pytest.mark.parametrize("make, error, match", [
    (lambda enc, toy: WeakEnsemble(["gpt5"]), UnknownNameError, "unknown model 'gpt5'"),
    (lambda enc, toy: WeakEnsemble("minilm-l6"), InvalidInputError, "list of model names, got the string 'minilm-l6'"),
    (lambda enc, toy: WeakEnsemble([]), InvalidInputError, "at least one model"),
    (lambda enc, toy: WeakEnsemble([enc, 3]), InvalidInputError, "model names .str., got 3"),
    (lambda enc, toy: WeakEnsemble([enc], "head"), InvalidInputError, r"config must be a TrainConfig.*TrainConfig\(mode='head'\)"),
    (lambda enc, toy: WeakEnsemble([enc], {"x": {"epochs": 1}}), InvalidInputError, r"config\['x'\] must be a TrainConfig"),
    (lambda enc, toy: WeakEnsemble([enc], {"minilm-L6": TrainConfig(mode="full")}), InvalidInputError,
     r"config names no model of this ensemble: \['minilm-L6'\]"),            # was silently the default config
    (lambda enc, toy: WeakEnsemble([enc], cache=True), InvalidInputError, "cache must be a folder path"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy, ["cat", "cat"]), InvalidInputError, "label_names must be distinct"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy, "cd"), InvalidInputError, "label_names must be an ordered list"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy, {"cat", "dog"}), InvalidInputError, "must be an ordered list"),
    (lambda enc, toy: WeakEnsemble([enc], seed=-1), InvalidInputError, r"seed must be an integer in \[0, 2\*\*32\)"),
    (lambda enc, toy: WeakEnsemble([enc], seed=1.5), InvalidInputError, r"seed must be an integer in \[0, 2\*\*32\)"),
    (lambda enc, toy: WeakEnsemble([enc, enc]), InvalidInputError, "duplicate"),
    (lambda enc, toy: WeakEnsemble([enc]).predict(toy), InvalidInputError, "fit"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy.select([])), InvalidInputError, "empty"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(list(toy["text"])), InvalidInputError,
     "WeakEnsemble.fit data must be a datasets.Dataset"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy.remove_columns("label")), InvalidInputError,
     "WeakEnsemble.fit data has no 'label' column"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy).predict(toy.rename_column("text", "sentence")), InvalidInputError,
     "WeakEnsemble.predict data has no 'text' column"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy, ["cat"]), InvalidInputError, r"labels outside 0..0"),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy.select(range(0, 48, 2)), ["cat", "dog"]), InvalidInputError,
     "one class only .'cat'."),
    (lambda enc, toy: WeakEnsemble([enc]).fit(toy.cast_column("label", Value("float32")), ["cat", "dog"]),
     InvalidInputError, "class indices"),
])
def test_bad_inputs(tiny_encoder, toy, make, error, match):
    with pytest.raises(error, match=match):
        make(tiny_encoder, toy)
