"""CLIP-style dual encoders loaded through transformers.

One class serves CLIP, Chinese-CLIP, SigLIP and SigLIP 2 (NaFlex); what
differs between them is a row in :data:`DUAL_FAMILIES`: how texts are padded,
how long they may be, and which half-precision type the family runs in on a
GPU. Vectors are exactly what plain transformers gives
(``model.get_text_features(**processor(text=...))`` and
``model.get_image_features(**image_processor(images=...))``) before L2
normalisation.

Images of families whose image processor :mod:`mmrag.encoders.preprocess`
reproduces exactly (CLIP, Chinese-CLIP, SigLIP, SigLIP 2 fixed resolution, on
the transformers PIL backend) are decoded, resized and cropped to ``uint8``
pixels on a pool of worker processes (:mod:`mmrag.encoders.workers`), copied
to the device as ``uint8`` (pinned and asynchronous on CUDA) and rescaled and
normalised there, in the model's dtype: the processor's pixel values (up to
one step in a few pixels where only the crop window is resized; vectors within
cosine 0.99999). Everything else (SigLIP 2 NaFlex, the torchvision
backend, unusual settings) keeps the processor. ``gpu_decode`` decodes JPEGs
on the GPU instead (:mod:`mmrag.encoders.preprocess.gpu_decode`; not exact).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mmrag.encoders.base import Batch, Encoder
from mmrag.encoders.dual_signature import dual_preprocessing, embedding_dim, text_length_limit
from mmrag.encoders.preprocess import ImageSpec, image_spec
from mmrag.encoders.preprocess.gpu_decode import gpu_jpeg_decoder
from mmrag.encoders.workers import WORKER_MIN_IMAGES, ImageWorkerPool
from mmrag.inputs import ImageInput, ImageLimits
from mmrag.logs import logger

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = ["COMPILE_BACKEND", "DUAL_FAMILIES", "DualFamily", "TransformersDualEncoder", "dual_preprocessing"]

_log = logger("encoders")

COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of ``LoadOptions(compile=True)``."""


@dataclass(frozen=True)
class DualFamily:
    """How one transformers dual-encoder family is driven.

    Attributes:
        model_type: The config's ``model_type`` this row applies to.
        pad_to_max_length: Pad every text to ``max_text_length`` (SigLIP was
            trained that way; shorter padding gives wrong vectors).
        default_text_length: Token limit used when neither tokenizer nor
            config states a usable one.
        gpu_dtype: Default dtype on a GPU: ``float16`` or ``bfloat16``.
    """

    model_type: str
    pad_to_max_length: bool
    default_text_length: int
    gpu_dtype: torch.dtype


DUAL_FAMILIES: dict[str, DualFamily] = {
    family.model_type: family
    for family in (
        DualFamily("clip", pad_to_max_length=False, default_text_length=77, gpu_dtype=torch.float16),
        DualFamily("chinese_clip", pad_to_max_length=False, default_text_length=52, gpu_dtype=torch.float16),
        DualFamily("siglip", pad_to_max_length=True, default_text_length=64, gpu_dtype=torch.bfloat16),
        DualFamily("siglip2", pad_to_max_length=True, default_text_length=64, gpu_dtype=torch.bfloat16),
    )
}
"""The transformers families this module serves, by ``model_type``."""


