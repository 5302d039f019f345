"""The notebooks run top to bottom on the CDNOW sample (nbclient, a real kernel), define no
functions, and are committed with the outputs of a run on the full data."""

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ["01-quickstart", "02-clv-models", "03-compare-segmentations"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_full_data_outputs_and_no_functions(name):
    book = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.outputs or not c.source.strip() for c in code[1:]), "run and save with outputs"
    for cell in code:
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Lambda | ast.ClassDef)]
    text = nbformat.writes(book)
    assert "23,570" in text  # the full CDNOW cohort, not the sample


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_on_the_sample(name, monkeypatch, tmp_path):
    monkeypatch.setenv("CLVTIER_NOTEBOOK_SAMPLE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("CLVTIER_NOTEBOOK_WORKDIR", str(tmp_path))  # nothing left behind
    book = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
    client = NotebookClient(book, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(FOLDER)}})
    client.execute()  # raises CellExecutionError on any cell error
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert "2,357" in nbformat.writes(book)
