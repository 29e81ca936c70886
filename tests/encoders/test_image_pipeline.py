"""The encoder's image pipeline: uint8 pixels from the worker pool, normalised on the device, equal to transformers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

import mmrag
from mmrag.encoders.transformers_dual import dual_preprocessing
from mmrag.encoders.workers import WORKER_MIN_IMAGES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth random image with some noise (photo-like for JPEG; every pixel still matters)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noisy = np.asarray(coarse).astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Enough JPEG and PNG files of mixed sizes for a call that starts the workers."""
    root = tmp_path_factory.mktemp("pipeline_images")
    sizes = [(40, 30), (64, 64), (23, 57), (100, 80), (32, 32), (90, 45)]
    paths = []
    for number in range(WORKER_MIN_IMAGES + 2):
        width, height = sizes[number % len(sizes)]
        path = root / f"image_{number:02d}.{'jpg' if number % 2 else 'png'}"
        _photo(width, height, number).save(path)
        paths.append(path)
    return paths


def _processor_vectors(encoder, items: list) -> np.ndarray:
    """What plain transformers gives: resolve, the image processor, get_image_features, L2 normalisation."""
    images = mmrag.resolve_images(items)
    with torch.inference_mode():
        features = encoder.forward_images(encoder.prepare_images(images))
    return torch.nn.functional.normalize(features.float(), dim=-1).numpy()


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("workers", [0, 2])
def test_files_give_the_processors_vectors_with_and_without_workers(tiny_model_dirs, files, workers: int) -> None:
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=8, image_workers=workers)
    try:
        assert encoder.image_spec is not None
        items: list = [*files[:-2], io.BytesIO(files[-2].read_bytes()), Image.open(files[-1])]
        vectors = encoder.embed_images(items)
        assert (len(encoder.image_worker_pids) > 0) == (workers > 0)
        np.testing.assert_allclose(vectors, _processor_vectors(encoder, [*files[:-1], files[-1]]), atol=1e-6)
        # Different images really differ (or equality would prove nothing).
        assert np.max(vectors[0] @ vectors[1:].T) < 0.99
    finally:
        encoder.close()


def test_close_leaves_no_worker_processes_and_the_encoder_restarts_them(tiny_model_dirs, files) -> None:
    before = _children()
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=16, image_workers=2)
    first = encoder.embed_images(files)
    pids = set(encoder.image_worker_pids)
    assert len(pids) == 2 and pids <= _children()
    encoder.close()
    assert encoder.image_worker_pids == ()
    assert not any(psutil.pid_exists(pid) for pid in pids) and _children() <= before
    np.testing.assert_allclose(encoder.embed_images(files), first, atol=1e-6)  # usable again
    restarted = set(encoder.image_worker_pids)
    assert restarted and restarted.isdisjoint(pids)
    encoder.close()
    assert not any(psutil.pid_exists(pid) for pid in restarted)


def test_small_calls_do_not_start_workers(tiny_model_dirs, files) -> None:
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=4, image_workers=2)
    try:
        small = encoder.embed_images(files[: WORKER_MIN_IMAGES - 1])
        assert encoder.image_worker_pids == ()  # prepared in-process: no start-up to pay
        np.testing.assert_allclose(small, _processor_vectors(encoder, files[: WORKER_MIN_IMAGES - 1]), atol=1e-6)
    finally:
        encoder.close()


def test_a_bad_file_names_its_index_and_nothing_is_returned(tiny_model_dirs, files, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=8, image_workers=2)
    try:
        items = [*files[:20], broken, *files[20:]]
        with pytest.raises(mmrag.ImageInputError, match=r"image 20\b.*broken\.jpg") as excinfo:
            encoder.embed_images(items)
        assert excinfo.value.index == 20
        assert encoder.embed_images(files).shape == (len(files), encoder.dim)  # the pool goes on
    finally:
        encoder.close()


