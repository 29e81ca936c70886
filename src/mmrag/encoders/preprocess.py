"""Image preprocessing without the transformers image processor: uint8 pixels on the CPU, floats on the device.

The CLIP, Chinese-CLIP and SigLIP image processors (the PIL backend that
transformers loads without torchvision) all run the same generic pipeline:
resize with PIL, center crop (zero-padding what is too small), rescale by
``rescale_factor`` in float64 then float32, and subtract ``image_mean`` and
divide by ``image_std`` in float32. This module splits that pipeline in two:

* :func:`preprocess_image` does the geometric part on the CPU and returns the
  ``uint8`` CHW pixels of the model's input size (a quarter of the bytes of
  float32, nothing to compute per pixel, cheap to move between processes and to
  copy to a GPU);
* :func:`normalize` turns a ``uint8`` batch into the model's input on the
  model's device and in its dtype. Because a pixel has only 256 values per
  channel, it looks the result up in a 3x256 table computed exactly as the
  processor computes it, so the pixel tensors are *bit-identical* to
  ``image_processor(images=...)["pixel_values"]`` (cast to the model dtype).

:func:`image_spec` reads the settings from the loaded processor object itself
(its ``size``, ``crop_size``, ``resample``, ``do_*`` switches, ``rescale_factor``,
``image_mean`` and ``image_std``), so custom saved settings are honoured; for a
processor or a setting combination it does not reproduce exactly (SigLIP 2
NaFlex, ``longest_edge``/``max_height`` resizes, padding, the torchvision
backend, any overridden method) it returns ``None``: use the processor then.

Fast decoding (``fast=True``) trades exactness for speed and is opt-in: JPEGs
are decoded with DCT scaling (:meth:`PIL.Image.Image.draft`) to the smallest
power-of-two reduction that stays at least the resize size, and large images
are first shrunk with :meth:`PIL.Image.Image.reduce` (Pillow's
``reducing_gap``) before the final resize. Vectors stay within cosine 0.995 of
the exact ones (see ``tests/encoders/test_preprocess.py``).

This module never imports torch at import time (worker processes use it);
:func:`normalize` imports it when called.

Example:
    >>> spec = image_spec(encoder.image_processor)
    >>> pixels = np.stack([preprocess_image(resolve_image(p), spec) for p in paths])
    >>> batch = spec.normalize(torch.from_numpy(pixels), dtype=torch.float16, device="cuda")
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from mmrag.errors import ImageInputError
from mmrag.inputs import (
    ImageInput,
    ImageLimits,
    describe_image_input,
    read_image_bytes,
    resolve_image,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "FAST_REDUCING_GAP",
    "ImageSpec",
    "image_spec",
    "load_image",
    "normalize",
    "pixel_lut",
    "prepare_image",
    "preprocess_image",
]

FAST_REDUCING_GAP = 3.0
"""Pillow ``reducing_gap`` of fast mode: box-reduce by whole factors while the image stays 3x the target.

