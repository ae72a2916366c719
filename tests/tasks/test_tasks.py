import json

import numpy as np
import pytest

from bayes_w2s.errors import InvalidInputError, UnknownNameError
from bayes_w2s.tasks import load_task, three_way_split
from datasets import Dataset


def _check_disjoint(task):
    ids = [set(task.split(s)["id"]) for s in ("weak_train", "strong_train", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_sst2_offline_split_is_seeded_and_stratified(data_dir):
    sizes = {"weak_train": 200, "strong_train": 300, "test": 100}
    a = load_task("sst2", data_dir=data_dir, seed=3, sizes=sizes)
    b = load_task("sst2", data_dir=data_dir, seed=3, sizes=sizes)
    c = load_task("sst2", data_dir=data_dir, seed=4, sizes=sizes)
    assert a.sizes() == sizes
    assert a.weak_train["id"] == b.weak_train["id"] and a.weak_train["id"] != c.weak_train["id"]
    _check_disjoint(a)
    pool_pos = np.mean(a.strong_train["label"])
    assert abs(np.mean(a.weak_train["label"]) - pool_pos) < 0.02
    assert not set(a.test["text"]) & set(a.weak_train["text"])


def test_agnews_offline(data_dir):
    t = load_task("agnews", data_dir=data_dir, seed=0, sizes={"weak_train": 80, "strong_train": 80, "test": 40})
    assert t.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert np.bincount(t.weak_train["label"]).tolist() == [20, 20, 20, 20]
    _check_disjoint(t)


def test_snips_intent_offline(data_dir, tmp_path):
    t = load_task("snips_intent", data_dir=data_dir, seed=0, sizes={"weak_train": 70, "strong_train": 70, "test": None})
    assert len(t.label_names) == 7 and "UNK" not in t.label_names
    assert np.bincount(t.weak_train["label"], minlength=7).tolist() == [10] * 7
    assert len(t.test) == 700   # the official test file
    _check_disjoint(t)
    snips = load_task("snips", data_dir=data_dir, seed=0, sizes={"weak_train": 10, "strong_train": 10, "test": None})
    assert set(t.test["text"]) == set(snips.test["text"])   # the same queries as the slot-filling task
    broken = tmp_path / "snips"   # an intent outside the seven is named, not mapped to a wrong class
    for split in ("train", "dev", "test"):
        (broken / split).mkdir(parents=True)
        (broken / split / "seq.in").write_text("play a song\nbook a table\n")
        (broken / split / "label").write_text("PlayMusic\nOrderPizza\n")
    with pytest.raises(InvalidInputError, match="unknown intents.*OrderPizza"):
        load_task("snips_intent", data_dir=tmp_path)


def test_weak_label_budget_cuts_only_weak_train(data_dir):
    t = load_task("agnews", data_dir=data_dir, seed=0, sizes={"weak_train": 80, "strong_train": 80, "test": 40})
    cut = t.with_weak_budget(20, seed=0)
    assert np.bincount(cut.weak_train["label"]).tolist() == [5, 5, 5, 5]
    assert set(cut.weak_train["id"]) < set(t.weak_train["id"])
    assert cut.strong_train["id"] == t.strong_train["id"] and cut.test["id"] == t.test["id"]
    assert cut.weak_train["id"] == t.with_weak_budget(20, seed=0).weak_train["id"]   # seeded
    with pytest.raises(InvalidInputError, match="does not fit weak_train"):
        t.with_weak_budget(81, seed=0)


def test_cosmosqa_keeps_questions_together(data_dir):
    t = load_task("cosmosqa", data_dir=data_dir, seed=0, sizes={"weak_train": 400, "strong_train": 400, "test": 200})
    groups = [set(t.split(s)["group"]) for s in ("weak_train", "strong_train", "test")]
    assert not (groups[0] & groups[1]) and not (groups[1] & groups[2]) and not (groups[0] & groups[2])
    assert abs(np.mean(t.weak_train["label"]) - 0.25) < 1e-9   # one correct answer of four
    assert "Question:" in t.test["text"][0] and "Answer:" in t.test["text"][0]


def test_sciq_hub_schema_fixture(tmp_path):
    d = tmp_path / "sciq"
    d.mkdir()
    for split, n in (("train", 30), ("test", 10)):
        with open(d / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({"question": f"q{i}?", "distractor1": "a", "distractor2": "b", "distractor3": "c",
                                     "correct_answer": f"right{i}", "support": f"because {i}"}) + "\n")
    t = load_task("sciq", data_dir=tmp_path, seed=0, sizes={"weak_train": 40, "strong_train": None, "test": 20})
    assert t.sizes() == {"weak_train": 40, "strong_train": 80, "test": 20}
    assert sum(t.test["label"]) == 5
    assert any(x.startswith("because") and "Answer: right" in x for x in t.test["text"])


def test_user_csv_and_jsonl(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("review,stars\n" + "".join(f"text {i},{'good' if i % 2 else 'bad'}\n" for i in range(60)))
    t = load_task(str(p), text_column="review", label_column="stars", seed=0,
                  sizes={"weak_train": 20, "strong_train": 20, "test": 20})
    assert t.label_names == ["bad", "good"] and t.name == "mine"
    j = tmp_path / "mine.jsonl"
    j.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 3}) + "\n" for i in range(30)))
    assert load_task(str(j), sizes={"weak_train": 9, "strong_train": 9, "test": 9}).label_names == ["0", "1", "2"]
    # CSV integer labels are ordered by value; "01" and "1" are two classes (pandas' parsing merged them)
    n = tmp_path / "ints.csv"
    n.write_text("text,label\n" + "".join(f"t{i},{(2, 10, 1)[i % 3]}\n" for i in range(30)))
    assert load_task(str(n), sizes={"weak_train": 9, "strong_train": 9, "test": 9}).label_names == ["1", "2", "10"]
    z = tmp_path / "zeros.csv"
    z.write_text("text,label\n" + "".join(f"t{i},{('01', '1')[i % 2]}\n" for i in range(30)))
    assert load_task(str(z), sizes={"weak_train": 9, "strong_train": 9, "test": 9}).label_names == ["01", "1"]
    clash = tmp_path / "clash.csv"
    clash.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(30)) + "t0,b\n")
    with pytest.warns(UserWarning, match=r"clash.csv: 1 text\(s\) appear with different labels \(first: 't0'\)"):
        load_task(str(clash), sizes={"weak_train": 9, "strong_train": 9, "test": 9})


