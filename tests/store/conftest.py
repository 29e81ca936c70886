"""Store fixtures: an embedded MultimodalStore in a temp dir with the tiny CLIP encoder, and the bundled demo model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import mmrag
from mmrag.store import MultimodalStore


@pytest.fixture
def store(tmp_path, clip_encoder) -> Iterator[MultimodalStore]:
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="test") as opened:
        yield opened


@pytest.fixture(scope="session")
def demo_encoder():
    """The bundled demo model (no download, fast), in chunks of 4 so that small folders take several chunks."""
    return mmrag.load_encoder("demo", device="cpu", batch_size=4)


@pytest.fixture
def demo_store(tmp_path, demo_encoder) -> Iterator[MultimodalStore]:
    with MultimodalStore(demo_encoder, path=tmp_path / "db", collection="demo") as opened:
        yield opened
