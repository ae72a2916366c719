"""Property tests of the word bridge on the real tokenizers of the offline model cards."""
import numpy as np
import pytest

from bayes_w2s.align import (WordScores, generated_to_words, join_words, offsets_by_decoding, offsets_from_tokenizer,
                             token_to_word, tokens_to_words, word_spans, words_of, words_to_tokens)
from bayes_w2s.errors import InvalidInputError

TEXTS = ['{"time": "five am", "date": "tomorrow"}', "{}",
         '{"currency_name": ["american dollar", "japanese yen"]}',
         '{"place_name": "são paulo", "person": "o\'neill"}', '{"event_name": "meeting-2pm @ 10:30"}',
         "wake me up at  five\tam"]
CARDS = ["smollm2-135m", "gemma3-270m", "minilm-l6", "mpnet-base"]


@pytest.fixture(scope="module", params=CARDS)
def tokenizer(request):
    from transformers import AutoTokenizer

    from bayes_w2s.cards import resolve_weights
    try:
        path = resolve_weights(request.param)
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(f"{request.param} offline weights unavailable: {err}")
    return AutoTokenizer.from_pretrained(path)


@pytest.mark.real_cache
@pytest.mark.parametrize("text", TEXTS)
def test_every_character_in_exactly_one_word_and_mass_conserved(tokenizer, text):
    ids, offsets = offsets_from_tokenizer(tokenizer, text)
    owner = token_to_word(text, offsets)
    words = words_of(text)
    # every word's characters are covered by tokens assigned to that word only
    for w, (start, end) in enumerate(word_spans(text)):
        covered = set()
        for t in np.flatnonzero(owner == w):
            covered.update(range(*offsets[t]))
        assert set(range(start, end)) <= covered, (words[w], tokenizer.convert_ids_to_tokens(ids))
    assert (owner >= 0).all()                       # no special tokens were added
    logprobs = -np.random.default_rng(0).exponential(size=len(ids))
    scores = tokens_to_words(text, offsets, logprobs)
    assert scores.words == words
    assert scores.total == pytest.approx(logprobs.sum(), abs=1e-12)
    assert np.all(np.bincount(owner, minlength=len(words)) >= 1)    # no word without a token


@pytest.mark.real_cache
@pytest.mark.parametrize("text", TEXTS[:5])
def test_generated_ids_round_trip(tokenizer, text):
    if type(tokenizer).__name__ in ("BertTokenizer", "MPNetTokenizer", "BertTokenizerFast", "MPNetTokenizerFast"):
        pytest.skip("WordPiece lower-cases and splits punctuation: decode is not the identity")
    ids, _ = offsets_from_tokenizer(tokenizer, text)
    eos = tokenizer.eos_token_id
    logprobs = -np.random.default_rng(1).exponential(size=len(ids) + 1)
    scores = generated_to_words(tokenizer, ids + [eos], logprobs, eos_token_id=eos)
    assert scores.text == text                            # exact round trip of the text
    assert scores.rest == pytest.approx(logprobs[-1])     # EOS belongs to no word
    assert scores.total == pytest.approx(logprobs.sum())
    # decoding-based offsets agree with the tokenizer's own for what it would produce
    decoded, dec_offsets = offsets_by_decoding(tokenizer, ids)
    assert decoded == text
    np.testing.assert_array_equal(token_to_word(text, dec_offsets), token_to_word(text, _))
    strong_ids, owner = words_to_tokens(tokenizer, words_of(text))
    assert strong_ids == ids and tokenizer.decode(strong_ids) == join_words(words_of(text))


def test_errors_are_clear():
    class Slow:
        is_fast = False
    with pytest.raises(InvalidInputError, match="offsets_by_decoding"):
        offsets_from_tokenizer(Slow(), "a b")
    with pytest.raises(InvalidInputError, match=r"2 token offsets but token log-probs of shape \[1\]"):
        tokens_to_words("a b", [(0, 1), (2, 3)], [0.1])
    with pytest.raises(InvalidInputError, match="NaN"):
        tokens_to_words("a", [(0, 1)], [np.nan])
    with pytest.raises(InvalidInputError, match="infinite log-prob"):
        tokens_to_words("a b", [(0, 1), (2, 3)], [-np.inf, -1.0])
    with pytest.raises(InvalidInputError, match="positive log-prob"):
        tokens_to_words("a", [(0, 1)], [2.0])
    with pytest.raises(InvalidInputError, match="outside the 3 characters"):
        tokens_to_words("a b", [(0, 1), (20, 30)], [-1.0, -1.0])
    with pytest.raises(InvalidInputError, match="one log-prob per token"):
        tokens_to_words("a", [(0, 1)], [[-1.0]])
    with pytest.raises(InvalidInputError, match="infinite log-prob in the hypothesis 'a'"):
        WordScores(["a"], [-np.inf])


@pytest.mark.real_cache
def test_bytes_of_one_character_go_to_its_word(tokenizer):
    if type(tokenizer).__name__ in ("BertTokenizer", "MPNetTokenizer", "BertTokenizerFast", "MPNetTokenizerFast"):
        pytest.skip("WordPiece lower-cases and splits punctuation: decode is not the identity")
    text = '{"place": "東京 café 🎉"}'
    ids, offsets = offsets_from_tokenizer(tokenizer, text)
    logprobs = -np.random.default_rng(2).exponential(size=len(ids))
    generated = generated_to_words(tokenizer, ids, logprobs)
    assert generated.words == words_of(text) and generated.rest == 0.0     # no token left outside a word
    np.testing.assert_allclose(generated.logprobs, tokens_to_words(text, offsets, logprobs).logprobs)
    with pytest.raises(InvalidInputError, match="decode to"):
        offsets_by_decoding(tokenizer, ids, text + " more")


def test_whitespace_tokens_join_the_next_word_and_empty_tokens_none():
    text = "ab  cd"
    offsets = [(0, 2), (2, 4), (4, 6), (6, 6)]
    np.testing.assert_array_equal(token_to_word(text, offsets), [0, 1, 1, -1])
    assert tokens_to_words("", [], []).words == []
