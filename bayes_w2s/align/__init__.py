"""The word bridge between tokenizers (:mod:`.bridge`) and the word confusion network
that aligns weak hypotheses (:mod:`.confusion_network`)."""
from .bridge import (WordScores, generated_to_words, join_words, offsets_by_decoding, offsets_from_tokenizer,
                     token_to_word, tokens_to_words, word_spans, words_of, words_to_tokens)

__all__ = ["WordScores", "generated_to_words", "join_words", "offsets_by_decoding", "offsets_from_tokenizer",
           "token_to_word", "tokens_to_words", "word_spans", "words_of", "words_to_tokens"]
