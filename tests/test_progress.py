"""Where a progress bar shows: a widget in Jupyter, text in a terminal (or Jupyter without widgets), else nowhere."""

from __future__ import annotations

import io
import sys
import types

import pytest

from mmrag import progress
from mmrag.progress import in_notebook, progress_bar, progress_mode


def _environment(monkeypatch: pytest.MonkeyPatch, *, notebook: bool, widgets: bool, tty: bool) -> None:
    monkeypatch.setattr(progress, "in_notebook", lambda: notebook)
    monkeypatch.setattr(progress, "has_widgets", lambda: widgets)
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: tty)


@pytest.mark.parametrize(
    ("notebook", "widgets", "tty", "show", "expected"),
    [
        (True, True, False, None, "notebook"),  # Jupyter: stderr is no terminal, yet a bar shows
        (True, False, False, None, "text"),  # Jupyter without ipywidgets: a text bar the notebook renders
        (False, False, True, None, "text"),  # a terminal
        (False, False, False, None, "off"),  # a pipe, a log file, a service
        (False, False, False, True, "text"),  # forced on
        (True, True, False, True, "notebook"),
        (True, True, True, False, "off"),  # forced off, wherever
        (False, True, True, False, "off"),
    ],
)
def test_the_mode_follows_the_environment(monkeypatch, notebook, widgets, tty, show, expected) -> None:
    _environment(monkeypatch, notebook=notebook, widgets=widgets, tty=tty)
    assert progress_mode(show) == expected


def test_a_text_bar_writes_to_stderr_and_an_off_bar_writes_nothing(monkeypatch) -> None:
    _environment(monkeypatch, notebook=False, widgets=False, tty=False)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(3, show=None, desc="indexing", unit="file") as bar:
        bar.update(3)
    assert stream.getvalue() == ""
    with progress_bar(3, show=True, desc="indexing", unit="file", leave=True) as bar:
        bar.update(3)
    assert "indexing" in stream.getvalue() and "3/3" in stream.getvalue() and "file" in stream.getvalue()


def test_an_empty_bar_is_never_shown(monkeypatch) -> None:
    _environment(monkeypatch, notebook=False, widgets=False, tty=True)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(0, show=True, desc="nothing to do") as bar:
        bar.update(0)
    assert stream.getvalue() == ""


def test_a_notebook_bar_falls_back_to_text_when_widgets_fail(monkeypatch) -> None:
    _environment(monkeypatch, notebook=True, widgets=True, tty=False)
    broken = types.ModuleType("tqdm.notebook")

    def refuse(*args: object, **kwargs: object) -> None:
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")

    broken.tqdm = refuse  # type: ignore[attr-defined]  # a stand-in module
    monkeypatch.setitem(sys.modules, "tqdm.notebook", broken)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(2, desc="embedding", leave=True) as bar:
        bar.update(2)
    assert "embedding" in stream.getvalue()


def test_kernel_detection_needs_a_running_kernel(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert in_notebook() is False  # IPython is never imported to find out

    shell = types.SimpleNamespace(kernel=None)
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]  # a stand-in module
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert in_notebook() is False  # a terminal IPython shell has no kernel
    shell.kernel = object()
    assert in_notebook() is True
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert in_notebook() is False


def test_a_real_kernel_is_detected(tmp_path) -> None:
    """In an actual Jupyter kernel stderr is no terminal, and still a bar is chosen."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    source = (
        f"import sys; sys.path.insert(0, {str(progress.__file__).rsplit('/mmrag/', 1)[0]!r})\n"
        "from mmrag.progress import has_widgets, in_notebook, progress_mode, stderr_is_terminal\n"
        "print(in_notebook(), stderr_is_terminal(), progress_mode(None), progress_mode(False), has_widgets())"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[0].outputs).split()
    expected_mode = "notebook" if printed[-1] == "True" else "text"  # the kernel's own ipywidgets
    assert printed[:4] == ["True", "False", expected_mode, "off"]


def test_bulk_embedding_shows_a_bar_past_one_batch_in_a_terminal(monkeypatch) -> None:
    import mmrag

    _environment(monkeypatch, notebook=False, widgets=False, tty=True)
    encoder = mmrag.load_encoder("demo", device="cpu", batch_size=2)
    texts = [f"a red circle number {i}" for i in range(5)]
    for call, expect_bar in (
        (lambda: encoder.embed_texts(texts), True),  # 3 batches, a terminal: a bar
        (lambda: encoder.embed_texts(texts[:2]), False),  # one batch: no bar to wait for
        (lambda: encoder.embed_texts(texts, show_progress=False), False),
    ):
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        vectors = call()
        assert vectors.shape[0] in (2, 5)
        assert ("embedding" in stream.getvalue()) is expect_bar
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    from mmrag.demo_data import ShapeSample

    images = [ShapeSample("red", "circle", "large", "left").render()] * 3
    assert encoder.embed_images(images, show_progress=True).shape == (3, encoder.dim)
    assert "embedding" in stream.getvalue()
