"""Decoding: Pillow restricted to the allowed formats, size checks, EXIF orientation, RGB conversion.

:func:`decode_image` turns encoded bytes into pixels; :func:`from_pil` and
:func:`from_array` validate in-memory pixels; every result goes through the
same RGB conversion. :func:`image_mime_type` reads a header only. Names not in
``__all__`` are internal to :mod:`mmrag.inputs`.
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmrag.errors import ImageInputError
from mmrag.inputs.limits import ImageLimits

__all__ = ["image_mime_type", "probe_image"]

# Text signatures Pillow has no opener for; only used to word error messages.
_EXTRA_SIGNATURES = ((b"%PDF-", "PDF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"))
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def image_mime_type(data: bytes, source: str = "") -> str:
    """The MIME type of encoded image bytes, from their header (no decoding).

    Args:
        data: Encoded image bytes.
        source: A file name or URL to guess from when the header says nothing.

    Returns:
        E.g. ``"image/png"``; ``"application/octet-stream"`` when unknown.

    Example:
        >>> image_mime_type(b"not an image", "cat.jpg")
        'image/jpeg'
    """
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            mime = Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError):
        mime = None
    return mime or mimetypes.guess_type(source)[0] or "application/octet-stream"


@contextlib.contextmanager
def _pillow_errors() -> Iterator[None]:
    """Turn Pillow failures (and its decompression-bomb warning) into ImageInputError.

    The warning filter is local to this block. ``warnings.catch_warnings`` is
    not thread-safe before Python 3.14, which is acceptable because it is only
    a second line of defence: ``max_pixels`` is checked from the header by
    :func:`check_dimensions` before any pixel is decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageInputError(f"image too large: {exc}") from exc
        except Exception as exc:  # Pillow's plugins raise many types on hostile data
            raise ImageInputError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    """Refuse images under ``min_side`` or over ``max_pixels``."""
    width, height = size
    if width < limits.min_side or height < limits.min_side:
        raise ImageInputError(f"image is {width}x{height}; both sides must be at least {limits.min_side} pixels")
    if width * height > limits.max_pixels:
        raise ImageInputError(
            f"image is {width}x{height} ({width * height} pixels), over max_pixels="
            f"{limits.max_pixels}; raise ImageLimits.max_pixels to accept it"
        )


def probe_image(data: bytes, limits: ImageLimits | None = None) -> tuple[int, int]:
    """Check encoded bytes from their header alone: an allowed format within the limits (no pixel is decoded).

    Args:
        data: The encoded image.
        limits: Limits to enforce; ``ImageLimits()`` when omitted.

    Returns:
        The image's ``(width, height)``.

    Raises:
        ImageInputError: Not an image of an allowed format, or outside the limits.
            Data that is corrupt past its header fails only when decoded.

    Example:
        >>> probe_image(open("photo.jpg", "rb").read())
        (640, 480)
    """
    limits = limits or ImageLimits()
    if not data:
        raise ImageInputError("empty input (0 bytes)")
    with _pillow_errors():
        image = _open_restricted(data, limits)
        try:
            check_dimensions(image.size, limits)
            return image.size
        finally:
            image.close()


def decode_image(data: bytes, limits: ImageLimits, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode encoded bytes into an RGB image under the limits.

    The EXIF orientation is applied in place (no full-size copy; the pixels
    are those of ``ImageOps.exif_transpose``). With ``draft`` (``(width,
    height)``), a JPEG is decoded with the smallest power-of-two DCT reduction
    that keeps both sides at least that size (fast, not pixel-identical);
    the limits are checked on the full size first, and other formats ignore it.
    """
    if not data:
        raise ImageInputError("empty input (0 bytes)")
    with _pillow_errors():
        image = _open_restricted(data, limits)
        try:
            check_dimensions(image.size, limits)  # the full size, before any scaling
            if draft is not None and image.format == "JPEG":
                image.draft("RGB", draft)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _to_rgb(image)
        except BaseException:
            image.close()
            raise
        if rgb is not image:
            image.close()
        return rgb


def _open_restricted(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open ``data`` with Pillow, trying only the allowed formats."""
    Image.init()
    formats = [name for name in sorted(limits.formats) if name in Image.OPEN]
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as exc:
        raise ImageInputError(_unidentified_reason(data, limits)) from exc


def _unidentified_reason(data: bytes, limits: ImageLimits) -> str:
    """Explain why Pillow could not open ``data`` with the allowed formats."""
    detected = _sniff_format(data[:16])
    if detected is None:
        return "cannot decode image: not a recognised image format"
    if detected in limits.formats:
        return f"cannot decode image: corrupt or truncated {detected} data"
    return f"unsupported image format {detected!r} (allowed: {', '.join(sorted(limits.formats))})"


def _sniff_format(prefix: bytes) -> str | None:
    """Name the format of ``prefix`` using only Pillow's signature checks (no decoding)."""
    for signature, name in _EXTRA_SIGNATURES:
        if prefix.startswith(signature):
            return name
    for name, (_factory, accept) in Image.OPEN.items():
        if accept is None:
            continue
        try:
            matched = accept(prefix)
        except Exception:  # a signature check failing just means "not this format"
            continue
        if matched and not isinstance(matched, str):  # a str is Pillow's "maybe" warning
            return name
    return None


def from_pil(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """Validate a caller's PIL image and return an RGB copy (no re-encoding)."""
    check_dimensions(image.size, limits)
    with _pillow_errors():
        return _to_rgb(ImageOps.exif_transpose(image))


def from_array(array: np.ndarray, limits: ImageLimits) -> Image.Image:
    """Convert a ``uint8`` HxW, HxWx3 or HxWx4 array into an RGB image."""
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype != np.uint8 or not shape_ok:
        raise ImageInputError(
            f"unsupported ndarray of shape {array.shape} and dtype {array.dtype};"
            " expected uint8 with shape (H, W), (H, W, 3) or (H, W, 4)"
        )
    height, width = array.shape[:2]
    check_dimensions((width, height), limits)
    with _pillow_errors():
        return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB, compositing transparency on white."""
    if image.mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float pixels to ``uint8`` without clipping.

    ``I;16*`` modes map 0..65535 to 0..255. ``I`` and ``F`` use the first range
    that holds all values: 0..1 (``F`` only), 0..255, 0..65535, else the
    image's own minimum..maximum.
    """
    if mode.startswith("I;16"):
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    floats = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = _value_range(floats, mode)
    scaled = (floats - low) * (255.0 / (high - low)) + 0.5
    clipped: np.ndarray = np.clip(scaled, 0, 255).astype(np.uint8)
    return clipped


def _value_range(values: np.ndarray, mode: str) -> tuple[float, float]:
    """Pick the nominal value range of an ``I`` or ``F`` image."""
    smallest, largest = float(values.min()), float(values.max())
    candidates = [(0.0, 1.0)] if mode == "F" else []
    candidates += [(0.0, 255.0), (0.0, 65535.0)]
    for low, high in candidates:
        if smallest >= low and largest <= high:
            return low, high
    return smallest, max(largest, smallest + 1.0)
