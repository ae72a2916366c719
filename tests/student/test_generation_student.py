import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.student import GenerationTargets, train_student
from bayes_w2s.student.generation import SoftTokenCollator, TokenSoftSFTTrainer
from bayes_w2s.student.losses import Evidential
from bayes_w2s.weak.generators import GeneratorConfig

PAIRS = [("wake me at five am", '{"time": "five am"}'), ("play some jazz", '{"music_genre": "jazz"}'),
         ("what is the weather today", '{"date": "today"}'), ("hello there", "{}")] * 6


def _batch():
    rows = [{"input_ids": [5, 6, 7, 8], "completion_start": 2, "target_ids": [[7, 9], [8]],
             "target_probs": [[0.75, 0.25], [1.0]], "weight": 2.0},
            {"input_ids": [5, 6, 3], "completion_start": 2, "target_ids": [[3]], "target_probs": [[1.0]],
             "weight": 1.0}]
    return SoftTokenCollator(pad_token_id=0)(rows)


def test_collator_places_targets_at_the_tokens_they_predict():
    b = _batch()
    assert b["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 3, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert b["target_ids"][0, 2].tolist() == [7, 9] and b["target_probs"][0, 2].tolist() == [0.75, 0.25]
    assert b["target_probs"][0, :2].sum() == 0 and b["target_ids"][1, 2].tolist() == [3, -1]
    assert b["seq_weight"].tolist() == [2.0, 1.0]


class _Fixed(torch.nn.Module):
    """Returns given logits: the loss can be checked by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids=None, attention_mask=None):
        return type("Out", (), {"logits": self.logits})()


def _loss(token_loss, logits, batch):
    trainer = TokenSoftSFTTrainer.__new__(TokenSoftSFTTrainer)   # the loss only, no model setup
    trainer.token_loss, trainer.evidential = token_loss, Evidential(kl_max=0.5, anneal=0.0)
    trainer.state = type("S", (), {"global_step": 0, "max_steps": 1})()
    return trainer.compute_loss(_Fixed(logits), dict(batch))


def test_soft_token_xent_equals_its_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 10)
    lp = F.log_softmax(logits, -1)
    seq0 = (-(0.75 * lp[0, 1, 7] + 0.25 * lp[0, 1, 9]) - lp[0, 2, 8]) / 2    # predicted from positions 1, 2
    seq1 = -lp[1, 1, 3]
    expected = (2.0 * seq0 + 1.0 * seq1) / 3.0                                 # sequence-weighted mean
    assert float(_loss("xent", logits, _batch())) == pytest.approx(float(expected), rel=1e-6)


def test_token_weights_scale_each_tokens_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 10)
    lp = F.log_softmax(logits, -1)
    batch = _batch()
    assert batch["token_weight"][0, 2:].tolist() == [1.0, 1.0]      # rows without weights weigh 1
    batch["token_weight"][0, 2], batch["token_weight"][1, 2] = 0.5, 0.25
    seq0 = (-0.5 * (0.75 * lp[0, 1, 7] + 0.25 * lp[0, 1, 9]) - lp[0, 2, 8]) / 2
    seq1 = -0.25 * lp[1, 1, 3]
    assert float(_loss("xent", logits, batch)) == pytest.approx(float((2.0 * seq0 + seq1) / 3.0), rel=1e-6)


def test_posterior_targets_carry_token_weights_only_when_asked():
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.student.generation import posterior_targets
    from bayes_w2s.weak.generators import train_bpe_tokenizer

    texts, targets = map(list, zip(*PAIRS[:4]))
    hyps = [[t, t, "{}"] for t in targets]
    post = fit_posterior(hyps, model="word_reliability", method="em")
    tok = train_bpe_tokenizer([t for t in targets] * 10, 300)
    plain = posterior_targets(post, texts)
    weighted = posterior_targets(post, texts, token_weighted=True)
    ids, _, w = weighted.token_rows(tok, 0)
    assert plain.token_rows(tok, 0)[2] == [1.0] * len(ids) and min(w) < 1.0 and len(w) == len(ids)
    with pytest.raises(InvalidInputError, match=r"row indices must be in 0..3, got \[4\]"):   # was an IndexError
        weighted.subset([4])
    sub = weighted.subset([2, 0])
    assert sub.texts == [texts[2], texts[0]] and sub.token_weighted and sub.token_rows(tok, 1) == weighted.token_rows(tok, 0)
    with pytest.raises(InvalidInputError, match="come with the soft targets"):
        posterior_targets(post, texts, soft=False, token_weighted=True)


def test_token_edl_equals_the_classification_evidential_loss_per_token():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 10)
    edl = Evidential(kl_max=0.5, anneal=0.0)
    y = torch.zeros(3, 10)
    y[0, 7], y[0, 9], y[1, 8], y[2, 3] = 0.75, 0.25, 1.0, 1.0
    rows = edl.per_row(torch.stack([logits[0, 1], logits[0, 2], logits[1, 1]]), y)
    expected = (2.0 * (rows[0] + rows[1]) / 2 + rows[2]) / 3.0
    assert float(_loss("edl", logits, _batch())) == pytest.approx(float(expected), rel=1e-6)


def test_a_tiny_student_trains_and_changes_its_parameters():
    from transformers import set_seed

    from bayes_w2s.weak.generators import CausalLMGenerator

    texts, targets = map(list, zip(*PAIRS))
    cfg = GeneratorConfig(mode="full", epochs=1, batch_size=8, learning_rate=1e-3, max_new_tokens=8)
    set_seed(0)
    _, initial = CausalLMGenerator("gpt2-tiny-scratch", cfg).build(texts, targets)   # what seed 0 starts from
    soft = GenerationTargets(texts, targets, word_slots=[[{w: 0.8, "x": 0.2} for w in t.split()] for t in targets],
                             weights=np.linspace(0.1, 1, len(texts)))
    for loss in ("xent", "edl"):
        student = train_student("gpt2-tiny-scratch", _ds(texts, targets), soft, loss, config=cfg, seed=0)
        trained = student.generator.model.transformer.h[0].mlp.c_fc.weight
        assert trained.shape == initial.transformer.h[0].mlp.c_fc.weight.shape
        assert not torch.allclose(trained, initial.transformer.h[0].mlp.c_fc.weight)
        assert len(student.generate(["hello there"], progress=False)) == 1


def test_save_pretrained_round_trips_with_the_prompt_template(tmp_path):
    from transformers import AutoTokenizer

    from bayes_w2s.student import GenerationStudent
    from bayes_w2s.weak.generators import prompt_of

    texts, targets = map(list, zip(*PAIRS))
    cfg = GeneratorConfig(mode="lora", epochs=1, batch_size=8, learning_rate=1e-3, max_new_tokens=8, lora_r=4)
    student = train_student("gpt2-tiny-scratch", _ds(texts, targets), targets, "xent", config=cfg, seed=0)
    student.save_pretrained(tmp_path / "s")
    files = {p.name for p in (tmp_path / "s").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    again = GenerationStudent.from_pretrained(tmp_path / "s")
    probe = ["wake me at five am", "play some jazz"]
    assert again.generate(probe, n_best=2, progress=False) == student.generate(probe, n_best=2, progress=False)
    assert again.generate(_ds(probe, ["{}", "{}"]), progress=False) == again.generate(probe, progress=False)
    with pytest.raises(InvalidInputError, match="wrap a single text in a list"):   # was one prompt per character
        again.generate("play some jazz", progress=False)
    with pytest.raises(InvalidInputError, match="every text must be a string, got NoneType"):
        again.generate(["play", None], progress=False)
    assert (again.loss, again.targets, again.generator.config) == ("xent", "strings", cfg)
    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    chat = [{"role": "user", "content": "play some jazz"}]
    assert tok.apply_chat_template(chat, tokenize=False) == prompt_of("play some jazz")   # the template travels
    assert again.generator.model.config.prompt_template == "{text}\nslots:"


def _ds(texts, targets):
    from datasets import Dataset
    return Dataset.from_dict({"text": texts, "target": targets})


def test_errors():
    with pytest.raises(InvalidInputError, match="2 targets for 1 texts"):
        GenerationTargets(["a"], ["{}", "{}"])
    with pytest.raises(InvalidInputError, match="finite values"):
        GenerationTargets(["a"], ["{}"], weights=[np.nan])
    with pytest.raises(InvalidInputError, match="texts must be a list of strings, got str"):   # one row per character
        GenerationTargets("ab", "cd")
    with pytest.raises(InvalidInputError, match="not strings, e.g. row 0: None"):   # failed mid-training
        GenerationTargets(["a"], [None])
    with pytest.warns(RuntimeWarning, match="1 of 1 generation targets are not one JSON object"):   # said, kept
        GenerationTargets(["a"], ['{"a": "x", "y"}'])
    with pytest.raises(InvalidInputError, match="unknown generation loss"):
        train_student("gpt2-tiny-scratch", _ds(["a"], ["{}"]), ["{}"], "aux_conf")
    with pytest.raises(InvalidInputError, match="must be a WordPosterior"):
        train_student("gpt2-tiny-scratch", _ds(["a"], ["{}"]), np.zeros((1, 2)), "xent")
    texts = ["a", "b", "c", "d"]
    with pytest.raises(InvalidInputError,
                       match=r"3 generation target\(s\) are not one JSON object .*target 0: 'not json'"):
        train_student("gpt2-tiny-scratch", _ds(texts, ["{}"] * 4), ["not json", "", '{"time": "x"}', "[1, 2]"])
    for loss, match in (("weighted_xent", "weighs each target sequence: give weights="),
                        ("multi_weak", "weighs each target sequence"),
                        ("token_weighted_xent", "weighs tokens by a word posterior")):   # all trained plain xent
        with pytest.raises(InvalidInputError, match=match):
            train_student("gpt2-tiny-scratch", _ds(texts, ["{}"] * 4), ["{}"] * 4, loss)
    from bayes_w2s import TrainConfig
    with pytest.raises(InvalidInputError, match="a generation student takes a GeneratorConfig, got TrainConfig"):
        train_student("gpt2-tiny-scratch", _ds(texts, ["{}"] * 4), ["{}"] * 4, config=TrainConfig(mode="lora"))


def test_an_unconstrained_word_posterior_trains_on_well_formed_targets():
    """Word voting glued '{"a": "x", "y"}' together; train_student trained on it silently
    (the pipeline constrains its posteriors, the README's API example did not)."""
    from bayes_w2s import fit_posterior
    from bayes_w2s.weak import GeneratorConfig
    m0, m1, m2 = '{"a": "x"}', '{"a": "x", "b": "y"}', '{"a": "x", "c": "z"}'
    post = fit_posterior([[m0, m1, m2]] + [[m0] * 3] * 2 + [[m1] * 3] + [[m2] * 3], model="word_reliability")
    assert post.consensus[0] == '{"a": "x", "y"}'
    texts = ["x y z", "x", "x", "x y", "x z"]
    student = train_student("gpt2-tiny-scratch", _ds(texts, ["{}"] * 5), post, config=GeneratorConfig(mode="full",
                                                                                                     epochs=1))
    assert student.loss == "xent"
