"""Every notebook is paired with its script (jupytext), committed executed, and runs top to
bottom (with the small settings it ships with)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_paired_with_its_script_and_committed_executed(path):
    jupytext = pytest.importorskip("jupytext")
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    script = jupytext.read(path.with_suffix(".py"))
    assert [(c.cell_type, c.source) for c in script.cells] == [(c.cell_type, c.source) for c in nb.cells], \
        f"{path.name} and its .py differ: run `jupytext --sync {path.with_suffix('.py')}`"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name} is committed without outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


@pytest.mark.real_cache
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, data_dir):
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("BAYES_W2S_DATA", str(data_dir))
    os.environ["BAYES_W2S_NOTEBOOK_SMALL"] = "1"      # notebooks read it to shrink their settings
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
