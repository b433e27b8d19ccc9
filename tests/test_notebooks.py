"""Notebooks run top to bottom against the installed package."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_error(path, tmp_path, monkeypatch):
    monkeypatch.delenv("LEADSCORE_CRM", raising=False)
    monkeypatch.delenv("LEADSCORE_MODEL", raising=False)
    monkeypatch.setenv("NOTEBOOK_LEADS", "2000")
    monkeypatch.setenv("NOTEBOOK_TRAIN_LEADS", "6000")  # the smallest simulated CRM that trains by default
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "store notebooks without outputs"
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o.get("data", {}) for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    # A chart is a PNG output, or a PNG embedded in an HTML output (the report's sections carry their own).
    images = sum(("image/png" in data) + str(data.get("text/html", "")).count("data:image/png;base64,") for data in outputs)
    assert images >= 2
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.get("output_type") == "error"]
    assert not errors
