import numpy as np
import pytest
import torch

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.student.decoding import (DONE, NoEmptyLogitsProcessor, SlotGrammar, SlotJSONLogitsProcessor,
                                        TokenVocabulary, no_slot_threshold, slot_processors)
from bayes_w2s.tasks.generation import parse_slots, render_slots

TYPES = ["date", "time", "event_name", "place_name"]
TEXT = "set alarm on twenty fifth may at five pm"


@pytest.mark.parametrize("target, ok", [
    (" {}", True), ("{}", True),
    (' {"date": ["twenty fifth", "may"], "time": "five pm"}', True),
    (' {"date": "twenty"}', True), (' {"event_name": "set alarm on twenty fifth may at five pm"}', True),
    (' {"date": "fift"}', False),                    # not whole words
    (' {"date": "france"}', False),                  # not in the utterance
    (' {"dat": "may"}', False), (' {"weather": "may"}', False),        # unknown types
    (' {"date": "may", "date": "may"}', False),      # a repeated type is a list
    (' {"date": "may at  five"}', False), (' {"date": ""}', False), ('  {}', False),
    (' {"date": "may"} x', False), (' {"date": "may",}', False)])
def test_grammar_accepts_exactly_the_targets_of_the_utterance(target, ok):
    assert SlotGrammar(TEXT, TYPES).accepts(target) is ok


def test_every_rendered_target_of_word_spans_is_accepted():
    rng = np.random.default_rng(0)
    words = TEXT.split()
    for _ in range(50):
        ents = []
        for _ in range(rng.integers(0, 4)):
            a = int(rng.integers(0, len(words)))
            b = int(rng.integers(a + 1, len(words) + 1))
            ents.append((TYPES[rng.integers(0, len(TYPES))], " ".join(words[a:b])))
        assert SlotGrammar(TEXT, TYPES).accepts(" " + render_slots(ents))


def test_empty_object_can_be_forbidden():
    g = SlotGrammar(TEXT, TYPES, allow_empty=False)
    assert not g.accepts(" {}") and g.accepts(' {"time": "five pm"}')
    with pytest.raises(InvalidInputError, match="slot types"):
        SlotGrammar(TEXT, [])


@pytest.fixture(scope="module")
def bpe():
    from bayes_w2s.weak.generators import train_bpe_tokenizer
    corpus = [f'{TEXT}\nslots: {{"date": "may", "time": "five pm"}}', 'play jazz\nslots: {"event_name": ["jazz"]}',
              "hello\nslots: {}"] * 20
    return train_bpe_tokenizer(corpus, 400)


def test_allowed_tokens_are_exactly_those_the_automaton_accepts(bpe):
    vocab = TokenVocabulary(bpe)
    g = SlotGrammar(TEXT, TYPES)
    for prefix in ("", " {", ' {"', ' {"date": "twe', ' {"date": "twenty', ' {"time": "five pm"}'):
        state = g.run(prefix)
        allowed = set(g.allowed(state, vocab).tolist())
        brute = {i for i, s in enumerate(vocab.strings) if s and g.run(s, state) is not None}
        if state == DONE:
            brute = {bpe.eos_token_id}
        assert allowed == brute and allowed


