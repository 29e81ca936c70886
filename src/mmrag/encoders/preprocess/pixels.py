"""From an image input to ``uint8`` model-size pixels: load (decode), resize and center-crop.

Exact by default: the pixels are those of the transformers PIL pipeline before
rescaling (where the crop drops rows or columns, only the kept window is
resized, and a value can move by one step in a few pixels). Fast mode
(opt-in) decodes JPEGs with DCT scaling and box-reduces big images before
the final resize (see :data:`FAST_REDUCING_GAP`). No torch import (worker
processes use this module).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mmrag.encoders.preprocess.spec import ImageSpec
from mmrag.inputs import ImageInput, ImageLimits, resolve_image

__all__ = ["FAST_REDUCING_GAP", "load_image", "prepare_image", "preprocess_image"]

FAST_REDUCING_GAP = 3.0
"""Pillow ``reducing_gap`` of fast mode: box-reduce by whole factors while the image stays 3x the target.

Pillow documents results at 3.0 or more as indistinguishable from a fair resize in most cases.
"""


def preprocess_image(
    image: Image.Image, spec: ImageSpec, *, fast: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """Resize and center-crop one decoded RGB image to the model's input size, as ``uint8``.

    Exact (``fast=False``): the pixels are those of the transformers PIL
    pipeline before rescaling (the same PIL filter, pass order, crop offsets
    and zero padding), so :func:`normalize` of them gives the processor's
    output. A crop that drops rows or columns is resized as a window only;
    its float box can move a value by one step in a few pixels.

    Args:
        image: An RGB image (what :func:`mmrag.resolve_image` returns).
        spec: The model's :class:`ImageSpec`.
        fast: Box-reduce big images by whole factors before the final resize
            (Pillow ``reducing_gap=FAST_REDUCING_GAP``): faster, not exact.
        out: Optional ``uint8`` array of shape ``spec.output_shape`` to write
            into (e.g. a shared-memory slot); a new array otherwise.

    Returns:
        ``out`` (or a new array): ``uint8`` pixels of shape ``(3, height, width)``.

    Raises:
        ValueError: ``image`` is not RGB, or ``out`` has the wrong shape or dtype.
    """
    if image.mode != "RGB":
        raise ValueError(f"preprocess_image needs an RGB image, got mode {image.mode!r}")
    shape = spec.output_shape
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be a uint8 array of shape {shape}, got {out.dtype} {out.shape}")
    width, height = image.size
    target = spec.resized_size(width, height)
    gap = FAST_REDUCING_GAP if fast else None
    window = _crop_window(spec, width, height, target)
    if window is not None:
        out[...] = np.asarray(_resize_window(image, spec.resample, window, gap)).transpose(2, 0, 1)
        return out
    if target != (width, height):
        image = image.resize(target, resample=spec.resample, reducing_gap=gap)
    pixels = np.asarray(image)
    if spec.crop_size is None:
        out[...] = pixels.transpose(2, 0, 1)
        return out
    _center_crop_into(pixels, out)
    return out


def load_image(
    item: ImageInput,
    spec: ImageSpec,
    *,
    limits: ImageLimits | None = None,
    index: int | None = None,
    fast: bool = False,
) -> Image.Image:
    """Resolve one input into an RGB image with :func:`mmrag.resolve_image`, optionally with JPEG DCT scaling.

    Same rules, limits and pixels as :func:`mmrag.resolve_image` (which
    orients in place, without a full-size copy); in fast mode a JPEG is
    decoded with the smallest power-of-two DCT reduction that keeps both sides
    at least ``spec.draft_size``.

    Args:
        item: Any :data:`mmrag.ImageInput`.
        spec: The model's :class:`ImageSpec` (gives the draft size).
        limits: Limits to enforce; ``ImageLimits()`` when omitted.
        index: The item's position in its batch, for error messages.
        fast: Use DCT scaling for JPEGs.

    Returns:
        A loaded RGB image, the same pixels :func:`mmrag.resolve_image` gives
        when ``fast`` is false.

    Raises:
        mmrag.ImageInputError: As :func:`mmrag.resolve_image`.
    """
    return resolve_image(item, limits=limits, index=index, draft=spec.draft_size if fast else None)


def prepare_image(
    item: ImageInput,
    spec: ImageSpec,
    *,
    limits: ImageLimits | None = None,
    index: int | None = None,
    fast: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`load_image` then :func:`preprocess_image`: one input to ``uint8`` model-size pixels.

    Args:
        item: Any :data:`mmrag.ImageInput`.
        spec: The model's :class:`ImageSpec`.
        limits: Limits to enforce; ``ImageLimits()`` when omitted.
        index: The item's position in its batch, for error messages.
        fast: Fast decoding and resizing (not exact; see the module docs).
        out: Optional ``uint8`` array of shape ``spec.output_shape`` to fill.

    Returns:
        ``uint8`` pixels of shape ``spec.output_shape``.

    Raises:
        mmrag.ImageInputError: The input cannot be resolved or decoded.
    """
    image = load_image(item, spec, limits=limits, index=index, fast=fast)
    try:
        return preprocess_image(image, spec, fast=fast, out=out)
    finally:
        if image is not item:
            image.close()


