import pytest

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.metrics import per_slot_type, slu_scores
from bayes_w2s.metrics.slu import char_distance, word_distance


def test_distances_follow_the_official_definitions():
    assert word_distance("five am", "five pm") == 0.5          # WER: 1 substitution / 2 gold words
    assert word_distance("five am", "at five am today") == 1.0  # 2 insertions / 2 words (may exceed 1)
    assert char_distance("five am", "five pm") == pytest.approx(1 / 7)
    assert char_distance("bob", "anna") == pytest.approx(4 / 4)


def test_hand_worked_near_miss():
    gold = '{"time": "five am", "date": "tomorrow"}'
    pred = '{"time": "five pm", "date": "tomorrow"}'
    s = slu_scores([pred], [gold])
    # word table: TP 2, FP = FN = 0.5 → F1 0.8; char table: TP 2, FP = FN = 1/7 → F1 14/15
    assert s["word_f1"] == pytest.approx(0.8)
    assert s["char_f1"] == pytest.approx(14 / 15)
    # SLU-F1 = F1 of the summed tables: TP 4, FP = FN = 0.5 + 1/7
    assert s["slu_f1"] == pytest.approx(4 / (4 + 0.5 + 1 / 7))
    assert s["span_f1"] == pytest.approx(0.5) and s["exact_match"] == 0.0


def test_repeated_types_wrong_type_and_missing():
    gold = '{"person": ["anna", "bob"]}'
    pred = '{"person": "bob", "place_name": "paris"}'
    s = slu_scores([pred], [gold])
    # "bob" pairs with gold "bob" (distance 0), "paris" is a false positive, "anna" is missed
    assert s["slu_precision"] == pytest.approx(0.5) and s["slu_recall"] == pytest.approx(0.5)
    assert s["slu_f1"] == pytest.approx(0.5)
    per_type = per_slot_type([pred], [gold])
    assert per_type["person"]["precision"] == 1.0 and per_type["person"]["recall"] == 0.5
    assert per_type["place_name"]["precision"] == 0.0


def test_corpus_counts_are_pooled_and_malformed_scores_empty():
    refs = ['{"time": "five am"}', "{}", '{"date": "today"}']
    preds = ['{"time": "five', "{}", '{"date": "today"}']
    s = slu_scores(preds, refs)
    assert s["malformed"] == pytest.approx(1 / 3) and s["no_slots"] == pytest.approx(2 / 3)
    assert s["slu_precision"] == 1.0 and s["slu_recall"] == pytest.approx(0.5)
    assert s["exact_match"] == pytest.approx(2 / 3)
    assert slu_scores(["{}"], ["{}"])["slu_f1"] == 0.0   # no entities anywhere: F1 is 0, as officially


def test_errors():
    with pytest.raises(InvalidInputError, match="2 predictions for 1 references"):
        slu_scores(["{}", "{}"], ["{}"])
    with pytest.raises(InvalidInputError, match="reference 0 is not a JSON object"):
        slu_scores(["{}"], ["oops"])
    with pytest.raises(InvalidInputError, match="empty"):
        slu_scores([], [])


def test_reference_problems_are_named_before_any_scoring():
    with pytest.raises(InvalidInputError, match="reference 1 has an empty slot filler"):
        slu_scores(["{}", "{}"], ['{"a": "b"}', '{"time": ""}'])    # no prediction of that type: still an error
    with pytest.raises(InvalidInputError, match="predictions must be a list of strings"):
        slu_scores("{}", "{}")
    with pytest.raises(InvalidInputError, match="2 predictions for 1 references"):
        per_slot_type(["{}", "{}"], ['{"a": "b"}'])
    with pytest.raises(InvalidInputError, match="reference 0 is not a JSON object"):
        per_slot_type(["{}"], ['{"a": '])


def test_a_key_written_twice_names_two_entities_and_deep_nesting_is_malformed():
    both = slu_scores(['{"time": "five am", "time": "six"}'], ['{"time": ["five am", "six"]}'])
    assert both["slu_f1"] == 1.0 and both["exact_match"] == 1.0
    deep = slu_scores(["[" * 5000, '{"a": ' + "[" * 5000], ['{"a": "b"}', '{"a": "b"}'])
    assert deep["malformed"] == 1.0 and deep["slu_f1"] == 0.0


def test_a_drawn_reference_with_an_empty_filler_ranks_instead_of_failing():
    from bayes_w2s.metrics import item_slu_f1
    assert item_slu_f1('{"time": "five am"}', '{"time": "", "date": "today"}') == 0.0
    assert item_slu_f1('{"date": "today"}', '{"time": "", "date": "today"}') == 1.0


def test_references_must_be_one_json_object_with_nothing_after_it():
    with pytest.raises(InvalidInputError, match="reference 0 is not a JSON object"):
        slu_scores(["{}"], ['{"a": "b"} garbage'])        # a prediction may run on; a reference may not
    assert slu_scores(['{"a": "b"} and more'], ['{"a": "b"}'])["slu_f1"] == 1.0
