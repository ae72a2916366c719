"""Loaders for the classification tasks.

Each loader reads the offline copy when a data directory is known (argument or
``$BAYES_W2S_DATA``) and otherwise the Hugging Face hub, returning a pool (and
optionally an official test set) that :func:`~bayes_w2s.tasks.base.three_way_split`
divides.
"""
from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset

from ..errors import InvalidInputError, check_name_list
from .base import hub_load, resolve_data_dir
from .generation import read_snips_file   # the same JointBERT files as the slot-filling task

SST2_LABELS = ["negative", "positive"]
AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
BINARY_QA_LABELS = ["incorrect", "correct"]
#: SNIPS's seven intents (JointBERT's ``intent_label.txt`` without its ``UNK``)
SNIPS_INTENTS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork",
                 "SearchScreeningEvent"]


def class_indices(values: pd.Series, num_classes: int, where: str) -> pd.Series:
    """``values`` as ints in 0..K−1, or an error naming ``where`` and the values that are not:
    a label outside the class set would load and fail much later (or, for CosmosQA, give
    questions without a correct answer)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round()) | (numbers < 0) | (numbers >= num_classes)
    if bad.any():
        shown = sorted({str(v) for v in values[bad]})[:10]
        raise InvalidInputError(f"{where}: {int(bad.sum())} label(s) are not class indices 0..{num_classes - 1}: "
                                f"{shown}")
    return numbers.astype(int)


def _with_ids(ds: Dataset, prefix: str) -> Dataset:
    if "id" in ds.column_names:
        return ds
    return ds.add_column("id", [f"{prefix}-{i}" for i in range(len(ds))])


def load_sst2(data_dir=None, min_words: int = 5) -> tuple[Dataset, Dataset]:
    """GLUE SST-2. Pool: the train phrases (plus the offline dev file) with at least
    ``min_words`` words, since many train rows are sub-sentence fragments whose label
    is barely defined; test: the GLUE validation sentences (872)."""
    path = resolve_data_dir(data_dir, "sst2")
    if path is not None:
        def read(f):
            df = pd.read_csv(path / f, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
            missing = {"sentence", "label"} - set(df.columns)
            if missing:
                raise InvalidInputError(f"{path / f}: columns {sorted(missing)} missing; have {list(df.columns)} "
                                        "(GLUE's sentence<TAB>label)")
            return df
        pool = pd.concat([read("train.tsv"), read("dev.tsv")], ignore_index=True)
        test = read("test.tsv")
    else:
        hub = hub_load("stanfordnlp/sst2", offline_folder="sst2")
        pool, test = hub["train"].to_pandas(), hub["validation"].to_pandas()
    prep = []
    for name, df in (("train", pool), ("test", test)):
        df = df.rename(columns={"sentence": "text"})[["text", "label"]]
        df["text"] = df["text"].astype(str).str.strip()
        df = df.drop_duplicates("text")
        df["label"] = class_indices(df["label"], len(SST2_LABELS), f"SST-2 {name} data ({path or 'hub'})")
        df["id"] = [f"sst2-{name}-{i}" for i in df.index]
        prep.append(df)
    pool, test = prep
    pool = pool[pool["text"].str.split().str.len() >= min_words]
    pool = pool[~pool["text"].isin(set(test["text"]))]  # no test sentence leaks into training
    return Dataset.from_pandas(pool, preserve_index=False), Dataset.from_pandas(test, preserve_index=False)


def load_agnews(data_dir=None) -> tuple[Dataset, Dataset]:
    """AG News, 4 topics. Offline: pool = ``dev.tsv`` (10k), test = ``test.tsv`` (7.6k)."""
    path = resolve_data_dir(data_dir, "agnews")
    out = []
    if path is not None:
        for f in ("dev.tsv", "test.tsv"):
            df = pd.read_csv(path / f, sep="\t", header=None, names=["text", "label_name"],
                             quoting=csv.QUOTE_NONE, keep_default_na=False)
            unknown = set(df["label_name"]) - set(AGNEWS_LABELS)
            if unknown:
                raise InvalidInputError(f"{path / f}: unknown AG News labels {sorted(unknown)}")
            df["label"] = df["label_name"].map(AGNEWS_LABELS.index)
            df["id"] = [f"agnews-{f[:-4]}-{i}" for i in range(len(df))]
            out.append(Dataset.from_pandas(df[["text", "label", "id"]], preserve_index=False))
    else:
        hub = hub_load("fancyzhx/ag_news", offline_folder="agnews")
        out = [_with_ids(hub["train"], "agnews-train"), _with_ids(hub["test"], "agnews-test")]
    return out[0], out[1]


def load_snips_intent(data_dir=None) -> tuple[Dataset, Dataset]:
    """SNIPS intent detection, 7 classes (the queries of the slot-filling task ``snips``,
    labelled by intent). Pool = ``train`` + ``dev`` (13,784), test = the official ``test`` (700).
    Offline it reads the ``snips/`` folder; online, JointBERT's files on GitHub."""
    path = resolve_data_dir(data_dir, "snips")
    frames = {}
    for split in ("train", "dev", "test"):
        texts = read_snips_file(path, split, "seq.in")
        intents = [i.strip() for i in read_snips_file(path, split, "label")]
        where = f"SNIPS {split} ({path / split if path else 'JointBERT files online'})"
        if len(texts) != len(intents):
            raise InvalidInputError(f"{where}: {len(texts)} queries but {len(intents)} intents")
        unknown = sorted(set(intents) - set(SNIPS_INTENTS))
        if unknown:
            raise InvalidInputError(f"{where}: unknown intents {unknown[:10]}; known: {SNIPS_INTENTS}")
        frames[split] = pd.DataFrame({"text": [" ".join(t.split()) for t in texts],
                                      "label": [SNIPS_INTENTS.index(i) for i in intents],
                                      "id": [f"snips-{split}-{i}" for i in range(len(texts))]})
    pool = pd.concat([frames["train"], frames["dev"]], ignore_index=True)
    return (Dataset.from_pandas(pool, preserve_index=False),
            Dataset.from_pandas(frames["test"], preserve_index=False))


