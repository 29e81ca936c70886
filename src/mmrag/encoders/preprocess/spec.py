"""What a transformers image processor does, as plain numbers: :class:`ImageSpec` and :func:`image_spec`.

:func:`image_spec` reads the settings off the loaded processor object (its
``size``, ``crop_size``, ``resample``, ``do_*`` switches, ``rescale_factor``,
``image_mean`` and ``image_std``), so custom saved settings are honoured; for a
processor or a setting combination the pipeline does not reproduce exactly
(SigLIP 2 NaFlex, ``longest_edge``/``max_height`` resizes, padding, the
torchvision backend, any overridden method) it returns ``None``: use the
processor then. No torch import at import time (worker processes use it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

__all__ = ["ImageSpec", "image_spec"]

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
        from mmrag.encoders.preprocess.normalization import normalize

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
