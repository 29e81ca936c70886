"""Encoder.cache: texts and images seen before cost a lookup, not a forward pass (issue #14)."""

from __future__ import annotations

import numpy as np
import pytest

import mmrag
from mmrag.cache import EmbeddingCache
from mmrag.encoders.lazy import LazyEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (32, 28 + i, 3), dtype=np.uint8) for i in range(count)]


@pytest.fixture
def encoder(tiny_model_dirs):
    cache = EmbeddingCache()
    loaded = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=4, image_workers=0, cache=cache)
    yield loaded
    loaded.close()


def test_load_encoder_attaches_the_cache_and_defaults_to_none(encoder, clip_encoder) -> None:
    assert isinstance(encoder.cache, EmbeddingCache)
    assert clip_encoder.cache is None


def test_repeated_texts_cost_no_forward_pass_and_match_the_uncached_vectors(encoder, clip_encoder) -> None:
    texts = ["a red circle", "a blue square", "a red circle", "a green triangle on a white ground"]
    first = encoder.embed_texts(texts)
    n = encoder.forward_count
    again = encoder.embed_texts(texts)
    assert encoder.forward_count == n
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_allclose(first, clip_encoder.embed_texts(texts), atol=1e-5)
    assert encoder.cache.hits >= len(texts)


def test_repeated_images_cost_no_forward_pass(encoder, clip_encoder, tmp_path) -> None:
    from PIL import Image

    arrays = _images(3)
    path = tmp_path / "one.png"
    Image.fromarray(arrays[0]).save(path)
    items = [*arrays, path, str(path)]
    first = encoder.embed_images(items)
    n = encoder.forward_count
    again = encoder.embed_images(items)
    assert encoder.forward_count == n
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_allclose(first, clip_encoder.embed_images(items), atol=1e-5)


def test_a_bad_image_is_named_by_its_index_with_a_cache(encoder) -> None:
    with pytest.raises(mmrag.ImageInputError, match="image 1"):
        encoder.embed_images([_images(1)[0], b"not an image"])


def test_embed_fused_twice_runs_zero_forward_passes(encoder) -> None:
    images, texts = _images(2), ["a red circle", "a blue square"]
    first = encoder.embed_fused(images, texts)
    n = encoder.forward_count
    again = encoder.embed_fused(images, texts)
    assert encoder.forward_count == n
    np.testing.assert_allclose(again.fused, first.fused, atol=1e-6)


def test_a_lazy_encoder_answers_from_its_cache_without_loading(tiny_model_dirs, clip_encoder) -> None:
    cache = EmbeddingCache()
    texts = ["a red circle"]
    warm = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", cache=cache)
    expected = warm.embed_texts(texts)
    lazy = LazyEncoder(tiny_model_dirs["clip"], device="cpu", cache=cache)
    np.testing.assert_allclose(lazy.embed_texts(texts), expected, atol=1e-6)
    assert not lazy.loaded
    lazy.embed_texts(["something new"])
    assert lazy.loaded


def test_a_bad_file_after_cached_images_is_named_by_its_input_index_and_path(encoder, tmp_path) -> None:
    good = _images(2)
    encoder.embed_images(good)  # both cached: only the broken file is a miss
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(mmrag.ImageInputError, match=r"image 2 \(.*broken\.png\)"):
        encoder.embed_images([*good, broken])
