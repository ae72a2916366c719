import gzip
import itertools

import numpy as np
import pytest

from bayes_w2s.errors import CorruptCacheError, InvalidInputError
from bayes_w2s.tasks.generation import parse_slots
from bayes_w2s.weak import Hypothesis, WeakHypotheses
from bayes_w2s.weak.generators import (CausalLMGenerator, GeneratorConfig, TaggerGenerator, entities_to_bio,
                                       kbest_sequences, render_tags)

PAIRS = [("wake me at five am", '{"time": "five am"}'), ("play some jazz", '{"music_genre": "jazz"}'),
         ("what is the weather today", '{"date": "today"}'), ("hello there", "{}"),
         ("set an alarm for nine pm tomorrow", '{"time": "nine pm", "date": "tomorrow"}')] * 8


def test_kbest_is_exact():
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(3), size=4))
    brute = sorted(((sum(logp[i, s] for i, s in enumerate(seq)), seq)
                    for seq in itertools.product(range(3), repeat=4)), reverse=True)[:5]
    got = kbest_sequences(logp, 5)
    assert [s for _, s in got] == [s for _, s in brute]
    np.testing.assert_allclose([v for v, _ in got], [v for v, _ in brute])


def test_entities_to_bio_and_render_round_trip():
    words = "remind me to call anna and anna at five am".split()
    ents = [{"type": "person", "filler": "anna"}, {"type": "person", "filler": "anna"},
            {"type": "time", "filler": "five am"}, {"type": "place_name", "filler": "paris"}]
    tags, missing = entities_to_bio(words, ents)
    assert missing == 1 and tags[4] == "B-person" and tags[6] == "B-person" and tags[8:] == ["B-time", "I-time"]
    lp = -np.arange(1, len(words) + 1) / 10
    hyp = render_tags(words, tags, lp)
    assert hyp.text == '{"person": ["anna", "anna"], "time": "five am"}'
    assert parse_slots(hyp.text)[0] == ents[:3]
    assert hyp.logprob == pytest.approx(lp.sum())          # the tag sequence's exact log-prob
    # the key carries its entity's B-tag log-prob; each filler word its own tag's
    assert dict(zip(hyp.words, hyp.logprobs))['"five'] == pytest.approx(lp[8])
    assert dict(zip(hyp.words, hyp.logprobs))['am"}'] == pytest.approx(lp[9])
    empty = render_tags(["hi"], ["O"], np.array([-0.2]))
    assert empty.text == "{}" and empty.logprob == pytest.approx(-0.2)


def test_weak_hypotheses_round_trip_and_corrupt_cache(tmp_path):
    h = [[[Hypothesis(["{}"], [-0.1], -0.05, 2)], [Hypothesis(['{"a":', '"b"}'], [-1.0, -0.5], 0.0, 4)]]]
    wh = WeakHypotheses(h, ["m1", "m2"], ["x"])
    wh.save(tmp_path / "h.json.gz")
    back = WeakHypotheses.load(tmp_path / "h.json.gz")
    assert back.best(1) == ['{"a": "b"}'] and back.nbest[0][0][0].logprob == pytest.approx(-0.15)
    assert back.word_hypotheses()[0][1].words == ['{"a":', '"b"}']
    with gzip.open(tmp_path / "bad.json.gz", "wt") as fh:
        fh.write('{"nbest": [')
    with pytest.raises(CorruptCacheError, match="bad.json.gz"):
        WeakHypotheses.load(tmp_path / "bad.json.gz")
    with pytest.raises(InvalidInputError, match="gave no hypothesis"):
        WeakHypotheses([[[], h[0][1]]], ["m1", "m2"], ["x"])
    with pytest.raises(InvalidInputError, match="NaN"):
        Hypothesis(["a"], [np.nan])


def test_scratch_causal_lm_plumbing(tmp_path):
    texts, targets = zip(*PAIRS)
    cfg = GeneratorConfig(mode="full", epochs=2, batch_size=8, learning_rate=1e-3, n_best=3, max_new_tokens=12)
    gen = CausalLMGenerator("gpt2-tiny-scratch", cfg).fit(list(texts), list(targets))
    out = gen.generate(["wake me at five am", "hello there"], progress=False)
    assert len(out) == 2 and all(1 <= len(h) <= 3 for h in out)
    for hyps in out:
        assert [h.logprob for h in hyps] == sorted((h.logprob for h in hyps), reverse=True)
        assert all(np.isfinite(h.logprob) and h.logprob <= 0 for h in hyps)
    scores = gen.score(["wake me at five am"], [['{"time": "five am"}', "{}"]])
    assert scores[0].shape == (2,) and np.all(scores[0] < 0)
    with pytest.raises(InvalidInputError, match="for taggers"):
        CausalLMGenerator("gpt2-tiny-scratch", GeneratorConfig(mode="head")).fit(list(texts), list(targets))
    # a saved generator (safetensors + its own BPE) loads back and scores identically
    gen.save(tmp_path / "gen")
    assert (tmp_path / "gen" / "model.safetensors").exists() and not (tmp_path / "gen.tmp").exists()
    again = CausalLMGenerator("gpt2-tiny-scratch", cfg).load(tmp_path / "gen")
    np.testing.assert_allclose(again.score(["wake me at five am"], [['{"time": "five am"}', "{}"]])[0], scores[0],
                               rtol=1e-5)
    (tmp_path / "gen" / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(CorruptCacheError, match="delete it"):
        CausalLMGenerator("gpt2-tiny-scratch", cfg).load(tmp_path / "gen")


def test_tagger_plumbing(tiny_encoder):
    texts, targets = zip(*PAIRS)
    types = ["time", "music_genre", "date"]
    gen = TaggerGenerator(tiny_encoder, types, GeneratorConfig(mode="full", epochs=1, batch_size=8, n_best=3))
    gen.fit(list(texts), list(targets))
    lp = gen.tag_logprobs(["wake me at five am"])[0]
    assert lp.shape == (5, 1 + 2 * len(types)) and np.allclose(np.exp(lp).sum(-1), 1)
    hyps = gen.generate(["wake me at five am"], progress=False)[0]
    assert all(parse_slots(h.text)[1] for h in hyps)
    score = gen.score(["wake me at five am"], [['{"time": "five am"}', '{"colour": "red"}']])[0]
    assert score[1] < score[0]              # an unknown slot type is penalised
    with pytest.raises(InvalidInputError, match="outside the tagger"):
        TaggerGenerator(tiny_encoder, ["time"], GeneratorConfig(epochs=1)).fit(["play jazz"], ['{"music_genre": "jazz"}'])


def test_config_errors():
    with pytest.raises(InvalidInputError, match="unknown generator mode"):
        GeneratorConfig(mode="prefix")
    with pytest.raises(InvalidInputError, match="n_best must be positive"):
        GeneratorConfig(n_best=0)
