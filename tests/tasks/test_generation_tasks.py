import json

import pytest

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.tasks import GenerationTask, load_task
from bayes_w2s.tasks.generation import (bio_to_entities, check_targets, parse_slots, parse_slurp_annotation,
                                        render_slots, slot_types_of)


def test_slurp_annotation_to_json_target():
    ents = parse_slurp_annotation("siri what is one [currency_name : american dollar] in "
                                  "[currency_name : japanese  yen] at [time : five am]")
    assert ents == [("currency_name", "american dollar"), ("currency_name", "japanese yen"), ("time", "five am")]
    target = render_slots(ents)
    assert target == '{"currency_name": ["american dollar", "japanese yen"], "time": "five am"}'
    assert render_slots([]) == "{}"
    entities, ok = parse_slots(target)
    assert ok and [(e["type"], e["filler"]) for e in entities] == ents


@pytest.mark.parametrize("text", ['{"time": "five', "", "[]", '{"time": 5}', '{"time": []}', "null", "five am"])
def test_malformed_generations_parse_as_empty(text):
    assert parse_slots(text) == ([], False)


def test_trailing_text_after_the_object_is_ignored():
    assert parse_slots(' {"date": "today"} and then some')[0] == [{"type": "date", "filler": "today"}]


def test_bio_to_entities():
    words = "play hell house song by the doors".split()
    tags = "O B-object_name I-object_name B-object_type O B-artist I-artist".split()
    assert bio_to_entities(words, tags) == [("object_name", "hell house"), ("object_type", "song"),
                                             ("artist", "the doors")]
    assert bio_to_entities(["a", "b"], ["I-x", "I-y"]) == [("x", "a"), ("y", "b")]
    with pytest.raises(InvalidInputError, match="2 words but 1"):
        bio_to_entities(["a", "b"], ["O"])


def test_check_targets_names_the_problem():
    check_targets(['{"time": "five am"}', "{}"], ["time"])
    with pytest.raises(InvalidInputError, match=r"unknown slot type\(s\) \['colour'\]"):
        check_targets(['{"colour": "red"}'], ["time"])
    with pytest.raises(InvalidInputError, match="not a JSON object"):
        check_targets(["five am"], ["time"])
    with pytest.raises(InvalidInputError, match="empty slot filler"):
        check_targets(['{"time": ""}'], ["time"])
    with pytest.raises(InvalidInputError, match="not a JSON object"):   # trailing junk, as is_well_formed
        check_targets(['{"time": "five am"} garbage'], ["time"])
    with pytest.raises(InvalidInputError, match="got one string"):      # was read per character
        check_targets('{}', ["time"])


def test_slurp_offline_resplit(data_dir):
    sizes = {"weak_train": 500, "strong_train": 700, "test": 400}
    a = load_task("slurp", data_dir=data_dir, seed=1, sizes=sizes)
    b = load_task("slurp", data_dir=data_dir, seed=1, sizes=sizes)
    assert isinstance(a, GenerationTask) and a.kind == "generation"
    assert a.sizes() == sizes and a.test["id"] == b.test["id"]
    ids = [set(a.split(s)["id"]) for s in ("weak_train", "strong_train", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # devel and test are pooled, so both sources appear in every split
    assert {i.split("-")[1] for i in a.test["id"]} == {"devel", "test"}
    check_targets(a.weak_train["target"], a.slot_types)
    assert "time" in a.slot_types and "date" in a.slot_types
    everything = load_task("slurp", data_dir=data_dir, seed=0, sizes={"weak_train": 10, "strong_train": None,
                                                                       "test": 10})
    assert sum(everything.sizes().values()) == 5007
    assert sum(t == "{}" for t in everything.strong_train["target"]) > 1000   # a third have no slots


def test_slurp_uses_the_official_train_file_when_present(tmp_path):
    row = {"slurp_id": 1, "sentence": "wake me at five am", "sentence_annotation": "wake me at [time : five am]",
           "intent": "alarm_set", "scenario": "alarm"}
    (tmp_path / "slurp").mkdir()
    for split, n in (("train", 30), ("test", 12)):
        with open(tmp_path / "slurp" / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({**row, "slurp_id": i}) + "\n")
    t = load_task("slurp", data_dir=tmp_path, sizes={"weak_train": 10, "strong_train": 10, "test": 5})
    assert all(i.startswith("slurp-test-") for i in t.test["id"])
    assert all(i.startswith("slurp-train-") for i in list(t.weak_train["id"]) + list(t.strong_train["id"]))
    assert t.weak_train["target"][0] == '{"time": "five am"}'


def test_snips_renders_bio_to_the_same_json(data_dir):
    t = load_task("snips", data_dir=data_dir, seed=0, sizes={"weak_train": 100, "strong_train": 100, "test": None})
    assert t.sizes()["test"] == 700
    assert "playlist" in t.slot_types and slot_types_of(t.test) <= slot_types_of(t.test) + t.slot_types
    check_targets(t.strong_train["target"], t.slot_types)
    assert len(set(t.weak_train["scenario"])) == 7


def test_is_well_formed_takes_the_whole_text():
    from bayes_w2s.tasks.generation import is_well_formed
    assert is_well_formed("{}") and is_well_formed('{"time": ["five am", "six"]}')
    assert not is_well_formed('{"time": "five') and not is_well_formed('{"time": "x"} "y"}')
    assert not is_well_formed('["x"]') and not is_well_formed('{"time": 5}') and not is_well_formed("")
    # a filler the word posterior emptied (every word dropped) is no target: SLU-F1 cannot score against it
    assert not is_well_formed('{"time": ""}') and not is_well_formed('{"time": ["six", " "]}')
