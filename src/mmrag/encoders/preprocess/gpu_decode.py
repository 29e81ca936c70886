"""Opt-in GPU JPEG decoding (``LoadOptions(gpu_decode=True)``): nvJPEG through ``torchvision.io``, resize on the GPU.

Where ``torchvision`` imports and the model runs on CUDA, :class:`GpuJpegDecoder`
turns the JPEGs of a batch into the model's ``uint8`` input pixels on the GPU:
``torchvision.io.decode_jpeg(list_of_tensors, device="cuda")`` decodes the
whole batch at once, then each image is oriented (EXIF, read from the header
on the CPU), resized with ``torch.nn.functional.interpolate`` (the spec's
filter, bicubic for any filter torch lacks, ``antialias=True``), rounded to
``uint8`` and center-cropped (zero-padded) as the exact path does. The result
then goes through the same bit-exact normalisation (:func:`normalize`).

**Not bit-exact**: torch's bicubic kernel and antialiasing differ slightly from
Pillow's, and nvJPEG's IDCT from libjpeg's; vectors stay within cosine ~0.995
of the exact path (tested), like ``fast_decode``. The mode is therefore recorded
in the encoder's ``preprocessing`` (``decode=gpu``), so a store never mixes
GPU-decoded and exact vectors.

Everything else takes the normal path (worker processes, exact): non-JPEG
inputs, URLs and file objects (fetched/read where they are today), decoded
images and arrays, CMYK JPEGs, and any JPEG nvJPEG refuses (a broken one
then raises the usual :class:`~mmrag.ImageInputError`, naming its index).

Without torchvision, or with the model off CUDA, the option does nothing but
log one ``INFO`` line (:func:`gpu_decode_unavailable` says why); it is never an
error. torch is imported only when called (worker processes import this package).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mmrag.encoders.preprocess.spec import ImageSpec
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageInput, ImageLimits, is_url, probe_image, read_image_bytes

if TYPE_CHECKING:
    import torch

__all__ = ["DECODE_DEVICE_TYPES", "GpuJpegDecoder", "gpu_decode_unavailable", "gpu_jpeg_decoder"]

logger = logging.getLogger("mmrag.encoders")

DECODE_DEVICE_TYPES: frozenset[str] = frozenset({"cuda"})
"""Device types GPU decoding runs on (tests add ``"cpu"`` to run the GPU-side code on CPU tensors)."""

_JPEG_MAGIC = b"\xff\xd8\xff"
_GPU_MODES = frozenset({"RGB", "L"})  # nvJPEG converts these to RGB as Pillow does; CMYK & co. stay on the CPU
_EXIF_ORIENTATION = 0x0112
# torch.nn.functional.interpolate modes for Pillow filters; the others (Lanczos, box, Hamming) use bicubic.
_MODES = {int(Image.Resampling.NEAREST): "nearest-exact", int(Image.Resampling.BILINEAR): "bilinear"}

CpuPrepare = Callable[[list[ImageInput], int], np.ndarray]
"""The exact path: ``(items, start)`` to ``uint8`` ``(n, 3, h, w)``; an error's index is ``start`` + its position."""


def gpu_decode_unavailable(device: torch.device | str) -> str | None:
    """Why GPU JPEG decoding cannot run for a model on ``device``, or ``None`` when it can.

    Args:
        device: The model's device.

    Returns:
        A short reason (``"the model runs on cpu, not CUDA"``, ``"torchvision
        does not import: ..."``), or ``None``.
    """
    import torch

    kind = torch.device(device).type
    if kind not in DECODE_DEVICE_TYPES:
        return f"the model runs on {kind}, not CUDA"
    try:
        module = importlib.import_module("torchvision.io")
    except Exception as exc:  # torchvision raises RuntimeError/OSError, not only ImportError, beside a foreign torch
        return f"torchvision does not import: {type(exc).__name__}: {str(exc)[:200]}"
    if not callable(getattr(module, "decode_jpeg", None)):
        return "torchvision.io has no decode_jpeg"
    return None


