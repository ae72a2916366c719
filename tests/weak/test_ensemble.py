import numpy as np
import pytest
from datasets import Dataset

from bayes_w2s import TrainConfig, WeakEnsemble
from bayes_w2s.errors import CorruptCacheError, InvalidInputError, UnknownNameError


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
    # a corrupt cache file is reported by name and left for the user to inspect
    files[0].write_bytes(b"garbage")
    with pytest.raises(CorruptCacheError, match=files[0].name):
        WeakEnsemble([tiny_encoder], cfg, cache=tmp_path).fit(toy, ["cat", "dog"]).predict(toy)


def test_errors(tiny_encoder, toy):
    with pytest.raises(UnknownNameError, match="unknown model 'gpt5'"):
        WeakEnsemble(["gpt5"])
    with pytest.raises(InvalidInputError, match="duplicate"):
        WeakEnsemble([tiny_encoder, tiny_encoder])
    with pytest.raises(InvalidInputError, match="fit"):
        WeakEnsemble([tiny_encoder]).predict(toy)
    with pytest.raises(InvalidInputError, match="empty"):
        WeakEnsemble([tiny_encoder]).fit(toy.select([]))