def test_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown task 'sst3'"):
        load_task("sst3")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_task("sst2", data_dir=tmp_path)
    p = tmp_path / "empty.csv"
    p.write_text("text,label\n")
    with pytest.raises(InvalidInputError, match="no rows"):
        load_task(str(p))
    with pytest.raises(InvalidInputError, match="missing column"):
        p.write_text("sentence,label\nhi,1\n")
        load_task(str(p))
    tiny = Dataset.from_dict({"text": ["a", "b"], "label": [0, 1], "id": ["1", "2"]})
    with pytest.raises(InvalidInputError, match="empty"):
        three_way_split(tiny, {"weak_train": 1, "strong_train": 1, "test": 5}, seed=0)


def _table(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)


GOOD_CSV = "text,label\n" + "".join(f"t{i},{'a' if i % 2 else 'b'}\n" for i in range(30))
SMALL = {"weak_train": 5, "strong_train": 5, "test": 5}

#: (what to load: tmp_path -> load_task kwargs, what the error message must name)
BAD_TASKS = [
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), sizes={"weak_trian": 10}), r"sizes: unknown split\(s\) \['weak_trian'\]"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), sizes={"weak_train": -5}), r"sizes\['weak_train'\] must be a positive"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), sizes={"test": "16"}), r"sizes\['test'\] must be a positive"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), sizes={"test": 1.5}), r"sizes\['test'\] must be a positive"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), sizes=[5, 5, 5]), "sizes must be a mapping"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), seed=-1), r"seed must be an integer in \[0, 2\*\*32\)"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_names="ab"), "label_names must be an ordered list"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_names={"b", "a"}), "label_names must be an ordered list"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_names=["a", "a", "b"]), "label_names must be distinct"),
    (lambda d: dict(name=_table(d, "e.csv", "")), r"e.csv: the file is empty"),
    (lambda d: dict(name=_table(d, "e.jsonl", "")), r"e.jsonl: missing column"),
    (lambda d: dict(name=_table(d, "l.csv", "text,label\n" + "caf\xe9,a\nthe,b\n" * 10, )), None),   # UTF-8: fine
    (lambda d: dict(name=_table(d, "l.csv", ("text,label\n" + "caf\xe9,a\nthe,b\n" * 10).encode("latin-1"))),
     r"l.csv: not UTF-8 text .*re-save it as UTF-8"),
    (lambda d: dict(name=_table(d, "b.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "lab')), r"b.jsonl: not valid JSON lines"),
    (lambda d: dict(name=_table(d, "q.csv", 'text,label\n"unclosed,a\n')), r"q.csv"),
    (lambda d: dict(name=_table(d, "n.csv", GOOD_CSV + "t99,\n")), r"n.csv: 1 row\(s\) have an empty 'label' \(first: data row 31\)"),
    (lambda d: dict(name=_table(d, "n.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')), r"n.jsonl: 1 row\(s\) have an empty 'label'"),
    (lambda d: dict(name=_table(d, "one.csv", "text,label\n" + "t,a\n" * 30)), r"one.csv: every row has the label 'a'"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_names=["a", "c"]), r"labels \['b'\] are not in label_names"),
    (lambda d: dict(name="sst2", data_dir=str((d / "sst2").mkdir() or d)), r"task 'sst2': offline data incomplete, .*train.tsv is missing"),
    (lambda d: dict(name=3), "task must be a task name or a file path, got int 3"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_column="text"), "text_column and label_column are both"),
    (lambda d: dict(name=_table(d, "t.csv", GOOD_CSV), label_names=[]), "at least two"),
    (lambda d: dict(name=_table(d, "d.csv", GOOD_CSV.replace("text,label", "text,label,label").replace("\n", ",x\n")
                                .replace("text,label,label,x", "text,label,label"))),
     r"repeated column\(s\) \['label.1'\]"),
    (lambda d: dict(name=_table(d, "j.jsonl", "".join(f'{{"text": "t{i}", "label": [{i % 2}]}}\n' for i in range(30)))),
     "holds lists or objects"),                                       # was the class "[0]"
    (lambda d: dict(name=_table(d, "u.CSV", GOOD_CSV)), None),          # was "unknown task"
    (lambda d: dict(name=_table(d, "w.csv", "text,label\n" + "".join(f" ,{'a' if i % 2 else 'b'}\n"
                                                                     for i in range(30)))), "every 'text' is empty"),
    # " a" (a space after the comma) was a third class beside "a"
    (lambda d: dict(name=_table(d, "s.csv", "text,label\n" + "".join(f"t{i}, {'a' if i % 2 else 'b'}\n" for i in range(30)))),
     None),
    (lambda d: dict(name=_table(d, "s.csv", "text,label\n" + "t,a\n" * 15 + "u, a\n" * 15)), r"s.csv: every row has the label 'a'"),
    # digits str.isdigit accepts and int() refuses, and integers beyond int64, are class names (were raw errors)
    (lambda d: dict(name=_table(d, "sup.csv", "text,label\n" + "".join(f"t{i},{'²' if i % 2 else 1}\n"
                                                                       for i in range(30)))), None),
    (lambda d: dict(name=_table(d, "big.csv", "text,label\n" + "".join(f"t{i},{'9' * 20 if i % 2 else 0}\n"
                                                                       for i in range(30)))), None),
    (lambda d: dict(name=_table(d, "bom.jsonl", ("\ufeff" + "".join(f'{{"text": "t{i}", "label": {i % 2}}}\n'
                                                                     for i in range(30))).encode("utf-8"))), None),
    (lambda d: dict(name=_table(d, "lt.jsonl", "".join(f'{{"text": [{i}], "label": {i % 2}}}\n' for i in range(30)))),
     r"'text' holds lists or objects .* a text is one string"),   # was the text "[0]"
]


@pytest.mark.parametrize("make, match", BAD_TASKS, ids=[str(i) for i in range(len(BAD_TASKS))])
def test_bad_inputs_raise_named_errors(tmp_path, make, match):
    kwargs = {"sizes": SMALL, **make(tmp_path)}
    if match is None:
        assert load_task(**kwargs).num_classes == 2
        return
    with pytest.raises(InvalidInputError, match=match):
        load_task(**kwargs)


def test_no_offline_data_and_no_hub_is_one_clear_error(monkeypatch):
    from bayes_w2s.errors import MissingDataError
    monkeypatch.delenv("BAYES_W2S_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingDataError, match=r"cannot load stanfordnlp/sst2 from the hub .*put its folder sst2/ "
                                               r"in the folder that \$BAYES_W2S_DATA names \(unset\)"):
        load_task("sst2")
    # a task read from raw files online names the file and its own offline folder (snips_intent reads snips/)
    monkeypatch.setenv("BAYES_W2S_DATA", "/nonexistent")
    with pytest.raises(MissingDataError, match=r"cannot load text file https://\S+/snips/train/seq.in from the hub "
                                               r".*put its folder snips/ .*\(now /nonexistent\)"):
        load_task("snips_intent")
    with pytest.raises(InvalidInputError, match="data_dir is empty"):
        load_task("sst2", data_dir="")


def test_a_split_smaller_than_asked_is_warned_about():
    ds = Dataset.from_dict({"text": [f"t{i}" for i in range(40)], "label": [i % 2 for i in range(40)]})
    with pytest.warns(UserWarning, match=r"split 'strong_train': 1000 items asked for, 20 available"):
        three_way_split(ds, {"test": 10, "weak_train": 10, "strong_train": 1000}, seed=0)


def _sst2_copy(tmp_path, train: str) -> str:
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text(train)
    for f in ("dev.tsv", "test.tsv"):
        (tmp_path / "sst2" / f).write_text("sentence\tlabel\n" + "".join(f"a test sentence number {i}\t{i % 2}\n"
                                                                         for i in range(20)))
    return str(tmp_path)


@pytest.mark.parametrize("train, match", [
    ("sentence\tlabel\n" + "".join(f"a training sentence number {i}\t{i % 3}\n" for i in range(30)),
     r"SST-2 train data .*10 label\(s\) are not class indices 0..1: \['2'\]"),        # loaded as a third class
    ("text\tlabel\n" + "".join(f"a training sentence number {i}\t{i % 2}\n" for i in range(30)),
     r"columns \['sentence'\] missing"),                                                # a raw AttributeError
])
def test_offline_files_with_labels_outside_the_class_set_or_renamed_columns_are_named(tmp_path, train, match):
    with pytest.raises(InvalidInputError, match=match):
        load_task("sst2", data_dir=_sst2_copy(tmp_path, train), sizes=SMALL)


def test_cosmosqa_label_outside_its_four_answers_and_a_non_path_data_dir_are_clear_errors(tmp_path, data_dir):
    import pandas as pd
    (tmp_path / "cosmosqa").mkdir()
    rows = pd.read_csv(f"{data_dir}/cosmosqa/valid.csv", keep_default_na=False).head(40)
    rows.loc[3, "label"] = 7                                # was a question with no correct answer
    rows.to_csv(tmp_path / "cosmosqa" / "valid.csv", index=False)
    with pytest.raises(InvalidInputError, match=r"CosmosQA .*1 label\(s\) are not class indices 0..3: \['7'\]"):
        load_task("cosmosqa", data_dir=str(tmp_path), sizes=SMALL)
    with pytest.raises(InvalidInputError, match="data_dir must be a folder path, got int 5"):
        load_task("sst2", data_dir=5)
