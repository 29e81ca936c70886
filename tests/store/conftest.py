"""The store fixture: an embedded MultimodalStore in a temp dir with the tiny CLIP encoder (batch_size 4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmrag.store import MultimodalStore


@pytest.fixture
def store(tmp_path, clip_encoder) -> Iterator[MultimodalStore]:
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="test") as opened:
        yield opened
