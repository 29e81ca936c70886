"""The notebooks run top to bottom (a failing cell fails the suite) and are committed with outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
DEMO_MODEL = Path(__file__).parents[1] / "src" / "mmrag" / "models" / "demo" / "config.json"


def _has_figure(notebook: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_with_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), "run notebooks/build.py to store outputs"
    assert _has_figure(notebook), "each notebook shows its results as an image grid"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.slow  # a kernel per notebook, about a minute each
@pytest.mark.skipif(not DEMO_MODEL.exists(), reason="the bundled demo model is not built")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert _has_figure(notebook)


def _text_outputs(name: str) -> str:
    notebook = nbformat.read(Path(__file__).parents[1] / "notebooks" / name, as_version=4)
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_committed_outputs_say_what_each_number_is() -> None:
    """Scores name their image, Chroma's exp(-distance) is labelled, Chinese prints as Chinese, no progress noise."""
    service = _text_outputs("04_http_service_client.ipynb")
    assert "('shape_0" in service and ".png', " in service  # each /similarity score with its file
    assert "红色的圆形" in service and "\\u7ea2" not in service
    assert "exp(-distance)" in _text_outputs("02_llama_index_pipeline.ipynb")
    quickstart = _text_outputs("01_quickstart_store.ipynb")
    assert "白色的星形" in quickstart and "Hit(" in quickstart  # the HitList cell
    every = "\n".join(_text_outputs(path.name) for path in NOTEBOOKS)
    assert "indexing " not in every and "it/s]" not in every  # no progress bars saved