Pillow documents results at 3.0 or more as indistinguishable from a fair resize in most cases.
"""

_PIL_FILTERS = frozenset(int(f) for f in Image.Resampling)
# Processor options that change pixels; any other option with a value makes image_spec refuse.
_PIXEL_OPTIONS = frozenset(
    {
        "do_convert_rgb",
        "do_resize",
        "size",
        "default_to_square",
        "crop_size",
        "resample",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_pad",
        "pad_size",
        "do_center_crop",
    }
)
# Options that never change the pixels of an RGB PIL input in the PIL backend.
_INERT_OPTIONS = frozenset(
    {"data_format", "input_data_format", "device", "return_tensors", "disable_grouping", "image_seq_length"}
)
# Every method on the PIL backend's path from preprocess() to pixel_values; a subclass overriding one is refused.
_PIPELINE_METHODS = (
    "__call__",
    "preprocess",
    "_standardize_kwargs",
    "_preprocess_image_like_inputs",
    "_prepare_image_like_inputs",
    "_prepare_images_structure",
    "process_image",
    "convert_to_rgb",
    "_preprocess",
    "resize",
    "center_crop",
    "rescale",
    "normalize",
)


@dataclass(frozen=True)
class ImageSpec:
    """What an image processor does to a decoded RGB image, as plain numbers.

    Build one with :func:`image_spec`. Sizes are ``(height, width)``.

    Attributes:
        processor: Class name of the image processor it was read from.
        shortest_edge: Resize so the shorter side has this length (aspect kept,
            the longer side truncated as transformers does); ``None`` if not.
        resize_size: Resize to exactly this ``(height, width)``; ``None`` if not.
        resample: PIL resampling filter of the resize (e.g. 3 = bicubic).
        crop_size: Center crop (zero-padded where the image is smaller) to this
            ``(height, width)``; ``None`` for no crop.
        rescale_factor: Multiply pixel values by this (in float64), or ``None``.
        image_mean: Per-channel mean subtracted after rescaling, or ``None``.
        image_std: Per-channel standard deviation divided by, or ``None``.
    """

    processor: str
    shortest_edge: int | None
    resize_size: tuple[int, int] | None
    resample: int
    crop_size: tuple[int, int] | None
    rescale_factor: float | None
    image_mean: tuple[float, float, float] | None
    image_std: tuple[float, float, float] | None

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of every preprocessed image."""
        if self.crop_size is not None:
            return self.crop_size
        if self.resize_size is None:  # pragma: no cover - image_spec never builds this
            raise ValueError("an ImageSpec without crop_size needs resize_size")
        return self.resize_size

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(3, height, width)``: the shape of :func:`preprocess_image`'s result (channels first, as models take)."""
        height, width = self.output_size
        return 3, height, width

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """``(width, height)`` to ask JPEG DCT scaling for in fast mode (a square, so EXIF rotation is harmless).

        ``None`` when the spec does not resize (then decoding stays exact).
        """
        if self.shortest_edge is not None:
            return self.shortest_edge, self.shortest_edge
        if self.resize_size is not None:
            side = max(self.resize_size)
            return side, side
        return None

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` the resize step produces for an image of ``width`` x ``height``.

        Args:
            width: Input width.
            height: Input height.

        Returns:
            The PIL ``(width, height)`` after resizing (the input size when the
            spec does not resize).
        """
        if self.resize_size is not None:
            return self.resize_size[1], self.resize_size[0]
        if self.shortest_edge is None:
            return width, height
        # transformers.image_transforms.get_resize_output_image_size(default_to_square=False), verbatim.
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def normalize(
        self, pixels: torch.Tensor | np.ndarray, *, dtype: torch.dtype, device: torch.device | str
    ) -> torch.Tensor:
        """:func:`normalize` with this spec's rescale factor, mean and std.

        Args:
            pixels: ``uint8`` array or tensor of shape ``(n, 3, height, width)``.
            dtype: The model's dtype.
            device: The model's device.

        Returns:
            ``(n, 3, height, width)`` model input on ``device`` in ``dtype``.
        """
        return normalize(
            pixels,
            mean=self.image_mean,
            std=self.image_std,
            rescale_factor=self.rescale_factor,
            dtype=dtype,
            device=device,
        )

    def describe(self) -> str:
        """A short, stable description, e.g. ``"shortest_edge=224,crop=224x224,resample=3"``."""
        parts = []
        if self.shortest_edge is not None:
            parts.append(f"shortest_edge={self.shortest_edge}")
        if self.resize_size is not None:
            parts.append(f"resize={self.resize_size[0]}x{self.resize_size[1]}")
        if self.crop_size is not None:
            parts.append(f"crop={self.crop_size[0]}x{self.crop_size[1]}")
        parts.append(f"resample={self.resample}")
        return ",".join(parts)


def image_spec(image_processor: Any) -> ImageSpec | None:
    """Read an :class:`ImageSpec` off a loaded transformers image processor.

    Every value comes from the processor object (what ``preprocess`` would use
    by default), so settings saved with a checkpoint or changed on the object
    are honoured.

    Args:
        image_processor: E.g. ``processor.image_processor`` of a CLIP,
            Chinese-CLIP or SigLIP (incl. SigLIP 2 fixed resolution) model.

    Returns:
        The spec, or ``None`` when this module cannot reproduce the processor
        exactly: not the transformers PIL backend (e.g. the torchvision one,
        or SigLIP 2 NaFlex), a pipeline method overridden, padding, a resize
        rule other than ``shortest_edge`` or ``height``/``width``, a variable
        output size, or an unknown option set. Use the processor then.
    """
    try:
        from transformers.image_processing_backends import PilBackend
        from transformers.image_processing_utils import get_size_dict
        from transformers.image_utils import SizeDict
    except ImportError:  # pragma: no cover - a transformers without the backend split
        return None
    if not isinstance(image_processor, PilBackend) or getattr(image_processor, "backend", None) != "pil":
        return None
    cls = type(image_processor)
    if any(getattr(cls, name, None) is not getattr(PilBackend, name, None) for name in _PIPELINE_METHODS):
        return None
    options = getattr(getattr(cls, "valid_kwargs", None), "__annotations__", {})
    for name in set(options) - _PIXEL_OPTIONS - _INERT_OPTIONS:
        if getattr(image_processor, name, None) is not None:
            return None
    get = functools.partial(getattr, image_processor)
    if get("do_pad", None):
        return None

    def size_dict(value: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, SizeDict):
            return value
        try:
            return SizeDict(**get_size_dict(value, **kwargs))
        except (ValueError, TypeError):
            return None

    shortest_edge = resize_size = None
    resample = int(Image.Resampling.BICUBIC)  # unused without a resize
    if get("do_resize", None):
        size = size_dict(get("size", None), default_to_square=bool(get("default_to_square", True)))
        if size is None:
            return None
        fields = {key: value for key, value in dict(size).items() if value is not None}
        if set(fields) == {"shortest_edge"}:
            shortest_edge = _positive_int(fields["shortest_edge"])
        elif set(fields) == {"height", "width"}:
            height, width = _positive_int(fields["height"]), _positive_int(fields["width"])
            resize_size = (height, width) if height and width else None
        if not shortest_edge and not resize_size:
            return None
        raw_resample = get("resample", None)  # None: the processor refuses to resize
        if not isinstance(raw_resample, int) or int(raw_resample) not in _PIL_FILTERS:
            return None
        resample = int(raw_resample)
    crop_size = None
    if get("do_center_crop", None):
        crop = size_dict(get("crop_size", None), param_name="crop_size")
        if crop is None or crop.height is None or crop.width is None:
            return None
        crop_height, crop_width = _positive_int(crop.height), _positive_int(crop.width)
        if not crop_height or not crop_width:
            return None
        crop_size = (crop_height, crop_width)
    if crop_size is None and resize_size is None:
        return None  # each image would keep its own size: no fixed-shape batch
    rescale_factor = None
    if get("do_rescale", None):
        factor = get("rescale_factor", None)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            return None
        rescale_factor = float(factor)
    mean = std = None
    if get("do_normalize", None):
        mean, std = _channels(get("image_mean", None)), _channels(get("image_std", None))
        if mean is None or std is None:
            return None
    if rescale_factor is None and mean is None:
        return None  # the processor would return uint8 pixels; nothing to reproduce
    return ImageSpec(
        processor=cls.__name__,
        shortest_edge=shortest_edge,
        resize_size=resize_size,
        resample=resample,
        crop_size=crop_size,
        rescale_factor=rescale_factor,
        image_mean=mean,
        image_std=std,
    )


def preprocess_image(
    image: Image.Image, spec: ImageSpec, *, fast: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """Resize and center-crop one decoded RGB image to the model's input size, as ``uint8``.

    Exact (``fast=False``): the pixels are those of the transformers PIL
    pipeline before rescaling (the same PIL resize, crop offsets and zero
    padding), so :func:`normalize` of them equals the processor's output.

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
    if target != (width, height):
        image = image.resize(target, resample=spec.resample, reducing_gap=FAST_REDUCING_GAP if fast else None)
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
    """Resolve one input into an RGB image with :mod:`mmrag.inputs`' rules, optionally with JPEG DCT scaling.

    PIL images and arrays go through :func:`mmrag.resolve_image`. Encoded
    inputs are read with :func:`mmrag.inputs.read_image_bytes` (same rules and
    limits) and decoded by the resolver's own steps (format allow-list,
    header-size checks, decompression-bomb guard, EXIF orientation, RGB
    conversion), with two differences: the orientation is applied in place
    (no full-size copy; the pixels are the same), and in fast mode a JPEG is
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
    if isinstance(item, (Image.Image, np.ndarray)):
        return resolve_image(item, limits=limits, index=index)
    data = read_image_bytes(item, limits=limits, index=index)
    if data is None:  # pragma: no cover - only pixels have no bytes, handled above
        return resolve_image(item, limits=limits, index=index)
    try:
        return _decode(data, limits or ImageLimits(), spec.draft_size if fast else None)
    except ImageInputError as exc:
        raise ImageInputError(exc.reason, index=index, item=describe_image_input(item)) from exc.__cause__


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


def pixel_lut(mean: Sequence[float] | None, std: Sequence[float] | None, rescale_factor: float | None) -> np.ndarray:
    """The model input value of every ``uint8`` pixel value, per channel, computed as transformers does.

    transformers rescales ``uint8`` pixels in float64 and casts to float32
    (``image_transforms.rescale``), then computes ``(x - mean) / std`` in
    float32 (``image_transforms.normalize``); so does this table.

    Args:
        mean: Per-channel means (3 values), or ``None`` for no normalisation.
        std: Per-channel standard deviations (3 values), or ``None``.
        rescale_factor: The rescale factor, or ``None`` for no rescaling.

    Returns:
        A float32 array of shape ``(3, 256)``: ``lut[c, v]`` is the input value
        of channel ``c`` for pixel value ``v``.
    """
    values = np.arange(256, dtype=np.uint8)
    if rescale_factor is not None:
        scaled = (values.astype(np.float64) * rescale_factor).astype(np.float32)
    else:
        scaled = values.astype(np.float32)
    table = np.empty((3, 256), dtype=np.float32)
    for channel in range(3):
        if mean is None or std is None:
            table[channel] = scaled
        else:
            table[channel] = (scaled - np.float32(mean[channel])) / np.float32(std[channel])
    return table


def normalize(
    pixels: torch.Tensor | np.ndarray,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    rescale_factor: float | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Turn a ``uint8`` pixel batch into model input on the model's device, in its dtype.

    Every value is looked up in :func:`pixel_lut`, so the result equals the
    transformers processor's float32 ``pixel_values`` cast to ``dtype``, bit
    for bit. On a CPU the lookup runs in numpy (faster than any torch
    formulation there); elsewhere the ``uint8`` batch is copied to the device
    first (a quarter of the bytes of float32; pinned and asynchronous for
    CUDA) and looked up in a table cached on the device.

    Args:
        pixels: ``uint8`` array or tensor ``(n, 3, height, width)`` (what
            :func:`preprocess_image` results stack into).
        mean: Per-channel means, or ``None`` for no normalisation.
        std: Per-channel standard deviations, or ``None``.
        rescale_factor: Rescale factor, or ``None``.
        dtype: Output dtype (the model's).
        device: Output device (the model's).

    Returns:
        A contiguous ``(n, 3, height, width)`` tensor on ``device``.

    Raises:
        ValueError: ``pixels`` is not a 4-D ``uint8`` batch with 3 channels.
    """
    import torch

    is_uint8 = pixels.dtype == (np.uint8 if isinstance(pixels, np.ndarray) else torch.uint8)
    if not is_uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be uint8 of shape (n, 3, h, w), got {pixels.dtype} {tuple(pixels.shape)}")
    mean_key = None if mean is None else tuple(float(v) for v in mean)
    std_key = None if std is None else tuple(float(v) for v in std)
    target = torch.device(device)
    if target.type == "cpu":
        values = pixels if isinstance(pixels, np.ndarray) else pixels.cpu().numpy()
        table = _host_lut(mean_key, std_key, rescale_factor)
        out = np.empty(values.shape, dtype=np.float32)
        for channel in range(3):
            out[:, channel] = table[channel][values[:, channel]]
        result = torch.from_numpy(out)
        return result if dtype == torch.float32 else result.to(dtype)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)) if isinstance(pixels, np.ndarray) else pixels
    if target.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    tensor = tensor.to(target, non_blocking=True)
    device_table = _device_lut(mean_key, std_key, rescale_factor, dtype, target)
    # One flat table of 3 x 256 entries; each channel indexes its own 256-entry block.
    offsets = torch.arange(0, 768, 256, device=target, dtype=torch.int32).view(1, 3, 1, 1)
    return device_table[tensor.to(torch.int32) + offsets].contiguous()


# --------------------------------------------------------------------------- #
# Internals
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=32)
def _host_lut(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, rescale_factor: float | None
) -> np.ndarray:
    table = pixel_lut(mean, std, rescale_factor)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=32)
def _device_lut(
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    rescale_factor: float | None,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    import torch

    table = torch.from_numpy(pixel_lut(mean, std, rescale_factor).reshape(-1))
    return table.to(device=device, dtype=dtype)


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


def _decode(data: bytes, limits: ImageLimits, draft: tuple[int, int] | None) -> Image.Image:
    """``mmrag.inputs``' decoder, orienting in place and optionally DCT-scaling a JPEG to at least ``draft``."""
    # The resolver's own building blocks, so both paths keep one set of rules.
    from mmrag.inputs import _check_dimensions, _open_restricted, _pillow_errors, _to_rgb

    if not data:
        raise ImageInputError("empty input (0 bytes)")
    with _pillow_errors():
        image = _open_restricted(data, limits)
        try:
            _check_dimensions(image.size, limits)  # the full size, before any scaling
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


def _positive_int(value: Any) -> int:
    """``value`` as a positive int, or 0 if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return 0
    return int(value) if value > 0 else 0


def _channels(value: Any) -> tuple[float, float, float] | None:
    """A scalar or 3-sequence of numbers as a 3-tuple of floats (transformers broadcasts a scalar)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value), float(value)
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3:
        try:
            return float(value[0]), float(value[1]), float(value[2])
        except (TypeError, ValueError):
            return None
    return None
