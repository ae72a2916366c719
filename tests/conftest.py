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
