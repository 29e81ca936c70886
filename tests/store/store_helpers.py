"""Shared helpers of the store tests: coloured test images, a small photo folder, a fresh interpreter."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mmrag
from mmrag.testing import speckled_image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
image = functools.partial(speckled_image, size=48, dots=40)  # 48 px, 40 random dots


def make_folder(root: Path) -> Path:
    """``root/photos``: four images (two in ``nested/``), a ``.txt`` and a ``.md`` text, and an ignored ``.csv``."""
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    for n, (name, colour) in enumerate(COLOURS.items()):
        target = folder / ("nested" if n % 2 else "") / f"{name}.png"
        image(colour, seed=n).save(target)
    (folder / "notes.txt").write_text("a note about red things", encoding="utf-8")
    (folder / "readme.md").write_text("# Blue\nsomething about the sea", encoding="utf-8")
    (folder / "ignored.csv").write_text("a,b", encoding="utf-8")
    return folder


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this tree's mmrag."""
    env = {**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )
