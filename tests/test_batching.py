"""EmbeddingBatcher: concurrent requests share forward passes; errors stay with their request."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

import mmrag
from mmrag.batching import EmbeddingBatcher, QueueFullError


@pytest.fixture(scope="module")
def encoder(tiny_model_dirs):
    return mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=64)


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (24 + i % 5, 30, 3), dtype=np.uint8)) for i in range(n)]


def test_concurrent_single_image_requests_share_forwards(encoder) -> None:
    batcher = EmbeddingBatcher(encoder, max_wait_ms=20)
    images = _images(64)
    expected = encoder.embed_images(images)
    before = encoder.forward_count

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.aembed_images([image]) for image in images))

    results = asyncio.run(main())
    forwards = encoder.forward_count - before
    assert forwards <= 8, f"64 concurrent requests ran {forwards} forward passes"
    np.testing.assert_allclose(np.concatenate(results), expected, atol=1e-5)
    batcher.close()


def test_a_bad_request_fails_alone(encoder) -> None:
    batcher = EmbeddingBatcher(encoder, max_wait_ms=20)

    async def main():
        return await asyncio.gather(
            batcher.aembed_images(_images(2)),
            batcher.aembed_images([_images(1)[0], b"garbage"]),
            batcher.aembed_texts(["fine"]),
            return_exceptions=True,
        )

    good, bad, text = asyncio.run(main())
    assert good.shape == (2, encoder.dim) and text.shape == (1, encoder.dim)
    assert isinstance(bad, mmrag.ImageInputError) and "image 1" in str(bad)
    batcher.close()


def test_queue_is_bounded(encoder) -> None:
    batcher = EmbeddingBatcher(encoder, max_pending_items=3)
    with pytest.raises(QueueFullError, match="queue is full"):
        batcher.submit("text", ["a", "b", "c", "d"])
    assert batcher.embed_texts(["a", "b"]).shape == (2, encoder.dim)
    assert batcher.pending_items == 0
    batcher.close()


def test_empty_request(encoder) -> None:
    batcher = EmbeddingBatcher(encoder)
    assert batcher.embed_texts([]).shape == (0, encoder.dim)
