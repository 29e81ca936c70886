"""Rescale and normalise ``uint8`` pixel batches on the model's device, bit-identical to the processor.

A pixel has only 256 values per channel, so :func:`normalize` looks the model
input up in a 3x256 table (:func:`pixel_lut`) computed exactly as the
transformers processor computes it (rescale in float64 then float32,
``(x - mean) / std`` in float32). torch is imported only when called.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["normalize", "pixel_lut"]


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
        for image in range(values.shape[0]):  # image by image: the planes stay in cache
            for channel in range(3):
                np.take(table[channel], values[image, channel], out=out[image, channel])
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
