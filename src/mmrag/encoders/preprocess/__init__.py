"""Image preprocessing without the transformers image processor: uint8 pixels on the CPU, floats on the device.

The CLIP, Chinese-CLIP and SigLIP image processors (the PIL backend that
transformers loads without torchvision) all run the same generic pipeline:
resize with PIL, center crop (zero-padding what is too small), rescale by
``rescale_factor`` in float64 then float32, and subtract ``image_mean`` and
divide by ``image_std`` in float32. This package splits that pipeline in two:

* :func:`preprocess_image` does the geometric part on the CPU and returns the
  ``uint8`` CHW pixels of the model's input size (a quarter of the bytes of
  float32, nothing to compute per pixel, cheap to move between processes and to
  copy to a GPU). Where a shortest-edge resize is followed by a crop that drops
  rows or columns, it resizes only the kept window (same filter, same pass
  order; about 25% less resize work for 4:3 photos): a value can then differ
  by one step in a few pixels (bicubic: < 0.1% of them), otherwise the pixels
  are the processor's;
* :func:`normalize` turns a ``uint8`` batch into the model's input on the
  model's device and in its dtype. Because a pixel has only 256 values per
  channel, it looks the result up in a 3x256 table computed exactly as the
  processor computes it, so for the same ``uint8`` pixels the tensors are
  *bit-identical* to ``image_processor(images=...)["pixel_values"]`` (cast to
  the model dtype).

:func:`image_spec` reads the settings from the loaded processor object itself,
and returns ``None`` for what it does not reproduce exactly (use the processor
then).

Fast decoding (``fast=True``) trades exactness for speed and is opt-in: JPEGs
are decoded with DCT scaling (:meth:`PIL.Image.Image.draft`) to the smallest
power-of-two reduction that stays at least the resize size, and large images
are first shrunk with :meth:`PIL.Image.Image.reduce` (Pillow's
``reducing_gap``) before the final resize. Vectors stay within cosine 0.995 of
the exact ones (see ``tests/encoders/test_preprocess.py``).

Modules, one job each: :mod:`~mmrag.encoders.preprocess.spec` (what the
processor does), :mod:`~mmrag.encoders.preprocess.pixels` (decode, resize,
crop to ``uint8``) and :mod:`~mmrag.encoders.preprocess.normalization` (the
lookup on the device). Nothing here imports torch at import time (worker
processes use it); :func:`normalize` imports it when called.

Example:
    >>> spec = image_spec(encoder.image_processor)
    >>> pixels = np.stack([prepare_image(path, spec) for path in paths])
    >>> batch = spec.normalize(torch.from_numpy(pixels), dtype=torch.float16, device="cuda")
"""

from __future__ import annotations

from mmrag.encoders.preprocess.normalization import normalize, pixel_lut
from mmrag.encoders.preprocess.pixels import FAST_REDUCING_GAP, load_image, prepare_image, preprocess_image
from mmrag.encoders.preprocess.spec import ImageSpec, image_spec

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
