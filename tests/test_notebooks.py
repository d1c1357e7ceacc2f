"""The notebooks in ``notebooks/``: each runs top to bottom, headless, at ``SIZE = "small"``.

Each notebook is executed with nbclient in a kernel running this interpreter
(``sys.executable``, the venv's Python, whatever kernels the machine has installed), with
the working directory ``notebooks/`` as a user opening it there would have, so
``../configs`` and ``../../shared/data`` (the real data, in ``shared/`` beside the
checkout) resolve as they do for the user. Any cell error fails the test. Parameters
are set the way papermill does: a cell assigning them is inserted after the cell tagged
``parameters``.

A second check keeps committed notebooks free of outputs and execution counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import SHARED_DATA  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_pretraining.ipynb", "03_dask_cluster.ipynb"]
#: Seconds a single cell may run (the first run in a fresh environment compiles the
#: Numba kernels; the whole of a notebook takes seconds once they are cached).
CELL_TIMEOUT = 300
KERNEL = "gpu-targets-test-python"


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """Makes kernel managers for a kernelspec that runs ``sys.executable``.

    The spec is written by ipykernel into a temporary directory that is the only one the
    spec manager searches, so a ``python3`` kernel of another environment (in
    ``~/.local/share/jupyter``) can never be picked up instead.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    spec_dir = Path(write_kernel_spec(kernels / KERNEL))
    argv = json.loads((spec_dir / "kernel.json").read_text())["argv"]
    assert argv[0] == sys.executable, argv
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    assert specs.get_kernel_spec(KERNEL).argv[0] == sys.executable

    def make():
        return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)

    return make


def with_parameters(nb, parameters: dict):
    """``nb`` with a cell setting ``parameters`` after the one tagged ``parameters``."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


def execute(name: str, make_kernel_manager, parameters: dict | None = None):
    """Run the notebook ``name`` top to bottom; returns it with its outputs."""
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    if parameters:
        nb = with_parameters(nb, parameters)
    client = nbclient.NotebookClient(
        nb, km=make_kernel_manager(), timeout=CELL_TIMEOUT, allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # CellExecutionError (with the cell and its traceback) on any error
    return nb


def text_of(nb) -> str:
    """Everything the notebook printed (stream outputs and plain-text results)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


def images_of(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


# --------------------------------------------------------------------------- runs
#: What 01 and 02 print about their data here.
DATA_LINE = ("data: the real SDSJ 2016 sample"
             if (SHARED_DATA / "sberbank_sdsj2016_transactions_partial.parquet").exists() else "data: synthetic")


def test_quickstart(kernel_manager_factory):
    nb = execute("01_quickstart.ipynb", kernel_manager_factory)
    text = text_of(nb)
    assert DATA_LINE in text
    assert "ConfigError: targets[0].window.duration" in text
    assert images_of(nb) == 1


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_pretraining.ipynb"])
def test_without_shared_data(kernel_manager_factory, tmp_path, name):
    """A user's machine has no ``shared/`` beside the checkout: synthetic data instead."""
    nb = execute(name, kernel_manager_factory, {"DATA_DIR": str(tmp_path / "absent")})
    assert "data: synthetic" in text_of(nb)
    assert images_of(nb) == 1


def test_pretraining(kernel_manager_factory):
    nb = execute("02_pretraining.ipynb", kernel_manager_factory)
    text = text_of(nb)
    assert DATA_LINE in text
    assert "loss falls from" in text
    assert images_of(nb) == 1


def test_dask_cluster(kernel_manager_factory):
    nb = execute("03_dask_cluster.ipynb", kernel_manager_factory)
    text = text_of(nb)
    assert "dashboard:" in text
    assert "same rows and targets as gpu_targets.generate" in text


# --------------------------------------------------------------------------- committed form
def test_the_notebooks_are_the_expected_ones():
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    """Committed notebooks carry no outputs and no execution counts.

    To strip them: ``jupyter nbconvert --clear-output --inplace notebooks/*.ipynb``, or
    "Clear All Outputs" in Jupyter before saving.
    """
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs or an execution count; clear them before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_size_is_the_one_parameter(name):
    """The first code cell is tagged ``parameters`` and defaults to the small, CPU size."""
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert 'SIZE = "small"' in first.source
