"""``LoadOptions(gpu_decode=True)``: the fallback without torchvision, and the GPU-side code run on CPU tensors.

torchvision does not import beside the CPU torch here, so the routing and the resize/crop/orientation code
are exercised with a stand-in ``torchvision.io`` whose ``decode_jpeg`` decodes with Pillow (no EXIF
orientation, as nvJPEG) on the device it is given, and with the CPU added to the device types.
"""

from __future__ import annotations

import io
import logging
import sys
import types
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image, ImageDraw, ImageFilter

import mmrag
from mmrag.encoders import encoder_signature
from mmrag.encoders.preprocess import gpu_decode

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoded(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour fields, soft-edged ellipses and mild noise (asymmetric: a wrong rotation shows)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127 + 90 * np.sin(rng.uniform(0.002, 0.02) * x + rng.uniform(0.002, 0.02) * y + rng.uniform(0, 6.3))
        for _ in range(3)
    ]
    image = Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 20, width // 3)), y0 + int(rng.integers(height // 20, height // 3))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0))).astype(np.float32)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _rotated(seed: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(_photo_like(500, 300, seed), "JPEG", quality=90, exif=exif.tobytes())


class _ReadMode(Enum):
    UNCHANGED = 0
    RGB = 3


class FakeTorchvisionIO(types.ModuleType):
    """``torchvision.io`` stand-in: decode_jpeg with Pillow, on the device asked for; records the batches."""

    ImageReadMode = _ReadMode

    def __init__(self) -> None:
        super().__init__("torchvision.io")
        self.batches: list[int] = []

    def decode_jpeg(self, input, mode=_ReadMode.UNCHANGED, device="cpu"):  # noqa: A002 - torchvision's name
        many = isinstance(input, list)
        tensors = input if many else [input]
        self.batches.append(len(tensors))
        out = []
        for tensor in tensors:
            try:
                with Image.open(io.BytesIO(tensor.numpy().tobytes()), formats=["JPEG"]) as image:
                    pixels = np.asarray(image.convert("RGB") if mode == _ReadMode.RGB else image)
            except Exception as exc:
                raise RuntimeError(f"decode failed: {exc}") from exc
            out.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().to(device))
        return out if many else out[0]