def _crop_window(
    spec: ImageSpec, width: int, height: int, target: tuple[int, int]
) -> tuple[tuple[int, int], tuple[float, float, float, float]] | None:
    """Output size and source box that resize only the part of the image the center crop keeps.

    Only for a shortest-edge (aspect-keeping) downscale whose crop drops rows
    or columns: there the full resize scales both axes alike, so every Pillow
    version runs its horizontal pass first, which :func:`_resize_window`
    repeats. ``None`` otherwise (resize all of it, then crop).
    """
    if spec.crop_size is None or spec.shortest_edge is None or target == (width, height):
        return None  # no crop, a fixed-size resize, or no resize at all (the crop alone is exact and cheaper)
    crop_height, crop_width = spec.crop_size
    target_width, target_height = target
    if target_width > width or target_height > height:
        return None  # an upscale: the box's rounding would show
    top, left = (target_height - crop_height) // 2, (target_width - crop_width) // 2
    if top < 0 or left < 0 or (top, left) == (0, 0):
        return None  # the crop pads, or keeps everything
    scale_x, scale_y = width / target_width, height / target_height
    right, bottom = min((left + crop_width) * scale_x, float(width)), min((top + crop_height) * scale_y, float(height))
    box = (left * scale_x, top * scale_y, right, bottom)
    return (crop_width, crop_height), box


def _resize_window(
    image: Image.Image,
    resample: int,
    window: tuple[tuple[int, int], tuple[float, float, float, float]],
    reducing_gap: float | None,
) -> Image.Image:
    """Resize the crop window only: a horizontal pass over its columns, then a vertical pass over its rows.

    Pillow resizes in two passes with ``uint8`` rounding between them, and
    picks the order from the sizes it is given (Pillow 13 goes vertical first
    when the height shrinks much more than the width). The full resize of a
    shortest-edge spec goes horizontal first; one call with the window's box
    could pick the other order, so two single-axis calls fix it. The box's
    float rounding can move a value by one step in a few pixels.
    """
    (out_width, out_height), (left, top, right, bottom) = window
    width, height = image.size
    if reducing_gap is not None:  # fast mode: Pillow box-reduces first; one call is fine there (not exact anyway)
        return image.resize((out_width, out_height), resample=resample, box=window[1], reducing_gap=reducing_gap)
    if (left, right) != (0.0, float(width)) or out_width != width:
        image = image.resize((out_width, height), resample=resample, box=(left, 0.0, right, float(height)))
    if (top, bottom) != (0.0, float(height)) or out_height != height:
        image = image.resize((out_width, out_height), resample=resample, box=(0.0, top, float(out_width), bottom))
    return image


def _center_crop_into(pixels: np.ndarray, out: np.ndarray) -> None:
    """Copy the center crop of HWC ``pixels`` into CHW ``out``, zero-padding as transformers' ``center_crop``.

    transformers crops at ``top = (h - crop_h) // 2`` (floor, also when
    negative) and pads a too-small image with zeros at ``ceil((crop_h - h) /
    2)``; both say: source row ``top + r`` goes to output row ``r``.
    """
    height, width = pixels.shape[:2]
    crop_height, crop_width = out.shape[1:]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + crop_height, height), min(left + crop_width, width)
    dst_top, dst_left = src_top - top, src_left - left
    region = pixels[src_top:src_bottom, src_left:src_right]
    if region.shape[:2] != (crop_height, crop_width):
        out.fill(0)
    out[:, dst_top : dst_top + region.shape[0], dst_left : dst_left + region.shape[1]] = region.transpose(2, 0, 1)
