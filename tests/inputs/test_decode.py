"""Decoding: formats, EXIF, colour conversion to RGB, bad data and the pixel limits."""

from __future__ import annotations

import io
import subprocess
import time

import numpy as np
import pytest
from input_helpers import (
    PNG_BYTES,
    encode,
    noisy_jpeg,
    png,
    png_header_only,
    reason_of,
)
from PIL import Image, ImageFile, ImageOps

from mmrag.errors import ImageInputError
from mmrag.inputs import (
    ImageLimits,
    image_mime_type,
    resolve_image,
)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_default_formats_decode(fmt: str) -> None:
    assert resolve_image(encode(Image.new("RGB", (9, 7), (255, 0, 0)), fmt)).size == (9, 7)


def test_mpo_counts_as_jpeg() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    red, _green, blue = resolve_image(data, limits=ImageLimits(formats=frozenset({"JPEG"}))).getpixel((4, 4))
    assert red > 200 and blue < 60


def test_numpy_rgba_and_gray() -> None:
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red; the rest fully transparent black
    image = resolve_image(rgba)
    assert image.size == (5, 4)
    assert image.getpixel((0, 0)) == (200, 0, 0)
    assert image.getpixel((1, 1)) == (255, 255, 255)
    gray = np.full((4, 5), 77, dtype=np.uint8)
    assert resolve_image(gray).getpixel((2, 2)) == (77, 77, 77)


def test_exif_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(Image.new("RGB", (20, 10), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    assert resolve_image(data).size == (10, 20)
    assert resolve_image(Image.open(io.BytesIO(data))).size == (10, 20)


def test_exif_orientation_in_place_gives_the_pixels_of_a_transposed_copy() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise when displayed
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)), "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as original:
        expected = np.asarray(ImageOps.exif_transpose(original).convert("RGB"))
    resolved = resolve_image(data)
    assert resolved.mode == "RGB" and np.array_equal(np.asarray(resolved), expected)


def test_draft_scales_a_jpeg_but_never_below_the_asked_size() -> None:
    data = encode(Image.new("RGB", (1024, 768), (10, 200, 30)), "JPEG")
    assert resolve_image(data).size == (1024, 768)  # exact by default
    assert resolve_image(data, draft=(224, 224)).size == (512, 384)  # 1/4 would make 192 < 224
    assert resolve_image(data, draft=(100, 100)).size == (256, 192)  # 1/8 would make 96 < 100
    png_data = encode(Image.new("RGB", (1024, 768)), "PNG")
    assert resolve_image(png_data, draft=(100, 100)).size == (1024, 768)  # only JPEGs have DCT scaling


def test_draft_checks_the_limits_on_the_full_size() -> None:
    data = encode(Image.new("RGB", (1000, 1000)), "JPEG")
    with pytest.raises(ImageInputError, match="over max_pixels"):
        resolve_image(data, limits=ImageLimits(max_pixels=500_000), draft=(64, 64))


def test_rgba_transparent_pixel_becomes_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    resolved = resolve_image(encode(image))
    assert resolved.getpixel((1, 1)) == (255, 255, 255)
    assert resolved.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    resolved = resolve_image(encode(image, transparency=0))
    assert resolved.getpixel((0, 0)) == (255, 0, 0)
    assert resolved.getpixel((2, 2)) == (255, 255, 255)


def test_la_composited_on_white() -> None:
    image = Image.new("LA", (4, 4), (0, 0))
    image.putpixel((0, 0), (0, 255))
    resolved = resolve_image(encode(image))
    assert resolved.getpixel((0, 0)) == (0, 0, 0)
    assert resolved.getpixel((3, 3)) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    red, green, blue = resolve_image(data).getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32768, 65535]] * 3, dtype=np.uint16)
    data = encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    row = [resolve_image(data).getpixel((x, 0))[0] for x in range(4)]
    assert row == [0, 1, 128, 255]


def test_float_tiff_in_unit_range_is_scaled() -> None:
    values = np.array([[0.0, 0.5, 1.0]] * 3, dtype=np.float32)
    row = [resolve_image(encode(Image.fromarray(values), "TIFF")).getpixel((x, 0))[0] for x in range(3)]
    assert row == [0, 128, 255]


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert resolve_image(data).getpixel((1, 1)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(noisy_jpeg()[:1500], "cannot decode image", id="truncated-jpeg"),
        pytest.param(PNG_BYTES[:-30], "cannot decode image", id="truncated-png"),
        pytest.param(np.random.default_rng(1).bytes(2000), "cannot decode image", id="random-bytes"),
        pytest.param(b"", "empty input (0 bytes)", id="zero-bytes"),
        pytest.param(png((1, 1)), "at least 3 pixels", id="1x1"),
        pytest.param(png((40, 2)), "at least 3 pixels", id="40x2"),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "unsupported image format 'PDF'", id="pdf"),
    ],
)
def test_bad_image_data(data: bytes, expected: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(data)
    assert expected in reason_of(excinfo)


def test_eps_refused_without_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an external program was started")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "check_call", forbidden)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"
    with pytest.raises(ImageInputError, match="unsupported image format 'EPS'"):
        resolve_image(eps)
    with pytest.raises(ValueError, match="EPS"):
        ImageLimits(formats=frozenset({"PNG", "eps"}))


def test_formats_restrict_decoding() -> None:
    limits = ImageLimits(formats=frozenset({"png"}))
    assert limits.formats == frozenset({"PNG"})
    with pytest.raises(ImageInputError, match="unsupported image format 'JPEG'"):
        resolve_image(noisy_jpeg(), limits=limits)


def test_header_claiming_40000x40000_fails_fast() -> None:
    data = png_header_only(40000, 40000)
    assert len(data) < 100
    started = time.monotonic()
    with pytest.raises(ImageInputError, match="pixels"):
        resolve_image(data)
    assert time.monotonic() - started < 0.5


def test_pixel_cap_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self))
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(png_header_only(2000, 2000), limits=ImageLimits(max_pixels=1_000_000))
    assert "over max_pixels=1000000" in reason_of(excinfo)
    assert loads == []


def test_image_mime_type() -> None:
    assert image_mime_type(PNG_BYTES) == "image/png"
    assert image_mime_type(noisy_jpeg()) == "image/jpeg"
    assert image_mime_type(b"not an image", "photos/cat.webp") == "image/webp"
    assert image_mime_type(b"not an image") == "application/octet-stream"