def _binary_qa_items(rows: list[dict], prefix: str) -> Dataset:
    """Burns et al.'s cast: every (context, question, answer) is one binary item."""
    items = {"text": [], "label": [], "id": [], "group": []}
    for r in rows:
        for j, (answer, correct) in enumerate(r["answers"]):
            ctx = f"{r['context']}\n" if r.get("context") else ""
            items["text"].append(f"{ctx}Question: {r['question']}\nAnswer: {answer}")
            items["label"].append(int(correct))
            items["id"].append(f"{prefix}-{r['qid']}-a{j}")
            items["group"].append(f"{prefix}-{r['qid']}")
    return Dataset.from_dict(items)


def load_cosmosqa(data_dir=None) -> tuple[Dataset, None]:
    """CosmosQA as binary "is this answer correct?" items, 4 per question (1 correct).

    Offline only the official validation file exists (2,985 questions → 11,940 items),
    so it is the whole pool; the ``group`` column keeps a question's answers together.
    """
    path = resolve_data_dir(data_dir, "cosmosqa")
    if path is not None:
        df = pd.read_csv(path / "valid.csv", keep_default_na=False)
    else:
        df = hub_load("allenai/cosmos_qa", split="validation", offline_folder="cosmosqa").to_pandas()
    df["label"] = class_indices(df["label"], 4, f"CosmosQA ({path / 'valid.csv' if path else 'hub'})")
    rows = [{"qid": i, "context": r["context"], "question": r["question"],
             "answers": [(r[f"answer{j}"], int(r["label"]) == j) for j in range(4)]}
            for i, r in enumerate(df.to_dict("records"))]
    return _binary_qa_items(rows, "cosmosqa"), None


def load_sciq(data_dir=None) -> tuple[Dataset, Dataset]:
    """SciQ (hub ``allenai/sciq``) cast to binary items: the correct answer and three
    distractors per question, with the support paragraph as context. No offline copy;
    ``data_dir`` may hold ``sciq/{train,test}.jsonl`` in the hub schema."""
    path = resolve_data_dir(data_dir, "sciq")
    splits = {}
    for split in ("train", "test"):
        if path is not None:
            with open(path / f"{split}.jsonl") as fh:
                records = [json.loads(line) for line in fh if line.strip()]
        else:
            records = list(hub_load("allenai/sciq", split=split, offline_folder="sciq"))
        rows = [{"qid": i, "context": r.get("support", ""), "question": r["question"],
                 "answers": [(r["correct_answer"], True)] +
                            [(r[f"distractor{j}"], False) for j in (1, 2, 3)]}
                for i, r in enumerate(records)]
        splits[split] = _binary_qa_items(rows, f"sciq-{split}")
    return splits["train"], splits["test"]