def gpu_jpeg_decoder(spec: ImageSpec | None, device: torch.device | str, requested: bool) -> GpuJpegDecoder | None:
    """The decoder an encoder uses: one when asked for and possible, else ``None`` (logged once, at INFO).

    Args:
        spec: The encoder's :class:`ImageSpec` (``None``: the processor runs; nothing to do).
        device: The model's device.
        requested: ``LoadOptions.gpu_decode``.

    Returns:
        A :class:`GpuJpegDecoder`, or ``None``.
    """
    if not requested:
        return None
    reason = "the image processor is not one mmrag reproduces" if spec is None else gpu_decode_unavailable(device)
    if reason is not None or spec is None:
        logger.info("gpu_decode=True has no effect (%s); images are decoded on the CPU, exactly", reason)
        return None
    return GpuJpegDecoder(spec, device)


@dataclass(frozen=True)
class _Jpeg:
    position: int
    data: bytes
    orientation: int


class GpuJpegDecoder:
    """Decode the JPEGs of a batch on ``device`` and resize/crop them there; everything else goes the exact way.

    Args:
        spec: The model's :class:`ImageSpec`.
        device: Where to decode and resize (CUDA in use; any device works with
            a ``torchvision.io`` that decodes there, e.g. the CPU in tests).

    Example:
        >>> decoder = GpuJpegDecoder(spec, "cuda")
        >>> exact = lambda batch, start: pool.prepare(batch, start=start)
        >>> decoder.prepare(paths, limits=ImageLimits(), start=0, cpu_prepare=exact).device
        device(type='cuda', index=0)
    """

    def __init__(self, spec: ImageSpec, device: torch.device | str) -> None:
        import torch

        self.spec = spec
        self.device = torch.device(device)
        self._io: Any = importlib.import_module("torchvision.io")
        self._stream: Any = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None  # type: ignore[no-untyped-call]  # torch.cuda.Stream is unannotated

    def prepare(
        self, items: Sequence[ImageInput], *, limits: ImageLimits, start: int, cpu_prepare: CpuPrepare
    ) -> torch.Tensor | np.ndarray:
        """Model-size ``uint8`` pixels for a batch: JPEGs decoded on the device, the rest by ``cpu_prepare``.

        Args:
            items: One batch of raw inputs.
            limits: Limits to resolve them under (checked on the CPU, from the header, before decoding).
            start: Index of ``items[0]`` in the call, for error messages.
            cpu_prepare: The exact path for the other items.

        Returns:
            A ``uint8`` tensor ``(n, 3, h, w)`` on the device, or ``cpu_prepare``'s
            array when the batch holds no JPEG for the device.

        Raises:
            mmrag.ImageInputError: The first bad item in input order, naming its index.
        """
        jpegs, others = self._split(items, limits)
        if not jpegs:
            return cpu_prepare(list(items), start)
        import torch

        stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
        with stream:
            decoded, failed = self._decode(jpegs)
            others = sorted(others + failed)
            out = torch.empty((len(items), *self.spec.output_shape), dtype=torch.uint8, device=self.device)
            for jpeg, image in zip(jpegs, decoded):
                if image is not None:
                    self._resize_crop_into(_oriented(image, jpeg.orientation), out[jpeg.position])
            if others:
                try:
                    rows = cpu_prepare([items[position] for position in others], 0)
                except ImageInputError as exc:
                    where = None if exc.index is None else start + others[exc.index]
                    raise ImageInputError(exc.reason, index=where, item=exc.item) from exc.__cause__
                index = torch.tensor(others, device=self.device)
                host = torch.from_numpy(rows)
                out[index] = (host.pin_memory() if self.device.type == "cuda" else host).to(
                    self.device, non_blocking=True
                )
        if self._stream is not None:
            self._stream.synchronize()  # on the prefetch thread: the forward pass keeps the GPU busy meanwhile
        return out

    # --------------------------------------------------------------- internals
    def _split(self, items: Sequence[ImageInput], limits: ImageLimits) -> tuple[list[_Jpeg], list[int]]:
        """JPEGs within the limits (bytes read here) and the positions of everything else."""
        jpegs: list[_Jpeg] = []
        others: list[int] = []
        for position, item in enumerate(items):
            data = _jpeg_candidate(item, limits)
            header = _jpeg_header(data, limits) if data is not None else None
            if data is None or header is None:
                others.append(position)
            else:
                jpegs.append(_Jpeg(position, data, header))
        return jpegs, others

    def _decode(self, jpegs: list[_Jpeg]) -> tuple[list[Any], list[int]]:
        """Decoded CHW uint8 tensors (``None`` where decoding failed) and the failed positions."""
        import torch

        tensors = [torch.frombuffer(bytearray(jpeg.data), dtype=torch.uint8) for jpeg in jpegs]
        mode = self._io.ImageReadMode.RGB
        try:
            return list(self._io.decode_jpeg(tensors, mode=mode, device=self.device)), []
        except (RuntimeError, ValueError):  # one bad image fails the whole batch: retry one by one
            pass
        decoded: list[Any] = []
        failed: list[int] = []
        for jpeg, tensor in zip(jpegs, tensors):
            try:
                decoded.append(self._io.decode_jpeg(tensor, mode=mode, device=self.device))
            except (RuntimeError, ValueError):
                decoded.append(None)
                failed.append(jpeg.position)  # the exact path decodes it, or raises its error
        return decoded, failed

    def _resize_crop_into(self, image: torch.Tensor, out: torch.Tensor) -> None:
        """Resize one CHW uint8 image as the spec says and center-crop (zero-padding) it into ``out``."""
        import torch
        import torch.nn.functional as F

        height, width = int(image.shape[-2]), int(image.shape[-1])
        target_w, target_h = self.spec.resized_size(width, height)
        if (target_w, target_h) != (width, height):
            mode = _MODES.get(self.spec.resample, "bicubic")
            values = F.interpolate(
                image.unsqueeze(0).float(), size=(target_h, target_w), mode=mode,
                antialias=mode != "nearest-exact", **({} if mode == "nearest-exact" else {"align_corners": False}),
            )[0]  # fmt: skip
            image = values.round_().clamp_(0, 255).to(torch.uint8)
        crop_h, crop_w = out.shape[-2:]
        top, left = (target_h - crop_h) // 2, (target_w - crop_w) // 2
        src_top, src_left = max(top, 0), max(left, 0)
        src_bottom, src_right = min(top + crop_h, target_h), min(left + crop_w, target_w)
        if (src_bottom - src_top, src_right - src_left) != (crop_h, crop_w):
            out.zero_()
        out[:, src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
            :, src_top:src_bottom, src_left:src_right
        ]


def _jpeg_candidate(item: ImageInput, limits: ImageLimits) -> bytes | None:
    """The bytes of a local or in-memory JPEG; ``None`` for anything the exact path should handle."""
    if isinstance(item, str):
        if is_url(item):
            return None  # fetched by the workers, concurrently
    elif not isinstance(item, (bytes, bytearray, memoryview, os.PathLike)):
        return None  # decoded images, arrays, file objects (read once, by the exact path)
    try:
        data = read_image_bytes(item, limits=limits)
    except ImageInputError:
        return None  # the exact path raises the same error, worded and indexed
    return data if data is not None and data[:3] == _JPEG_MAGIC else None


def _jpeg_header(data: bytes, limits: ImageLimits) -> int | None:
    """The EXIF orientation (1-8) of a JPEG fit for the device, or ``None`` (not allowed, a limit broken, CMYK ...)."""
    try:
        probe_image(data, limits)  # the same format and size checks as the exact path
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            if image.mode not in _GPU_MODES:
                return None
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # any doubt: the exact path decides, and words the error
        return None
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _oriented(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """``image`` (CHW) transposed as ``PIL.ImageOps.exif_transpose`` does for an EXIF orientation."""
    import torch

    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image
