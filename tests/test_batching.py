"""EmbeddingBatcher: concurrent requests share forward passes; errors stay with their request."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

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


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Path("a.jpg"), id="Path"),
        pytest.param(lambda: "a.jpg", id="str"),
        pytest.param(lambda: b"\x89PNG", id="bytes"),
        pytest.param(lambda: Image.new("RGB", (8, 8)), id="PIL"),
        pytest.param(lambda: np.zeros((8, 8, 3), dtype=np.uint8), id="ndarray"),
        pytest.param(lambda: io.BytesIO(b"\x89PNG"), id="BytesIO"),
    ],
)
def test_a_single_item_is_refused_at_submit(make, encoder) -> None:
    batcher = EmbeddingBatcher(encoder)
    item = make()
    message = f"images must be a list of items, not a single {type(item).__name__}; wrap it in a list"
    for call in (
        lambda: batcher.submit("image", item),
        lambda: batcher.embed_images(item),
        lambda: asyncio.run(batcher.aembed_images(item)),
    ):
        with pytest.raises(mmrag.NotASequenceError) as excinfo:
            call()
        assert str(excinfo.value) == message
    with pytest.raises(mmrag.NotASequenceError, match="texts must be a list of items, not a single str"):
        batcher.embed_texts("a single text")
    with pytest.raises(mmrag.NotASequenceError, match=r"not a set \(order undefined\)"):
        batcher.submit("text", {"a", "b"})
    assert batcher.pending_items == 0
    batcher.close()


def test_bad_texts_are_refused_at_submit_naming_the_item(encoder) -> None:
    batcher = EmbeddingBatcher(encoder)
    with pytest.raises(mmrag.TextInputError, match="^text 1: expected str, got int$"):
        batcher.submit("text", ["fine", 3])
    with pytest.raises(mmrag.TextInputError, match=r"^text 0: not valid Unicode: lone surrogate U\+DC00"):
        asyncio.run(batcher.aembed_texts(["\udc00"]))
    with pytest.raises(ValueError, match="kind must be 'text', 'image' or 'pair'"):
        batcher.submit("video", ["x"])  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert batcher.pending_items == 0
    assert batcher.embed_texts(("a", "b")).shape == (2, encoder.dim)
    batcher.close()


def test_images_resolved_by_the_caller_are_not_resolved_again(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag.inputs import decode

    batcher = EmbeddingBatcher(encoder)
    resolved = mmrag.resolve_images(_images(3))
    expected = encoder.embed_images(resolved)
    copies: list[object] = []
    real = decode.from_pil
    monkeypatch.setattr(decode, "from_pil", lambda *args: copies.append(args) or real(*args))
    np.testing.assert_allclose(batcher.embed_images(resolved), expected, atol=1e-6)
    assert copies == []
    batcher.close()


def test_concurrent_pairs_share_forwards_and_equal_embed_fused(encoder) -> None:
    batcher = EmbeddingBatcher(encoder, max_wait_ms=20)
    images, texts = _images(32), [f"caption number {i}" for i in range(32)]
    expected = encoder.embed_fused(images, texts)
    assert not np.allclose(expected.fused[0], expected.fused[1])  # the pairs differ: the comparison means something
    before = encoder.forward_count

    async def main() -> list[mmrag.FusedEmbeddings]:
        return await asyncio.gather(*(batcher.aembed_fused([image], [text]) for image, text in zip(images, texts)))

    results = asyncio.run(main())
    forwards = encoder.forward_count - before
    assert forwards <= 8, f"32 concurrent pairs ran {forwards} forward passes"  # alone: 64
    for part in ("image", "text", "fused"):
        got = np.concatenate([getattr(result, part) for result in results])
        assert got.flags.c_contiguous and got.dtype == np.float32
        np.testing.assert_allclose(got, getattr(expected, part), atol=1e-5)
    blocking = batcher.embed_fused(images[:2], texts[:2])
    np.testing.assert_allclose(blocking.fused, expected.fused[:2], atol=1e-5)
    batcher.close()


def test_a_bad_pair_fails_alone_and_mismatched_pairs_are_refused(encoder) -> None:
    batcher = EmbeddingBatcher(encoder, max_wait_ms=20)

    async def main():
        return await asyncio.gather(
            batcher.aembed_fused(_images(2), ["one", "two"]),
            batcher.aembed_fused([_images(1)[0], b"garbage"], ["fine", "broken"]),
            return_exceptions=True,
        )

    good, bad = asyncio.run(main())
    assert good.fused.shape == (2, encoder.dim)
    assert isinstance(bad, mmrag.ImageInputError) and bad.index == 1 and "image 1" in str(bad)
    with pytest.raises(ValueError, match="one text per image"):
        batcher.embed_fused(_images(2), ["only one"])
    with pytest.raises(mmrag.TextInputError, match="^text 0: expected str, got int$"):
        batcher.submit("pair", [(_images(1)[0], 3)])
    with pytest.raises(ValueError, match=r"pair 0 must be an \(image, text\) tuple, got str; pass a list of pairs"):
        batcher.submit("pair", ["not a pair"])
    with pytest.raises(ValueError, match="got a tuple of 3 items"):
        batcher.submit("pair", [(_images(1)[0], "x", 1)])
    with pytest.raises(ValueError, match=r"expected an \(n, 3, dim\) array"):
        mmrag.FusedEmbeddings.from_stacked(np.zeros((4, encoder.dim), np.float32))
    assert batcher.embed_fused([], []).fused.shape == (0, encoder.dim)
    assert batcher.pending_items == 0
    batcher.close()
