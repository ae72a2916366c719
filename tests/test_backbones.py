"""The frozen-feature cache: checksummed files, unreadable ones recomputed with a warning."""
import numpy as np
import pytest

from bayes_w2s.backbones import FeatureCache, load_features
from bayes_w2s.io import UnreadableCacheWarning


def test_feature_cache_recomputes_unreadable_files(tiny_encoder, toy_texts, tmp_path):
    texts = toy_texts[0][:10]
    cache = FeatureCache(tiny_encoder, max_length=16, root=tmp_path)
    feats = cache(texts)
    path = cache.path(texts)
    assert path.suffix == ".npz" and np.array_equal(load_features(path), feats)
    fresh = FeatureCache(tiny_encoder, max_length=16, root=tmp_path)
    fresh._backbone = "must not be used"               # a cache hit never loads the backbone
    assert np.array_equal(fresh(texts), feats)
    for damage in (lambda p: p.write_bytes(p.read_bytes()[:200]),           # truncated
                   lambda p: np.savez(p, features=feats[:3], sha256=np.load(p)["sha256"])):  # wrong content
        damage(path)
        with pytest.warns(UnreadableCacheWarning, match=path.name):
            again = FeatureCache(tiny_encoder, max_length=16, root=tmp_path)(texts)
        assert np.allclose(again, feats, atol=1e-6)
        assert np.allclose(load_features(path), feats, atol=1e-6)    # the bad file was replaced


def test_legacy_npy_features_are_reused_and_checksummed(tiny_encoder, toy_texts, tmp_path):
    texts = toy_texts[0][:6]
    cache = FeatureCache(tiny_encoder, max_length=16, root=tmp_path)
    legacy = cache.path(texts).with_suffix(".npy")
    stored = np.arange(6 * 32, dtype=np.float32).reshape(6, 32)
    np.save(legacy, stored)
    cache._backbone = "must not be used"
    assert np.array_equal(cache(texts), stored)
    assert np.array_equal(load_features(cache.path(texts)), stored)
