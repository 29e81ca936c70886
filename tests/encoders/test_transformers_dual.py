"""Parity with plain transformers, per family, and the batching contract."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmrag
from mmrag.encoders.transformers_dual import pooled_features

FAMILIES = ("clip", "siglip", "siglip2", "chinese_clip")
TEXTS = [
    "a red circle",
    "a small blue square on the left",
    "红色的圆形",
    "左边的蓝色小正方形",
    "a photo of a cat " * 40,  # longer than every model's limit: truncated, not an error
]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (64, 64), (23, 57), (100, 80), (32, 32)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _normalize(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).numpy()


def _reference(path, family: str, texts: list[str], images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors computed with plain transformers, the way its docs show."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    siglip = family in ("siglip", "siglip2")
    limit = min(processor.tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    text_inputs = processor(
        text=texts, padding="max_length" if siglip else True, truncation=True, max_length=limit, return_tensors="pt"
    )
    # Siglip2Processor's call defaults override the image processor's saved settings; call it directly.
    image_inputs = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        text = pooled_features(model.get_text_features(**text_inputs))
        image = pooled_features(model.get_image_features(**image_inputs))
    return _normalize(text), _normalize(image)


@pytest.mark.parametrize("family", FAMILIES)
def test_vectors_match_plain_transformers(family: str, tiny_model_dirs, tiny_encoders) -> None:
    encoder = tiny_encoders[family]
    images = _images()
    ref_text, ref_image = _reference(tiny_model_dirs[family], family, TEXTS, images)

    text = encoder.embed_texts(TEXTS)
    image = encoder.embed_images(images)

    assert text.dtype == np.float32 and image.dtype == np.float32
    assert text.shape == (len(TEXTS), encoder.dim) and image.shape == (len(images), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(text * ref_text, axis=1)) >= 0.9999
    assert np.min(np.sum(image * ref_image, axis=1)) >= 0.9999
    # The tiny models must tell inputs apart, or this parity would prove nothing.
    assert np.max(text[0] @ text[1:].T) < 0.99
    assert np.max(image[0] @ image[1:].T) < 0.99


@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_siglip_texts_are_padded_to_max_length(family: str, tiny_encoders) -> None:
    encoder = tiny_encoders[family]
    batch = encoder.prepare_texts(["short", "a somewhat longer text"])
    assert batch["input_ids"].shape[1] == encoder.max_text_length == 64
    # Padding must not depend on the batch: alone or together, the same vector.
    alone = encoder.embed_texts(["short"])
    together = encoder.embed_texts(["short", "a much longer text that changes the longest padding " * 3])[:1]
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_family_comes_from_model_type(tiny_encoders) -> None:
    assert {family: enc.family for family, enc in tiny_encoders.items()} == {f: f for f in FAMILIES}


def test_cpu_defaults_to_float32(tiny_encoders) -> None:
    encoder = tiny_encoders["clip"]
    assert encoder.device.type == "cpu" and encoder.dtype == torch.float32


def test_batches_never_exceed_batch_size(tiny_model_dirs) -> None:
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=3)
    seen: list[int] = []
    original = encoder.forward_images

    def spy(batch):
        assert batch["pixels"].dtype == torch.uint8  # CLIP takes the uint8 pipeline
        seen.append(batch["pixels"].shape[0])
        return original(batch)

    encoder.forward_images = spy  # type: ignore[method-assign]  # the wrong type is what the test passes
    vectors = encoder.embed_images(_images() + _images()[:2])  # 7 images of mixed sizes
    assert seen == [3, 3, 1]
    assert vectors.shape == (7, encoder.dim)
    # Batched results equal one-at-a-time results.
    single = np.concatenate([encoder.embed_images([im]) for im in _images()])
    np.testing.assert_allclose(vectors[:5], single, atol=1e-5)


def test_empty_inputs_give_empty_arrays(clip_encoder) -> None:
    assert clip_encoder.embed_texts([]).shape == (0, clip_encoder.dim)
    assert clip_encoder.embed_images([]).shape == (0, clip_encoder.dim)
    assert clip_encoder.embed_texts([]).dtype == np.float32


def test_fused_is_normalized_sum(clip_encoder) -> None:
    images = _images()[:2]
    fused = clip_encoder.embed_fused(images, ["a red circle", "a blue square"])
    expected = fused.image + fused.text
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fused.fused, expected, atol=1e-6)
    np.testing.assert_allclose(fused.image, clip_encoder.embed_images(images), atol=1e-6)
    with pytest.raises(ValueError, match="one text per image"):
        clip_encoder.embed_fused(images, ["only one"])


def test_bad_text_items_are_named(clip_encoder) -> None:
    with pytest.raises(mmrag.TextInputError, match="text 1: expected str, got int") as excinfo:
        clip_encoder.embed_texts(["ok", 3])
    assert isinstance(excinfo.value, TypeError) and excinfo.value.index == 1
    with pytest.raises(mmrag.NotASequenceError, match="texts must be a list of items, not a single str; wrap it"):
        clip_encoder.embed_texts("a single string")


def test_bad_image_in_batch_names_index_and_returns_nothing(clip_encoder) -> None:
    images: list[object] = [*list(_images()[:3]), b"not an image", *list(_images()[:2])]
    with pytest.raises(mmrag.ImageInputError, match=r"image 3\b"):
        clip_encoder.embed_images(images)


def test_concurrent_calls_are_safe(clip_encoder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"text number {i}" for i in range(12)]
    expected = clip_encoder.embed_texts(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: clip_encoder.embed_texts(texts), range(4)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


# ------------------------------------------------------------ one input layer
SINGLE_IMAGES = [
    pytest.param(lambda: Path("a.jpg"), id="Path"),
    pytest.param(lambda: "a.jpg", id="str"),
    pytest.param(lambda: b"\x89PNG", id="bytes"),
    pytest.param(lambda: Image.new("RGB", (8, 8)), id="PIL"),
    pytest.param(lambda: np.zeros((8, 8, 3), dtype=np.uint8), id="ndarray"),
    pytest.param(lambda: io.BytesIO(b"\x89PNG"), id="BytesIO"),
]


@pytest.mark.parametrize("make", SINGLE_IMAGES)
def test_a_single_image_is_refused_the_same_way_everywhere(make, clip_encoder) -> None:
    item = make()
    message = f"images must be a list of items, not a single {type(item).__name__}; wrap it in a list"
    before = clip_encoder.forward_count
    for call in (lambda: clip_encoder.embed_images(item), lambda: clip_encoder.embed_fused(item, ["a text"])):
        with pytest.raises(mmrag.NotASequenceError) as excinfo:
            call()
        assert str(excinfo.value) == message
    assert clip_encoder.forward_count == before


def test_unordered_batches_are_refused(clip_encoder) -> None:
    with pytest.raises(mmrag.NotASequenceError, match=r"texts must be a list of items, not a set \(order undefined\)"):
        clip_encoder.embed_texts({"a red circle", "a blue square"})
    with pytest.raises(
        mmrag.NotASequenceError, match=r"images must be a list of items, not a dict \(order undefined\)"
    ):
        clip_encoder.embed_images({"a.png": 1})
    # Any ordered iterable is fine.
    np.testing.assert_allclose(
        clip_encoder.embed_texts(t for t in ("a", "b")), clip_encoder.embed_texts(["a", "b"]), atol=1e-6
    )


def test_text_items_are_checked_before_the_tokenizer(clip_encoder) -> None:
    with pytest.raises(mmrag.TextInputError, match=r"^text 2: not valid Unicode: lone surrogate U\+D800") as excinfo:
        clip_encoder.embed_texts(["fine", "also fine", "a\ud800b"])
    assert excinfo.value.index == 2 and excinfo.value.code == "invalid_text"
    with pytest.raises(mmrag.TextInputError, match="^text 0: expected str, got bytes$"):
        clip_encoder.embed_fused(_images()[:1], [b"bytes"])


def test_resolved_images_are_not_resolved_again(clip_encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag.inputs import decode

    resolved = mmrag.resolve_images(_images()[:3])
    expected = clip_encoder.embed_images(_images()[:3])
    calls: list[str] = []
    for name in ("decode_image", "from_pil", "from_array"):
        real = getattr(decode, name)
        monkeypatch.setattr(decode, name, lambda *args, real=real, name=name: calls.append(name) or real(*args))
    np.testing.assert_allclose(clip_encoder.embed_images(resolved), expected, atol=1e-6)
    assert calls == []
    clip_encoder.embed_images(_images()[:1])  # a caller's own image is still resolved (copied)
    assert calls == ["from_pil"]
