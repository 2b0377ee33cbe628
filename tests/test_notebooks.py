"""Every notebook in notebooks/ is stored without outputs and runs top to bottom, writing at least one image.

Each notebook is executed in memory (the file is never rewritten) by nbclient in a kernel that runs this very
interpreter, with cwd notebooks/ and GENLAB_NOTEBOOK_OUT pointing at a temporary folder.
"""

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "genlab-test-python"


@pytest.fixture(scope="session")
def jupyter_path(tmp_path_factory) -> Path:
    """A folder holding a kernelspec for sys.executable, whatever `python` or the python3 kernelspec point at."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return root


def test_notebooks_exist():
    assert {"00_tour.ipynb", "ddt.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, jupyter_path, monkeypatch):
    out = tmp_path / "outputs"
    monkeypatch.setenv("GENLAB_NOTEBOOK_OUT", str(out))
    monkeypatch.delenv("GENLAB_PIPELINES", raising=False)  # the notebook must find ../pipelines itself
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(jupyter_path), os.environ.get("JUPYTER_PATH", "")]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name=KERNEL, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell's traceback) on the first failing cell
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [p for p in out.rglob("*") if p.suffix.lower() in (".png", ".gif")]
    assert images, f"{path.name} wrote no PNG or GIF to $GENLAB_NOTEBOOK_OUT"
    assert seconds < 120, f"{path.name} took {seconds:.0f} s"
