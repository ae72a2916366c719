import numpy as np
import pytest

from bayes_w2s.align.confusion_network import EPS, align_hypotheses
from bayes_w2s.errors import InvalidInputError


def test_rover_alignment_of_substitution_deletion_insertion():
    cn = align_hypotheses([["wake", "me", "at", "five"],
                           ["wake", "at", "five", "am"],      # deletion of "me", insertion of "am"
                           ["make", "me", "at", "nine"]])     # two substitutions
    assert cn.words == [["wake", "wake", "make"], ["me", EPS, "me"], ["at", "at", "at"],
                        ["five", "five", "nine"], [EPS, "am", EPS]]
    assert cn.candidates(0) == ["wake", "make"] and cn.candidates(1) == ["me", EPS]
    for m, h in enumerate([["wake", "me", "at", "five"], ["wake", "at", "five", "am"], ["make", "me", "at", "nine"]]):
        assert cn.hypothesis(m) == h        # every hypothesis is recovered from the network


def test_scores_travel_with_their_words_and_empty_hypotheses_vote_eps():
    cn = align_hypotheses([["a", "b"], [], ["a", "c"]],
                          [np.array([-0.1, -0.2]), np.array([]), np.array([-1.0, -2.0])])
    assert cn.words == [["a", EPS, "a"], ["b", EPS, "c"]]
    np.testing.assert_allclose(cn.logprobs, [[-0.1, np.nan, -1.0], [-0.2, np.nan, -2.0]])
    assert align_hypotheses([[], []]).num_slots == 0


def test_errors():
    with pytest.raises(InvalidInputError, match="no hypotheses"):
        align_hypotheses([])
    with pytest.raises(InvalidInputError, match="hypothesis 1 has 1 words but 2"):
        align_hypotheses([["a"], ["b"]], [np.zeros(1), np.zeros(2)])
    with pytest.raises(InvalidInputError, match="whitespace"):
        align_hypotheses([["a b"], ["a"]])
