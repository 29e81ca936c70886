"""Fixtures for the Chroma adapter: the bundled demo model and a folder of its sample shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import mmrag
from mmrag.demo_data import write_sample_folder

SEED = 6
"""``write_sample_folder(n=12, seed=6)`` holds exactly one red circle ("a large red circle at the top")."""


@dataclass(frozen=True)
class Shape:
    """One sample image and its English caption."""

    id: str
    path: Path
    caption: str


@pytest.fixture(scope="session")
def demo_encoder() -> mmrag.Encoder:
    """The bundled demo model on the CPU, loaded once."""
    return mmrag.load_encoder("demo", device="cpu")


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> list[Shape]:
    """Twelve sample PNGs (64x64 RGB) with their captions, read from the caption files written beside them."""
    folder = tmp_path_factory.mktemp("shapes")
    images = [path for path in write_sample_folder(folder, n=12, seed=SEED, languages=("en",)) if path.suffix == ".png"]
    return [Shape(p.stem, p, p.with_suffix(".en.txt").read_text(encoding="utf-8").strip()) for p in images]


@pytest.fixture(scope="session")
def red_circle(shapes: list[Shape]) -> Shape:
    """The one red circle among the shapes."""
    (found,) = [shape for shape in shapes if "red circle" in shape.caption]
    return found
