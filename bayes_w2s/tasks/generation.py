"""Generation tasks: slot filling rendered as a JSON target string.

The input is an utterance (SLURP's reference transcript, a SNIPS query); the target is
its slots as compact JSON, in order of appearance::

    "wake me at five am tomorrow"  ->  {"time": "five am", "date": "tomorrow"}

A slot type that occurs more than once keeps every filler, as a list
(``{"currency_name": ["american dollar", "japanese yen"]}``), because SLURP's official
evaluation scores each entity separately; an utterance without slots is ``{}``.
:func:`parse_slots` turns any string back into entities and never raises: malformed
model output scores as "no entities".
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from datasets import Dataset

from ..errors import InvalidInputError
from .base import hub_load, resolve_data_dir

#: The official SLURP text annotations, for users without an offline copy.
SLURP_URL = "https://raw.githubusercontent.com/pswietojanski/slurp/master/dataset/slurp/{split}.jsonl"
#: JointBERT's SNIPS copy (the layout of ``../shared/data/snips``).
SNIPS_URL = "https://raw.githubusercontent.com/monologg/JointBERT/master/data/snips/{split}/{file}"

_ANNOTATION = re.compile(r"\[\s*([^\]:]+?)\s*:\s*([^\]]*?)\s*\]")


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def render_slots(entities: list[tuple[str, str]] | list[dict]) -> str:
    """Entities (``(type, filler)`` pairs or ``{"type", "filler"}`` dicts) → the JSON target.

    Keys follow first appearance; a repeated type becomes a list of its fillers.
    """
    slots: dict[str, list[str]] = {}
    for ent in entities:
        kind, filler = (ent["type"], ent["filler"]) if isinstance(ent, dict) else ent
        slots.setdefault(_squash(kind), []).append(_squash(filler))
    return json.dumps({k: v[0] if len(v) == 1 else v for k, v in slots.items()}, ensure_ascii=False)


class _Members(list):
    """A JSON object's members in order, duplicates kept (``json`` would keep only the last)."""


_SLOT_DECODER = json.JSONDecoder(object_pairs_hook=_Members)


def parse_slots(text: str) -> tuple[list[dict], bool]:
    """A generated string → (entities as ``{"type", "filler"}`` dicts, well-formed?).

    Leading whitespace and anything after the JSON object are ignored (a causal LM may
    run on past its answer); anything that is not an object of strings (or lists of
    strings) yields ``([], False)`` so that it scores as an empty prediction. A key written
    twice names two entities of that type, as a list would (SLURP scores every entity).
    """
    try:
        obj, _ = _SLOT_DECODER.raw_decode(str(text).lstrip())
    except (json.JSONDecodeError, ValueError, RecursionError):   # RecursionError: "[[[[…" nested past the stack
        return [], False
    if not isinstance(obj, _Members):
        return [], False
    entities = []
    for kind, value in obj:
        fillers = value if type(value) is list else [value]
        if not fillers or not all(isinstance(f, str) for f in fillers):
            return [], False
        entities += [{"type": _squash(kind), "filler": _squash(f)} for f in fillers]
    return entities, True


def fills_no_slot(text: str) -> bool:
    """Whether a generation names no slot (``{}``, or malformed and so scored as ``{}``)."""
    return not parse_slots(text)[0]


