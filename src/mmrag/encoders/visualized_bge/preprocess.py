"""EVA-CLIP's evaluation transform with PIL and numpy.

What the original builds with torchvision: resize the shortest side to the
model's image size (bicubic, the long side truncated to an int), center crop
to a square, scale to ``[0, 1]`` and normalise with OpenAI CLIP's mean and
standard deviation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "eva_clip_pixels"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of OpenAI CLIP's training images (RGB)."""
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of OpenAI CLIP's training images (RGB)."""


def _resize_shortest_side(image: Image.Image, size: int) -> Image.Image:
    from PIL import Image

    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    target = (size, new_long) if width <= height else (new_long, size)
    if target == (width, height):
        return image
    return image.resize(target, Image.Resampling.BICUBIC)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def eva_clip_pixels(images: list[Image.Image], size: int) -> np.ndarray:
    """Preprocess RGB images for an EVA02 tower.

    Args:
        images: Decoded RGB images of any sizes.
        size: The tower's input side in pixels.

    Returns:
        Float32 array of shape ``(n, 3, size, size)``.
    """
    mean = np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(OPENAI_CLIP_STD, dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        square = _center_crop(_resize_shortest_side(image, size), size).convert("RGB")
        pixels = np.asarray(square, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
        out[i] = (pixels - mean) / std
    return out
