"""LazyEncoder and encoder_signature: the signature without the weights, the model on first use."""

from __future__ import annotations

import numpy as np
import pytest

import mmrag
from mmrag.encoders import LazyEncoder, encoder_signature

FAMILIES = ("clip", "siglip", "siglip2", "chinese_clip")


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every weight load through transformers' AutoModel, by source."""
    from transformers import AutoModel

    loads: list[str] = []
    real = AutoModel.from_pretrained

    def counting(source, *args, **kwargs):
        loads.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", counting)
    return loads


@pytest.mark.parametrize("family", FAMILIES)
def test_the_signature_without_weights_is_the_loaded_encoders(family, tiny_model_dirs, tiny_encoders) -> None:
    assert encoder_signature(tiny_model_dirs[family], device="cpu") == tiny_encoders[family].signature


def test_fast_decode_is_in_the_signature_without_weights(tiny_model_dirs) -> None:
    fast = encoder_signature(tiny_model_dirs["clip"], device="cpu", fast_decode=True)
    assert fast is not None and str(fast["preprocessing"]).endswith(";decode=fast")
    naflex = encoder_signature(tiny_model_dirs["siglip2"], device="cpu", fast_decode=True)
    assert naflex is not None and "decode=fast" not in str(naflex["preprocessing"])  # does not apply there


def test_the_model_loads_on_first_use_only(tiny_model_dirs, clip_encoder, model_loads) -> None:
    lazy = LazyEncoder(tiny_model_dirs["clip"], device="cpu", batch_size=4)
    assert not lazy.loaded and model_loads == []
    assert (lazy.model_id, lazy.family, lazy.dim) == (clip_encoder.model_id, "clip", clip_encoder.dim)
    assert lazy.signature == clip_encoder.signature and lazy.batch_size == 4
    assert "not loaded yet" in repr(lazy) and lazy.forward_count == 0
    texts = ["a red circle", "a blue square"]
    np.testing.assert_allclose(lazy.embed_texts(texts), clip_encoder.embed_texts(texts), atol=1e-6)
    assert lazy.loaded and len(model_loads) == 1 and lazy.forward_count == 1
    images = [np.full((20, 30, 3), 90, np.uint8), np.full((30, 20, 3), 200, np.uint8)]
    np.testing.assert_allclose(lazy.embed_images(images), clip_encoder.embed_images(images), atol=1e-6)
    assert lazy.max_text_length == clip_encoder.max_text_length  # anything else comes from the loaded encoder
    assert len(model_loads) == 1
    lazy.close()


def test_a_lazy_store_checks_the_signature_before_any_weight(tmp_path, tiny_model_dirs, model_loads) -> None:
    with mmrag.MultimodalStore(mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu"), path=tmp_path) as store:
        store.add_texts(["a red circle"])
    model_loads.clear()
    with pytest.raises(mmrag.StoreMismatchError, match="differs in: preprocessing"):
        mmrag.MultimodalStore(LazyEncoder(tiny_model_dirs["clip"], device="cpu", fast_decode=True), path=tmp_path)
    assert model_loads == []


def test_errors_come_at_construction(tmp_path) -> None:
    with pytest.raises(mmrag.ModelNotAvailableError):
        LazyEncoder(tmp_path / "no-such-model", device="cpu", local_files_only=True)


def _truncated_jpeg() -> bytes:
    """A JPEG whose header is fine and whose data stops halfway: it fails only when decoded."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def test_a_first_image_that_does_not_decode_loads_nothing(tiny_model_dirs, clip_encoder, model_loads) -> None:
    from mmrag.inputs import probe_image

    broken = _truncated_jpeg()
    assert probe_image(broken) == (64, 64)  # only decoding finds it
    empty = LazyEncoder(tiny_model_dirs["clip"], device="cpu")
    assert empty.embed_images([]).shape == (0, empty.dim) and empty.embed_texts([]).shape == (0, empty.dim)
    assert not empty.loaded and model_loads == []
    good = np.full((20, 30, 3), 90, np.uint8)
    lazy = LazyEncoder(tiny_model_dirs["clip"], device="cpu")
    with pytest.raises(mmrag.ImageInputError) as caught:
        lazy.embed_images([broken, good])
    assert caught.value.index == 0 and "truncated" in str(caught.value)
    assert not lazy.loaded and model_loads == []
    np.testing.assert_allclose(lazy.embed_images([good]), clip_encoder.embed_images([good]), atol=1e-6)
    assert len(model_loads) == 1
    with pytest.raises(mmrag.ImageInputError) as caught:  # once loaded, errors are the encoder's own
        lazy.embed_images([good, broken])
    assert caught.value.index == 1
    lazy.close()


def test_embed_fused_is_the_loaded_familys_own(tiny_model_dirs, clip_encoder) -> None:
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "visualized_bge"
    joint = mmrag.load_encoder(golden / "tiny_base_en.pth", text_model=str(golden / "tiny-bge-base-en-v1.5"))
    images = [np.full((30, 30, 3), 90, np.uint8), np.full((30, 30, 3), 200, np.uint8)]
    texts = ["a red circle", "a blue square"]
    lazy = LazyEncoder(tiny_model_dirs["clip"], device="cpu")
    np.testing.assert_allclose(lazy.embed_fused(images, texts).fused, clip_encoder.embed_fused(images, texts).fused)
    lazy._loaded = joint  # as if its checkpoint were a Visualized-BGE one: it encodes each pair jointly
    expected = joint.embed_fused(images, texts)
    np.testing.assert_allclose(lazy.embed_fused(images, texts).fused, expected.fused, atol=1e-6)
    plain_sum = mmrag.Encoder.embed_fused(joint, images, texts).fused
    assert not np.allclose(plain_sum, expected.fused, atol=1e-3)  # so the check above tells the two apart
    lazy.close()