@pytest.fixture
def fake_io(monkeypatch: pytest.MonkeyPatch) -> FakeTorchvisionIO:
    """The stand-in installed as ``torchvision.io``, and CPU models allowed to use it."""
    module = FakeTorchvisionIO()
    package = types.ModuleType("torchvision")
    package.io = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.io", module)
    monkeypatch.setattr(gpu_decode, "DECODE_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    return module


@pytest.fixture(scope="module")
def clip_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP whose processor resizes to 224 px (so resizing matters)."""
    from mmrag.testing import build_tiny_model

    path = build_tiny_model("clip", tmp_path_factory.mktemp("gpu_clip_224"))
    config = transformers.CLIPConfig.from_pretrained(path)
    config.vision_config.image_size, config.vision_config.patch_size = 224, 32
    torch.manual_seed(0)
    transformers.CLIPModel(config).eval().save_pretrained(path)
    processor = transformers.AutoProcessor.from_pretrained(path)
    processor.image_processor.size = {"shortest_edge": 224}
    processor.image_processor.crop_size = {"height": 224, "width": 224}
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Photo-like JPEG files and bytes of several sizes, two EXIF-rotated ones, a PNG, a grey and a CMYK JPEG."""
    root = tmp_path_factory.mktemp("gpu_items")
    listed: list = []
    for seed, (width, height) in enumerate([(640, 480), (1024, 768), (300, 500), (1500, 1000)]):
        path = root / f"photo_{seed}.jpg"
        path.write_bytes(_encoded(_photo_like(width, height, seed), "JPEG", quality=90))
        listed.append(path if seed % 2 else str(path))
    listed.append(_rotated(7, 6))
    listed.append(_rotated(8, 3))
    listed.append(_encoded(_photo_like(320, 240, 9), "PNG"))
    listed.append(_encoded(_photo_like(400, 300, 10).convert("L"), "JPEG", quality=90))
    listed.append(_encoded(_photo_like(260, 260, 11).convert("CMYK"), "JPEG", quality=90))
    return listed


GPU_ITEMS = 7  # the RGB and grey JPEGs; the PNG and the CMYK JPEG take the exact path


def test_gpu_decode_is_a_checked_load_option() -> None:
    assert mmrag.LoadOptions().gpu_decode is False
    assert mmrag.LoadOptions(gpu_decode=True).describe() == {"gpu_decode": True}
    with pytest.raises(mmrag.InvalidInputError, match="gpu_decode must be True or False"):
        mmrag.LoadOptions(gpu_decode="yes")  # type: ignore[arg-type]


def test_without_torchvision_it_falls_back_to_the_exact_vectors(
    clip_224: Path, items: list, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    monkeypatch.setattr(gpu_decode, "DECODE_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    exact = mmrag.load_encoder(clip_224, device="cpu", image_workers=0)
    with caplog.at_level(logging.INFO, logger="mmrag.encoders"):
        asked = mmrag.load_encoder(clip_224, device="cpu", image_workers=0, gpu_decode=True)
    assert asked.gpu_decode is False
    assert "gpu_decode=True has no effect (torchvision does not import" in caplog.text
    assert asked.preprocessing == exact.preprocessing
    assert encoder_signature(clip_224, device="cpu", gpu_decode=True)["preprocessing"] == exact.preprocessing
    np.testing.assert_array_equal(asked.embed_images(items), exact.embed_images(items))


def test_off_cuda_it_falls_back_with_a_reason(clip_224: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mmrag.encoders"):
        encoder = mmrag.load_encoder(clip_224, device="cpu", image_workers=0, gpu_decode=True)
    assert encoder.gpu_decode is False
    assert "the model runs on cpu, not CUDA" in caplog.text
    assert "decode=" not in encoder.preprocessing


@pytest.mark.parametrize("model", ["clip_224", "demo"])
def test_gpu_path_routes_jpegs_and_keeps_vectors_close(
    model: str, items: list, fake_io: FakeTorchvisionIO, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue("clip_224") if model == "clip_224" else Path(mmrag.__file__).parent / "models/demo"
    exact = mmrag.load_encoder(path, device="cpu", image_workers=0)
    encoder = mmrag.load_encoder(path, device="cpu", image_workers=0, gpu_decode=True)
    assert encoder.gpu_decode is True
    assert encoder.preprocessing == exact.preprocessing + ";decode=gpu"
    assert encoder_signature(path, device="cpu", gpu_decode=True)["preprocessing"] == encoder.preprocessing
    vectors, reference = encoder.embed_images(items), exact.embed_images(items)
    assert sum(fake_io.batches) == GPU_ITEMS  # every JPEG but the CMYK one, in one batch
    cosines = (vectors * reference).sum(-1)
    assert cosines.min() >= 0.995, cosines
    np.testing.assert_allclose(vectors[-3:-2], reference[-3:-2], atol=1e-6)  # the PNG: exact path
    np.testing.assert_allclose(vectors[-1:], reference[-1:], atol=1e-6)  # the CMYK JPEG: exact path
    between = reference @ reference.T  # the bar means something: different images are far apart
    np.fill_diagonal(between, -1)
    assert float(between.max()) < 0.995


def test_wrong_orientation_would_be_caught(clip_224: Path, fake_io: FakeTorchvisionIO) -> None:
    """The rotated JPEGs' vectors are close only when the orientation is applied (the test above means it)."""
    exact = mmrag.load_encoder(clip_224, device="cpu", image_workers=0)
    upright = _encoded(_photo_like(500, 300, 7), "JPEG", quality=90)  # the pixels of _rotated(7, 6), unrotated
    rotated = exact.embed_images([_rotated(7, 6)])
    assert float((exact.embed_images([upright]) * rotated).sum()) < 0.995


def test_bad_items_raise_with_their_index(clip_224: Path, items: list, fake_io: FakeTorchvisionIO) -> None:
    encoder = mmrag.load_encoder(clip_224, device="cpu", image_workers=0, gpu_decode=True, batch_size=4)
    broken_jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # JPEG magic, nothing decodable
    with pytest.raises(mmrag.ImageInputError) as caught:
        encoder.embed_images([*items[:5], broken_jpeg, items[6]])
    assert caught.value.index == 5
    with pytest.raises(mmrag.ImageInputError) as caught:
        encoder.embed_images([items[0], items[6], b"not an image", items[1]])
    assert caught.value.index == 2