class TransformersDualEncoder(Encoder):
    """An :class:`~mmrag.Encoder` over a transformers CLIP-family model.

    Built by :func:`mmrag.load_encoder`; you rarely construct one directly.

    Args:
        model: A loaded ``CLIPModel``, ``ChineseCLIPModel``, ``SiglipModel`` or
            ``Siglip2Model`` in eval mode on its device.
        processor: The matching processor (tokenizer + image processor).
        family: The family row for the model's ``model_type``.
        model_id: Hub id or absolute local path, recorded on the encoder.
        batch_size: Most items per forward pass.
        image_limits: Limits for resolving image inputs.
        image_workers: Image worker processes (``None``: one per core, at
            most 8; ``0``: none). They start on the first
            :meth:`~mmrag.Encoder.embed_images` call with at least
            :data:`~mmrag.encoders.workers.WORKER_MIN_IMAGES` images and stop
            with :meth:`close`.
        fast_decode: Fast, inexact JPEG decoding and resizing (recorded in
            :attr:`preprocessing`).
        gpu_decode: Decode JPEGs on the GPU where torchvision and CUDA allow
            (``LoadOptions.gpu_decode``; recorded in :attr:`preprocessing` when on).
        compile_model: Wrap both feature functions in ``torch.compile`` (``LoadOptions.compile``).

    Attributes:
        image_spec: What the image processor does, when mmrag reproduces it
            (then images take the worker pipeline); ``None`` otherwise.
        fast_decode: Whether fast decoding is on (never without ``image_spec``).
        gpu_decode: Whether GPU JPEG decoding is on (asked for, and possible here).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        family: DualFamily,
        model_id: str,
        batch_size: int = 64,
        image_limits: ImageLimits | None = None,
        image_workers: int | None = None,
        fast_decode: bool = False,
        gpu_decode: bool = False,
        compile_model: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, image_limits=image_limits)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.model_id = model_id
        self.family = family.model_type
        self._family = family
        self.dim = embedding_dim(model.config)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_text_length = text_length_limit(model.config, self.tokenizer, family.default_text_length)
        self._warned_truncation = False
        self.image_spec: ImageSpec | None = image_spec(self.image_processor)
        self.fast_decode = fast_decode and self.image_spec is not None
        self._image_pool = (
            ImageWorkerPool(self.image_spec, num_workers=image_workers, fast=self.fast_decode)
            if self.image_spec is not None
            else None
        )
        self._gpu_decoder = gpu_jpeg_decoder(self.image_spec, self.device, gpu_decode)
        self.gpu_decode = self._gpu_decoder is not None
        self._text_features: Any = model.get_text_features
        self._image_features: Any = model.get_image_features
        if compile_model:
            self._text_features = torch.compile(model.get_text_features, backend=COMPILE_BACKEND)
            self._image_features = torch.compile(model.get_image_features, backend=COMPILE_BACKEND)

    # ------------------------------------------------------------------ hooks
    def prepare_texts(self, texts: list[str]) -> Batch:
        """Tokenise texts: truncated to ``max_text_length``; SigLIP pads to it.

        Args:
            texts: One batch of texts.

        Returns:
            The tokenizer's tensors (pinned on CUDA, so the copy overlaps).
        """
        tokens = self.tokenizer(
            texts,
            padding="max_length" if self._family.pad_to_max_length else True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        self._log_truncation(tokens, texts)
        return self._staged(tokens)

    def count_truncated(self, texts: list[str]) -> int:
        """How many of ``texts`` are longer than ``max_text_length`` tokens (and so are cut when embedded).

        Args:
            texts: The texts, as they would be embedded.

        Returns:
            The number that :meth:`embed_texts` truncates.
        """
        ids = self.tokenizer(list(texts), truncation=False, padding=False, verbose=False)["input_ids"]
        return sum(len(row) > self.max_text_length for row in ids)

    def _log_truncation(self, tokens: Any, texts: list[str]) -> None:
        """Log texts the tokenizer cut: a warning the first time for this encoder, debug afterwards."""
        encodings = getattr(tokens, "encodings", None)  # fast tokenizers record what truncation dropped
        cut = [i for i, encoding in enumerate(encodings or ()) if encoding.overflowing]
        if not cut:
            return
        level = logging.DEBUG if self._warned_truncation else logging.WARNING
        self._warned_truncation = True
        _log.log(
            level,
            "%d of %d texts were longer than %d tokens and were truncated (first: %r)",
            len(cut), len(texts), self.max_text_length, texts[cut[0]][:60],
        )  # fmt: skip  # one line of arguments

    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """Run the image processor with its own saved settings.

        The processor's call defaults can override the image processor's
        configuration (``Siglip2Processor`` forces 16 px patches and 256
        patches), so the image processor is called directly.

        Args:
            images: One batch of RGB images.

        Returns:
            The image processor's tensors (``pixel_values``, plus the patch mask
            and spatial shapes for SigLIP 2).
        """
        return self._staged(self.image_processor(images=images, return_tensors="pt"))

    def prepare_image_inputs(
        self, items: list[ImageInput], *, limits: ImageLimits, start: int, call_size: int
    ) -> Batch:
        """Decode, resize and crop raw inputs to ``uint8`` pixels (on the worker pool), or use the processor.

        Args:
            items: One batch of raw inputs.
            limits: Limits to resolve them under.
            start: Index of ``items[0]`` in the call.
            call_size: Images in the whole call; workers start only for calls
                of at least :data:`~mmrag.encoders.workers.WORKER_MIN_IMAGES`.

        Returns:
            ``{"pixels": uint8 tensor (n, 3, h, w)}`` (pinned on CUDA), or the
            processor's tensors for families without an :attr:`image_spec`.
        """
        pool = self._image_pool
        if pool is None:
            return super().prepare_image_inputs(items, limits=limits, start=start, call_size=call_size)

        def exact(batch: list[ImageInput], first: int) -> Any:
            return pool.prepare(batch, limits=limits, start=first, allow_start=call_size >= WORKER_MIN_IMAGES)

        prepared = (
            self._gpu_decoder.prepare(items, limits=limits, start=start, cpu_prepare=exact)
            if self._gpu_decoder is not None
            else exact(items, start)
        )
        return self._pixel_inputs(prepared)

    @contextlib.contextmanager
    def _image_batches(
        self, items: list[ImageInput], limits: ImageLimits, batch_size: int
    ) -> Iterator[Callable[[list[ImageInput], int], Batch]]:
        """One call's chunks from one ``ImageWorkerPool.prepare_batches`` stream (no worker waits between batches).

        The GPU JPEG decoder, the processor path and a subclass's own
        :meth:`prepare_image_inputs` keep the chunk-by-chunk default.
        """
        pool = self._image_pool
        overridden = type(self).prepare_image_inputs is not TransformersDualEncoder.prepare_image_inputs
        if pool is None or self._gpu_decoder is not None or overridden:
            with super()._image_batches(items, limits, batch_size) as prepare:
                yield prepare
            return
        allow_start = len(items) >= WORKER_MIN_IMAGES
        with pool.prepare_batches(items, batch_size, limits=limits, allow_start=allow_start) as batches:

            def prepare(chunk: list[ImageInput], start: int) -> Batch:
                return self._pixel_inputs(next(batches))  # in order: the encoder's one prefetch thread

            yield prepare

    def _pixel_inputs(self, prepared: np.ndarray | torch.Tensor) -> Batch:
        """Model inputs from ``uint8`` pixels: a tensor, pinned when the model is on CUDA."""
        pixels = prepared if isinstance(prepared, torch.Tensor) else torch.from_numpy(prepared)
        if pixels.device.type == "cpu" and self.device.type == "cuda":
            pixels = pixels.pin_memory()  # on the prefetch thread, so the copy in forward_images is asynchronous
        return {"pixels": pixels}

    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """Text features for one tokenised batch.

        Args:
            batch: What :meth:`prepare_texts` returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return pooled_features(self._text_features(**self._to_device(batch)))

    def forward_images(self, batch: Batch) -> torch.Tensor:
        """Image features for one preprocessed batch.

        ``uint8`` pixels are rescaled and normalised on the device, in the
        model's dtype (the processor's arithmetic, bit for bit).

        Args:
            batch: What :meth:`prepare_image_inputs` (or :meth:`prepare_images`)
                returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        if isinstance(batch, Mapping) and "pixels" in batch and self.image_spec is not None:
            pixels = batch["pixels"]
            if pixels.is_cuda:  # decoded on the GPU on another stream: keep its memory until this stream is done
                pixels.record_stream(torch.cuda.current_stream(pixels.device))
            values = self.image_spec.normalize(pixels, dtype=self.dtype, device=self.device)
            return pooled_features(self._image_features(pixel_values=values))
        return pooled_features(self._image_features(**self._to_device(batch)))

    @property
    def preprocessing(self) -> str:
        """Text length, padding, the image processor's size/normalisation settings, and fast/GPU decoding if on."""
        return dual_preprocessing(
            self._family, self.max_text_length, self.image_processor, self.fast_decode, gpu_decode=self.gpu_decode
        )

    @property
    def image_worker_pids(self) -> tuple[int, ...]:
        """Process ids of the running image workers (empty when none run)."""
        return self._image_pool.worker_pids if self._image_pool is not None else ()

    def close(self) -> None:
        """Stop the prefetch thread and the image worker processes (both restart on demand)."""
        super().close()
        if self._image_pool is not None:
            self._image_pool.close()

    # -------------------------------------------------------------- internals
    def _staged(self, batch: Batch) -> Batch:
        """On CUDA, cast floats to the model dtype and pin every tensor (runs on the prefetch thread)."""
        if self.device.type == "cuda":
            for key, value in list(batch.items()):
                if isinstance(value, torch.Tensor):
                    batch[key] = (value.to(self.dtype) if value.is_floating_point() else value).pin_memory()
        return batch

    def _to_device(self, batch: Batch) -> dict[str, Any]:
        pin = self.device.type == "cuda"
        moved: dict[str, Any] = {}
        for key, value in dict(batch).items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and value.dtype != self.dtype:
                    value = value.to(self.dtype)
                if pin and not value.is_pinned():
                    value = value.pin_memory()
                value = value.to(self.device, non_blocking=pin)
            moved[key] = value
        return moved


def pooled_features(output: Any) -> torch.Tensor:
    """The feature tensor from ``get_text_features``/``get_image_features``.

    transformers 5 returns an output object whose ``pooler_output`` holds the
    projected features; older releases return the tensor itself.

    Args:
        output: What the model method returned.

    Returns:
        The ``(n, dim)`` feature tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor | None = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot find features in {type(output).__name__}: no pooler_output")
    return pooled