def test_constrained_generation_of_a_random_model_is_always_a_valid_target(bpe):
    """A random-weight GPT-2 writes garbage; under the processor it writes well-formed slot
    JSON with known types and fillers copied from the utterance."""
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_layer=1, n_head=2, n_embd=16,
                                       eos_token_id=bpe.eos_token_id, bos_token_id=bpe.eos_token_id)).eval()
    texts = [TEXT, "play some jazz at the park", "hello"]
    processors = slot_processors(bpe, texts, TYPES, forbid_empty=[True, True, False])
    bpe.padding_side = "left"
    enc = bpe([t + "\nslots:" for t in texts], return_tensors="pt", padding=True)
    for beams in (1, 3):
        out = model.generate(**enc, max_new_tokens=60, num_beams=beams, num_return_sequences=beams, do_sample=False,
                             pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id,
                             logits_processor=LogitsProcessorList(processors(np.arange(3), enc["input_ids"].shape[1],
                                                                             beams)))
        for row, seq in enumerate(out[:, enc["input_ids"].shape[1]:]):
            text = texts[row // beams]
            written = bpe.decode(seq, skip_special_tokens=True)
            if SlotGrammar(text, TYPES).run(written) != DONE:      # cut by max_new_tokens: a valid prefix
                assert SlotGrammar(text, TYPES).run(written) is not None
                continue
            entities, ok = parse_slots(written)
            assert ok and all(e["type"] in TYPES and f" {e['filler']} " in f" {text} " for e in entities)
            assert entities or row // beams == 2                  # {} only where it is allowed


def test_no_empty_processor_bans_the_empty_object_with_whitespace_inside(bpe):
    """``{ }`` parses as the same empty object as ``{}``; it got through the ban."""
    vocab = TokenVocabulary(bpe)
    proc = NoEmptyLogitsProcessor(vocab, prompt_width=0, forbid=[True, False])
    for written in ("", " {", " { ", "{\n"):
        ids = bpe(written, add_special_tokens=False)["input_ids"]
        scores = proc(torch.tensor([ids, ids]), torch.zeros(2, len(bpe)))
        banned = {vocab.strings[i] for i in torch.nonzero(scores[0] == float("-inf")).flatten().tolist()}
        closing = [s for s in ("}", " }", " {}", "{}")
                   if s in vocab.strings and "".join((written + s).split()).startswith("{}")]
        assert closing
        assert set(closing) <= banned and all("".join((written + s).split()).startswith("{}") for s in banned)
        assert torch.equal(scores[1], torch.zeros(len(bpe)))               # a row allowed to say {} is untouched
    for s, ids in ((s, bpe(s, add_special_tokens=False)["input_ids"]) for s in (' {"', " { \"")):
        assert not (proc(torch.tensor([ids]), torch.zeros(1, len(bpe)))[0] == float("-inf")).any()


def test_processor_leaves_finished_rows_alone(bpe):
    vocab = TokenVocabulary(bpe)
    proc = SlotJSONLogitsProcessor(vocab, [SlotGrammar(TEXT, TYPES)], prompt_width=1)
    scores = torch.zeros(1, len(bpe))
    ids = torch.tensor([[0, bpe.eos_token_id]])
    assert torch.equal(proc(ids, scores.clone()), scores)


def test_no_slot_threshold_gives_the_rate_on_the_calibration_items():
    scores = np.random.default_rng(0).normal(size=1000)
    for rate in (0.1, 0.3, 0.5):
        assert np.mean(scores >= no_slot_threshold(scores, rate)) == pytest.approx(rate, abs=0.002)
    assert not np.any(scores >= no_slot_threshold(scores, 0.0))
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        no_slot_threshold(scores, 1.5)
    for bad in (np.array([]), np.array([np.nan, 1.0])):   # was an IndexError, and a NaN threshold no item reaches
        with pytest.raises(InvalidInputError, match="non-empty 1-D array of scores without NaN"):
            no_slot_threshold(bad, 0.5)


def test_close_finishes_a_prefix_cut_by_the_length_limit():
    g = SlotGrammar(TEXT, TYPES)
    assert g.close(' {"date": "may", "time": "five') == ' {"date": "may"}'
    assert g.close(' {"date": ["twenty fifth", "may", "fi') == ' {"date": ["twenty fifth", "may"]}'
    assert g.close(' {"date": "may"}') == ' {"date": "may"}' and g.close(' {"da') == " {}" and g.close("") == " {}"
    assert g.close(' {"time": "five pm"} trailing') == ' {"time": "five pm"}'
    for cut in (' {"date": "may", "ti', ' {"date": ["may", "five'):
        assert g.accepts(g.close(cut))
    from bayes_w2s.student.decoding import close_all
    with pytest.raises(InvalidInputError, match="1 outputs for 2 texts"):   # zip cut it short
        close_all([TEXT, TEXT], ["{}"], TYPES)
    with pytest.raises(InvalidInputError, match="got one string 'date'"):   # its letters became slot types
        SlotGrammar(TEXT, "date")
