"""Every notebook runs top to bottom (with the small settings it ships with)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.real_cache
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, data_dir):
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("BAYES_W2S_DATA", str(data_dir))
    os.environ["BAYES_W2S_NOTEBOOK_SMALL"] = "1"      # notebooks read it to shrink their settings
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
