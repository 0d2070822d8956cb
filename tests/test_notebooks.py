"""The tutorial notebooks: committed with their pictures, and they run top to bottom (FAST on).

Each notebook reads FAST from the environment (on unless FAST=0). CI runs them with FAST on, which
keeps each under a minute on 2 CPU cores;
`FAST=0 jupyter execute --inplace notebooks/X.ipynb` regenerates the committed outputs with the
fuller settings.
"""

import os

import nbformat
import pytest
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK_DIR = os.path.join(HERE, "..", "notebooks")
NOTEBOOKS = ["one_step_gradient.ipynb", "sorting_lower_bound.ipynb", "recursion_in_action.ipynb"]


def read(name):
    return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


def test_every_notebook_is_listed_here():
    # a new notebook must join NOTEBOOKS, or CI would never execute it
    assert sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_outputs_in_order(name):
    # outputs are part of the tutorial (plots visible when browsing the repository), and they must
    # come from one top-to-bottom run: execution counts 1, 2, 3, ... and no error outputs
    code = [c for c in read(name).cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{name}: rerun it top to bottom: FAST=0 jupyter execute --inplace notebooks/{name}"
    outputs = [o for c in code for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name} was committed with an error"
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 2, f"{name} has {len(pictures)} committed plots"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom_fast(name, monkeypatch):
    monkeypatch.setenv("FAST", "1")  # the kernel inherits this environment
    nb = read(name)
    # raises CellExecutionError, with the failing cell and its traceback, if any cell fails
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOK_DIR}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
