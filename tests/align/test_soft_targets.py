import numpy as np
import pytest

from bayes_w2s.align.soft_targets import hard_targets, token_soft_targets
from bayes_w2s.errors import InvalidInputError
from bayes_w2s.weak.generators import train_bpe_tokenizer

CORPUS = ['{"time": "five am"}', '{"time": "nine am"}', '{"date": "today"}', "{}", "wake me up at five am",
          '{"place_name": "paris", "time": "nine pm"}'] * 20


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(CORPUS, 300)


def _check(ids, targets):
    for tid, (cands, probs) in zip(ids, targets):
        assert tid in cands and abs(sum(probs) - 1) < 1e-9 and min(probs) > 0


def test_certain_slots_give_one_hot_targets_equal_to_hard_ones(tok):
    slots = [{'{"time":': 1.0}, {'"five': 1.0}, {'am"}': 1.0}]
    ids, targets = token_soft_targets(tok, slots)
    assert (ids, targets) == hard_targets(tok, '{"time": "five am"}')
    assert tok.decode(ids[:-1]) == ' {"time": "five am"}' and ids[-1] == tok.eos_token_id


def test_alternatives_and_eps_mass_go_where_the_trie_says(tok):
    slots = [{'{"time":': 1.0}, {'"five': 0.6, '"nine': 0.3, "": 0.1}, {'am"}': 1.0}]
    ids, targets = token_soft_targets(tok, slots)
    _check(ids, targets)
    five, nine, am = (tok(" " + w)["input_ids"] for w in ('"five', '"nine', 'am"}'))
    start = len(tok(' {"time":')["input_ids"])            # first token of the uncertain word
    dist = dict(zip(*targets[start]))
    if five[0] != nine[0]:
        assert dist[five[0]] == pytest.approx(0.6) and dist[nine[0]] == pytest.approx(0.3)
    else:                                                  # shared first token: they split later
        assert dist[five[0]] == pytest.approx(0.9)
    assert dist[am[0]] == pytest.approx(0.1)               # ε: the next word's first token instead


def test_eps_won_slots_insert_their_alternatives(tok):
    slots = [{'{"date":': 1.0}, {'"today"}': 1.0}, {"": 0.7, "x": 0.3}]
    ids, targets = token_soft_targets(tok, slots)
    _check(ids, targets)
    last = dict(zip(*targets[-1]))
    assert last[tok.eos_token_id] == pytest.approx(0.7) and last[tok(" x")["input_ids"][0]] == pytest.approx(0.3)
    assert token_soft_targets(tok, [{"": 1.0}]) == ([tok.eos_token_id], [([tok.eos_token_id], [1.0])])


def test_top_k_keeps_the_teacher_forced_token(tok):
    slots = [{f"w{i}": 0.1 for i in range(9)} | {"w9": 0.1}]
    ids, targets = token_soft_targets(tok, slots, top_k=3)
    _check(ids, targets)
    assert all(len(c) <= 3 for c, _ in targets)


@pytest.mark.real_cache
def test_on_the_real_smollm2_tokenizer():
    from transformers import AutoTokenizer

    from bayes_w2s.cards import resolve_weights
    try:
        tok = AutoTokenizer.from_pretrained(resolve_weights("smollm2-135m"))
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(str(err))
    slots = [{'{"time":': 0.8, '{"date":': 0.2}, {'"five': 0.7, '"nine': 0.2, "": 0.1}, {'am"}': 0.9, 'pm"}': 0.1}]
    ids, targets = token_soft_targets(tok, slots)
    _check(ids, targets)
    assert tok.decode(ids) == ' {"time": "five am"}' + tok.eos_token
    spread = [t for t in targets if len(t[0]) > 1]
    assert len(spread) >= 3 and np.isclose(max(max(p) for _, p in spread), 0.9)


def test_a_path_teacher_forces_a_non_argmax_word(tok):
    slots = [{'{"time":': 1.0}, {'"five': 0.6, '"nine': 0.4}, {'am"}': 1.0}]
    ids, targets = token_soft_targets(tok, slots, path=['{"time":', '"nine', 'am"}'])
    _check(ids, targets)
    assert tok.decode(ids[:-1]) == ' {"time": "nine am"}'
    with pytest.raises(Exception, match="one of each slot's candidate words"):
        token_soft_targets(tok, slots, path=['{"time":', '"ten', 'am"}'])


def test_token_weights_are_the_posterior_probability_of_each_tokens_word(tok):
    slots = [{'{"time":': 1.0}, {'"five': 0.6, '"nine': 0.4}, {'am"}': 0.9, 'pm"}': 0.1}]
    ids, targets, weights = token_soft_targets(tok, slots, return_weights=True)
    assert (ids, targets) == token_soft_targets(tok, slots)          # the same targets, weights beside them
    n_key, n_five = (len(tok(" " + w)["input_ids"]) for w in ('{"time":', '"five'))
    assert len(weights) == len(ids) and weights[-1] == 1.0          # EOS: structure, full weight
    assert weights[:n_key] == [1.0] * n_key and weights[n_key:n_key + n_five] == [0.6] * n_five
    assert set(weights[n_key + n_five:-1]) == {0.9}
    assert token_soft_targets(tok, [{"": 1.0}], return_weights=True)[2] == [1.0]


@pytest.mark.parametrize("slots, top_k, message", [
    ([{}], 8, "slot 0 must be a non-empty"),
    ([{"a b": 0.9, "c": 0.1}], 8, r"'a b' is not one word"),
    ([{"\u2028": 1.0}], 8, "is not one word"),
    ([{"a": float("inf")}], 8, "must be finite and ≥ 0"),
    ([{"a": float("nan")}], 8, "must be finite and ≥ 0"),
    ([{"a": 0.5, "b": -0.5}], 8, "must be finite and ≥ 0"),
    ([{"a": 0.0}], 8, "sum to 0"),
    ([{"a": 1.0}], 0, "top_k must be an integer ≥ 1"),
])
def test_bad_slots_are_clear_errors(tok, slots, top_k, message):
    with pytest.raises(InvalidInputError, match=message):
        token_soft_targets(tok, slots, top_k=top_k)
