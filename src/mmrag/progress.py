"""Progress bars that show up where the user is looking: a Jupyter widget, a terminal, or nowhere.

:func:`progress_bar` is the one way mmrag makes a bar. With ``show=None`` it
picks by where the code runs (:func:`progress_mode`):

* in a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab): a widget bar
  (``tqdm.notebook``) when ``ipywidgets`` is installed, else a plain text bar
  on stderr, which notebooks render too;
* in a terminal (stderr is a TTY): a text bar on stderr;
* anywhere else (a pipe, a log file, a service, CI): no bar.

``show=True`` always shows one (a widget in Jupyter when it can, else text on
stderr) and ``show=False`` never does. Detection never imports IPython: only a
kernel that is already running counts.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Literal

__all__ = ["ProgressMode", "in_notebook", "progress_bar", "progress_mode"]

ProgressMode = Literal["notebook", "text", "off"]
"""How a bar is drawn: a Jupyter widget, text on stderr, or not at all."""


def in_notebook() -> bool:
    """Whether this code runs inside a Jupyter kernel (ipykernel).

    Returns:
        ``True`` when IPython and ipykernel are already imported and the
        active IPython shell has a kernel; never imports either.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an odd IPython install must never break a progress bar
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def has_widgets() -> bool:
    """Whether ``ipywidgets`` (what ``tqdm.notebook`` draws with) is installed."""
    return importlib.util.find_spec("ipywidgets") is not None


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal."""
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_mode(show: bool | None) -> ProgressMode:
    """Decide how to draw a bar.

    Args:
        show: ``True`` to force a bar, ``False`` to hide it, ``None`` to decide
            by the environment (see the module docstring).

    Returns:
        ``"notebook"`` (a widget), ``"text"`` (stderr) or ``"off"``.

    Example:
        >>> progress_mode(False)
        'off'
    """
    if show is False:
        return "off"
    if in_notebook():
        return "notebook" if has_widgets() else "text"
    if show is True or stderr_is_terminal():
        return "text"
    return "off"


def progress_bar(
    total: int | None,
    *,
    show: bool | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = False,
) -> Any:  # tqdm is untyped; the bar has update(n), set_postfix_str(s) and close()
    """A tqdm bar drawn where the user can see it, or a silent one.

    Args:
        total: Expected number of steps; a bar with ``total == 0`` is never
            shown (there is nothing to wait for).
        show: ``True``/``False`` force the bar on/off; ``None`` decides by the
            environment (:func:`progress_mode`).
        desc: Label in front of the bar.
        unit: What one step is (``"file"``, ``"image"``).
        leave: Keep the finished bar on screen.

    Returns:
        A tqdm bar (disabled when not shown; calling ``update`` and ``close``
        on it is always safe). Use it as a context manager or close it.

    Example:
        >>> with progress_bar(3, show=False, desc="indexing", unit="file") as bar:
        ...     bar.update(3)
    """
    mode = "off" if total == 0 else progress_mode(show)
    if mode == "notebook":
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(total=total, desc=desc, unit=unit, leave=leave)
        except ImportError:  # ipywidgets too old or broken: tqdm raises ImportError("IProgress not found")
            mode = "text"
    from tqdm.std import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, disable=mode == "off")