def load_table(path: str | Path, text_column: str = "text", label_column: str = "label",
               label_names: list[str] | None = None) -> tuple[Dataset, list[str]]:
    """A user's own CSV / TSV / JSONL file with a text and a label column.

    Labels may be strings or integers; the sorted set of labels (or ``label_names``)
    defines the classes. An unreadable file, a missing or empty label, or a file with a
    single class is an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    if text_column == label_column:   # the label would be the text the model reads
        raise InvalidInputError(f"text_column and label_column are both {text_column!r}")
    if label_names is not None:
        label_names = [str(v) for v in check_name_list(label_names, "label_names")]
        if len(label_names) < 2:
            raise InvalidInputError(f"label_names must be a list of distinct class names (at least two), got "
                                    f"{label_names!r}")
    df = _read_table(path, label_column)
    repeated = sorted({c for c in df.columns if list(df.columns).count(c) > 1} | {
        c for c in df.columns if isinstance(c, str) and c.rpartition(".")[0] in (text_column, label_column)
        and c.rpartition(".")[2].isdigit()})   # pandas renames a second "label" column "label.1"
    if repeated:
        raise InvalidInputError(f"{path}: repeated column(s) {repeated}: which one is meant is ambiguous")
    missing = {text_column, label_column} - set(df.columns)
    if missing:
        raise InvalidInputError(f"{path}: missing column(s) {sorted(missing)}; has {list(df.columns)}")
    if df.empty:
        raise InvalidInputError(f"{path}: no rows")
    raw = df[label_column]
    for column, what in ((label_column, "a label is one string or integer"), (text_column, "a text is one string")):
        nested = df[column].map(lambda v: isinstance(v, (list, dict)))
        if nested.any():   # a JSON list or object became a class (or a text) named by its repr
            first = int(np.flatnonzero(nested.to_numpy())[0])
            raise InvalidInputError(f"{path}: {column!r} holds lists or objects (first: data row {first + 1}: "
                                    f"{df[column].iloc[first]!r}); {what}")
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    if blank.any():
        rows = np.flatnonzero(blank.to_numpy())
        raise InvalidInputError(f"{path}: {len(rows)} row(s) have an empty {label_column!r} "
                                f"(first: data row {rows[0] + 1}); every item needs a label")
    # "pos" and " pos" (a space after the comma) were two classes; the blank check above strips too
    raw = raw.map(lambda v: v.strip() if isinstance(v, str) else v)
    # CSV labels are read as text, so "01" and "1" stay two classes (pandas' number parsing merged
    # them); labels that are all plain integers become integers, ordered by value
    if raw.map(_is_plain_integer).all():
        raw = raw.astype(int)
    if df[text_column].isna().any():
        rows = np.flatnonzero(df[text_column].isna().to_numpy())
        raise InvalidInputError(f"{path}: {len(rows)} row(s) have no {text_column!r} (first: data row {rows[0] + 1})")
    names = label_names or sorted({str(v) for v in raw})
    if label_names is None and pd.api.types.is_integer_dtype(raw):
        names = [str(v) for v in sorted(set(raw))]
    unknown = sorted({str(v) for v in raw} - set(names))
    if unknown:
        raise InvalidInputError(f"{path}: labels {unknown} are not in label_names {names}")
    seen = sorted({str(v) for v in raw})
    if len(seen) < 2:
        raise InvalidInputError(f"{path}: every row has the label {seen[0]!r}; a classification task needs at "
                                "least two classes")
    texts = df[text_column].astype(str)
    if not texts.str.strip().astype(bool).any():
        raise InvalidInputError(f"{path}: every {text_column!r} is empty")
    clashing = pd.Series(raw.astype(str).to_numpy()).groupby(texts.to_numpy()).nunique()
    clashing = clashing[clashing > 1]
    if len(clashing):   # kept (it is the user's data), but said: the copies can land in train and test
        warnings.warn(f"{path}: {len(clashing)} text(s) appear with different labels (first: "
                      f"{clashing.index[0][:60]!r}); their copies may land in different splits", stacklevel=3)
    out = pd.DataFrame({"text": texts,
                        "label": [names.index(str(v)) for v in raw],
                        "id": [f"{path.stem}-{i}" for i in range(len(df))]})
    return Dataset.from_pandas(out, preserve_index=False), names


def _is_plain_integer(value) -> bool:
    """"12" or "-3" in ASCII digits, within int64 ("²" is a digit to str.isdigit, and int() refuses it)."""
    return isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value) is not None and str(int(value)) == value \
        and -2**63 <= int(value) < 2**63


def _read_table(path: Path, label_column: str = "label") -> pd.DataFrame:
    """The file as a DataFrame (CSV / TSV labels as text), or an InvalidInputError that names
    it and says what is wrong."""
    try:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", encoding="utf-8-sig")   # a BOM, as CSV allows
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False,
                           encoding="utf-8", dtype={label_column: str})
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at "
                                f"offset {exc.start}); re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        kind = "JSON lines" if path.suffix == ".jsonl" else path.suffix.lstrip(".").upper()
        raise InvalidInputError(f"{path}: not valid {kind} ({exc})") from None