def test_a_forward_that_fails_mid_call_leaves_the_workers_usable(
    tiny_model_dirs, files, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=4, image_workers=2)
    try:
        expected = encoder.embed_images(files)
        forward, calls = encoder.forward_images, []

        def failing_forward(batch):
            calls.append(len(batch["pixels"]))
            if len(calls) == 3:  # while batch 4 is being prepared and batch 5 is on the workers
                raise RuntimeError("boom")
            return forward(batch)

        monkeypatch.setattr(encoder, "forward_images", failing_forward)
        with pytest.raises(RuntimeError, match="boom"):
            encoder.embed_images(files)
        monkeypatch.undo()
        np.testing.assert_allclose(encoder.embed_images(files), expected, atol=1e-6)
        assert len(encoder.image_worker_pids) == 2
    finally:
        encoder.close()


def test_fast_decode_is_recorded_and_stays_close(tiny_model_dirs, files) -> None:
    exact = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0)
    fast = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0, fast_decode=True)
    assert "decode=" not in exact.preprocessing
    assert fast.preprocessing == exact.preprocessing + ";decode=fast"
    assert fast.signature["preprocessing"] != exact.signature["preprocessing"]  # a store will not mix them
    jpegs = [path for path in files if path.suffix == ".jpg"][:6]
    fast_vectors, exact_vectors = fast.embed_images(jpegs), exact.embed_images(jpegs)
    cosines = np.sum(fast_vectors * exact_vectors, axis=1)
    assert not np.allclose(fast_vectors, exact_vectors, atol=1e-6)  # JPEG DCT scaling did kick in
    assert np.min(cosines) >= 0.99  # here ~0.999; a random tiny model magnifies pixel noise


def test_image_workers_and_batch_size_change_no_signature(tiny_model_dirs) -> None:
    one = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0, batch_size=2)
    other = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=3, batch_size="auto")
    assert one.signature == other.signature
    assert other.batch_size == 64  # "auto" off a CUDA GPU: the default


def test_naflex_keeps_the_processor_path(tiny_encoders) -> None:
    encoder = tiny_encoders["siglip2"]
    assert encoder.image_spec is None and encoder.image_worker_pids == ()
    images = [_photo(40, 30, 1), _photo(64, 64, 2)]
    batch = encoder.prepare_image_inputs(images, limits=encoder.image_limits, start=0, call_size=100)
    assert "pixel_values" in batch and "pixels" not in batch
    np.testing.assert_allclose(encoder.embed_images(images), _processor_vectors(encoder, images), atol=1e-6)
    # Fast decoding does not apply there, so it is not recorded either.
    family = encoder._family
    assert dual_preprocessing(family, encoder.max_text_length, encoder.image_processor, True) == encoder.preprocessing


def test_sdpa_attention_is_requested(tiny_encoders) -> None:
    from mmrag.encoders.dual_loading import sdpa_attention

    for encoder in tiny_encoders.values():
        assert encoder.model.config._attn_implementation == "sdpa"
        assert sdpa_attention(encoder.model.config) == {"attn_implementation": "sdpa"}


def test_compile_wraps_the_towers_and_keeps_the_vectors(tiny_model_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag.encoders import transformers_dual

    monkeypatch.setattr(transformers_dual, "COMPILE_BACKEND", "eager")  # inductor needs minutes on a small CPU
    plain = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0)
    compiled = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0, compile=True)
    assert compiled._image_features is not compiled.model.get_image_features
    images = [_photo(40, 30, 1), _photo(64, 64, 2)]
    np.testing.assert_allclose(compiled.embed_images(images), plain.embed_images(images), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gets_pinned_uint8_and_the_same_vectors(tiny_model_dirs, files) -> None:
    gpu = mmrag.load_encoder(tiny_model_dirs["clip"], device="cuda", dtype="float32", image_workers=0)
    cpu = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", image_workers=0)
    batch = gpu.prepare_image_inputs(files[:4], limits=gpu.image_limits, start=0, call_size=4)
    assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].is_pinned()
    np.testing.assert_allclose(gpu.embed_images(files[:8]), cpu.embed_images(files[:8]), atol=1e-4)