def _parses_whole(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except (json.JSONDecodeError, ValueError, TypeError, RecursionError):
        return False


def is_well_formed(text: str) -> bool:
    """Whether ``text`` is, in full, one slot JSON object (nothing before or after it) with
    no empty filler: the check a training target must pass (:meth:`WordPosterior.constrain`,
    :func:`check_targets`), and so a draw of the true target that SLU-F1 can score against
    (a weak generator can write one: SLURP's scratch GPT-2 wrote `"date": ""`)."""
    if not _parses_whole(text):
        return False
    entities, ok = parse_slots(text)
    return ok and all(e["filler"] for e in entities)


def check_targets(targets, slot_types) -> None:
    """Raise a clear error for a target that is not well-formed JSON or names a slot
    type outside ``slot_types`` (targets are training data; model outputs are not checked)."""
    if isinstance(targets, str):   # iterated character by character: "target 0 ... '{'"
        raise InvalidInputError(f"targets must be a list of target strings, got one string {targets[:60]!r}")
    known = set(slot_types)
    for i, text in enumerate(targets):
        entities, ok = parse_slots(text)
        if not ok or not _parses_whole(text):   # nothing before or after the object, as is_well_formed
            raise InvalidInputError(f"target {i} is not a JSON object of slot fillers: {text!r}")
        unknown = sorted({e["type"] for e in entities} - known)
        if unknown:
            raise InvalidInputError(f"target {i} has unknown slot type(s) {unknown}: {text!r}; "
                                    f"the task's slot types are {sorted(known)}")
        if any(not e["filler"] for e in entities):
            raise InvalidInputError(f"target {i} has an empty slot filler: {text!r}")


def parse_slurp_annotation(annotation: str) -> list[tuple[str, str]]:
    """``"wake me at [time : five am]"`` → ``[("time", "five am")]`` (SLURP's bracket format)."""
    return [(_squash(k), _squash(v)) for k, v in _ANNOTATION.findall(annotation)]


def _slurp_frame(records: list[dict], split: str) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append({"text": _squash(r["sentence"]),
                     "target": render_slots(parse_slurp_annotation(r["sentence_annotation"])),
                     "intent": r["intent"], "scenario": r["scenario"],
                     "id": f"slurp-{split}-{r['slurp_id']}"})
    return pd.DataFrame(rows)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_slurp(data_dir=None) -> tuple[Dataset, Dataset | None]:
    """SLURP slot filling from reference transcripts.

    With ``train.jsonl`` in the data folder (the full official text release) the pool is
    the official train set and the test split is sampled from the official test set.
    The offline copy here has only ``devel.jsonl`` + ``test.jsonl`` (5,007 utterances):
    they are pooled and re-split with the seed. Without a data folder the official files
    are read from the SLURP repository.
    """
    path = resolve_data_dir(data_dir, "slurp")
    if path is None:
        files = {s: SLURP_URL.format(split=s) for s in ("train", "devel", "test")}
        hub = hub_load("json", data_files=files, offline_folder="slurp")
        records = {s: list(hub[s]) for s in files}
    else:
        records = {s: _read_jsonl(path / f"{s}.jsonl") for s in ("train", "devel", "test")
                   if (path / f"{s}.jsonl").is_file()}
    if "train" in records:
        pool = pd.concat([_slurp_frame(records["train"], "train"),
                          _slurp_frame(records.get("devel", []), "devel")], ignore_index=True)
        test = _slurp_frame(records["test"], "test")
    else:
        missing = {"devel", "test"} - set(records)
        if missing:
            raise InvalidInputError(f"{path}: SLURP files {sorted(f + '.jsonl' for f in missing)} not found")
        pool = pd.concat([_slurp_frame(records[s], s) for s in ("devel", "test")], ignore_index=True)
        test = None
    to_ds = lambda df: Dataset.from_pandas(df, preserve_index=False)  # noqa: E731
    return to_ds(pool), (to_ds(test) if test is not None else None)


def bio_to_entities(words: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """BIO tags → ``(type, filler)`` spans. An ``I-x`` that does not continue an ``x``
    span starts one (the usual lenient reading, as in conlleval)."""
    if len(words) != len(tags):
        raise InvalidInputError(f"{len(words)} words but {len(tags)} BIO tags: {' '.join(words)!r}")
    spans: list[list] = []
    current = None
    for word, tag in zip(words, tags):
        if tag == "O" or tag in ("PAD", "UNK"):
            current = None
            continue
        prefix, _, kind = tag.partition("-")
        if prefix not in ("B", "I") or not kind:
            raise InvalidInputError(f"not a BIO tag: {tag!r}")
        if prefix == "B" or current is None or current[0] != kind:
            current = [kind, [word]]
            spans.append(current)
        else:
            current[1].append(word)
    return [(kind, " ".join(ws)) for kind, ws in spans]


def read_snips_file(path: Path | None, split: str, file: str) -> list[str]:
    """The lines of one file of SNIPS's JointBERT layout (``<split>/seq.in`` …): from the offline
    folder ``path``, or JointBERT's repository online when it is None."""
    if path is not None:
        return (path / split / file).read_text(encoding="utf-8").splitlines()
    url = SNIPS_URL.format(split=split, file=file)
    return hub_load("text", data_files=url, offline_folder="snips")["train"]["text"]


def load_snips(data_dir=None) -> tuple[Dataset, Dataset]:
    """SNIPS (JointBERT layout): BIO-tagged queries rendered to the same JSON targets.
    Pool = ``train`` + ``dev`` (13,784), test = the official ``test`` (700)."""
    path = resolve_data_dir(data_dir, "snips")
    frames = {}
    for split in ("train", "dev", "test"):
        texts, tags, intents = (read_snips_file(path, split, f) for f in ("seq.in", "seq.out", "label"))
        if not len(texts) == len(tags) == len(intents):
            raise InvalidInputError(f"SNIPS {split}: {len(texts)} queries, {len(tags)} tag lines, "
                                    f"{len(intents)} intents")
        rows = []
        for i, (text, tag_line, intent) in enumerate(zip(texts, tags, intents)):
            words = text.split()
            rows.append({"text": " ".join(words),
                         "target": render_slots(bio_to_entities(words, tag_line.split())),
                         "intent": intent.strip(), "scenario": intent.strip(),
                         "id": f"snips-{split}-{i}"})
        frames[split] = pd.DataFrame(rows)
    pool = pd.concat([frames["train"], frames["dev"]], ignore_index=True)
    return (Dataset.from_pandas(pool, preserve_index=False),
            Dataset.from_pandas(frames["test"], preserve_index=False))


def slot_types_of(*datasets: Dataset) -> list[str]:
    """The sorted slot types that occur in the targets of ``datasets``."""
    types = set()
    for ds in datasets:
        for target in ds["target"]:
            types.update(e["type"] for e in parse_slots(target)[0])
    return sorted(types)
