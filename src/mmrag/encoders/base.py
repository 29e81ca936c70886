"""The one Encoder interface every model family implements.

A family implements four small hooks: two *prepare* steps that run on the CPU
(tokenise texts; preprocess decoded images) and two *forward* steps that run
on the model's device; a family with a faster image path overrides
:meth:`Encoder.prepare_image_inputs`, which receives the raw inputs.
:class:`Encoder` owns everything else: validation, batching (never more than
``batch_size`` items per forward pass), L2 normalisation, float32 output, the
pipeline that prepares batch *i+1* on a background thread while batch *i* runs
on the device, splitting a batch that runs out of device memory, and the
search behind ``batch_size="auto"``.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mmrag.cache import EmbeddingCache, embed_with_cache
from mmrag.encoders.fused import FusedEmbeddings, checked_pairs, l2_normalize
from mmrag.encoders.memory import batch_length, free_cached_memory, is_out_of_memory, split_batch
from mmrag.inputs import ImageInput, ImageLimits, as_items, as_texts, resolve_image
from mmrag.prefetch import Prefetcher
from mmrag.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["Encoder", "FusedEmbeddings", "checked_pairs", "l2_normalize"]

_Item = TypeVar("_Item")
Batch = Any
"""Whatever a family's prepare step returns and its forward step accepts."""


class Encoder(ABC):
    """A dual encoder that maps texts and images into one vector space.

    Use :func:`mmrag.load_encoder` to get one; subclasses implement a model
    family. Every ``embed_*`` method returns float32 arrays of shape
    ``(n, dim)`` with L2-normalised rows, so a dot product is a cosine
    similarity. The methods are safe to call from several threads: their CPU
    work overlaps, forward passes run one at a time.

    Attributes:
        model_id: Hub id or absolute local path of the checkpoint.
        family: Architecture family (the config's ``model_type``), e.g. ``"clip"``.
        dim: Embedding dimension.
        device: The torch device the model runs on.
        dtype: The torch dtype of the model weights.
        batch_size: Most items per forward pass.
        image_limits: Limits applied when resolving image inputs.
        forward_count: Forward passes run so far (texts and images); handy to
            check that work is batched.
        cache: An :class:`~mmrag.EmbeddingCache` consulted before any forward
            pass (texts and images seen before cost a lookup), or ``None``.
    """

    model_id: str
    family: str
    dim: int
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    image_limits: ImageLimits
    cache: EmbeddingCache | None = None

    def __init__(
        self, *, batch_size: int = 64, image_limits: ImageLimits | None = None, cache: EmbeddingCache | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.image_limits = image_limits or ImageLimits()
        self.cache = cache
        self.forward_count = 0
        self._forward_lock = threading.Lock()  # one forward pass at a time (device memory, CPU threads)
        self._prefetcher = Prefetcher("mmrag-prefetch")

    # ----------------------------------------------------------- family hooks
    @abstractmethod
    def prepare_texts(self, texts: list[str]) -> Batch:
        """Tokenise one batch of texts on the CPU.

        Args:
            texts: At most ``batch_size`` strings.

        Returns:
            Model inputs for :meth:`forward_texts`.
        """

    @abstractmethod
    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """Preprocess one batch of decoded RGB images on the CPU.

        Args:
            images: At most ``batch_size`` RGB images of any sizes.

        Returns:
            Model inputs for :meth:`forward_images`.
        """

    def prepare_image_inputs(
        self, items: list[ImageInput], *, limits: ImageLimits, start: int, call_size: int
    ) -> Batch:
        """Resolve, decode and preprocess one batch of raw image inputs on the CPU.

        The default resolves each item with :func:`mmrag.resolve_image` and
        calls :meth:`prepare_images`; families with a faster path (worker
        processes, ``uint8`` pixels) override it. It runs on the prefetch
        thread while the previous batch is in :meth:`forward_images`.

        Args:
            items: At most ``batch_size`` raw inputs, in order.
            limits: Limits to resolve them under.
            start: Index of ``items[0]`` in the whole call (errors name
                ``start + i``).
            call_size: Images in the whole :meth:`embed_images` call (a family
                may start worker processes only for large calls).

        Returns:
            Model inputs for :meth:`forward_images`.

        Raises:
            mmrag.ImageInputError: For the first item that cannot be resolved.
        """
        decoded = [resolve_image(item, limits=limits, index=start + i) for i, item in enumerate(items)]
        return self.prepare_images(decoded)

    @abstractmethod
    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """Run the text tower on one prepared batch.

        Args:
            batch: What :meth:`prepare_texts` returned.

        Returns:
            Un-normalised text features, shape ``(n, dim)``.
        """

    @abstractmethod
    def forward_images(self, batch: Batch) -> torch.Tensor:
        """Run the image tower on one prepared batch.

        Args:
            batch: What :meth:`prepare_images` returned.

        Returns:
            Un-normalised image features, shape ``(n, dim)``.
        """

    # ------------------------------------------------------------- public API
    def embed_texts(
        self, texts: Iterable[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed texts.

        Texts longer than the model's text length (``max_text_length``
        tokens: 77 for CLIP, 64 for SigLIP) are truncated.

        Args:
            texts: The texts, in order (a list or tuple). A single ``str`` is
                refused (wrap it in a list), and so is a set.
            batch_size: Override the encoder's ``batch_size`` for this call.
            show_progress: A progress bar (``None``: past one batch, where visible; see :mod:`mmrag.progress`).

        Returns:
            Float32 array of shape ``(len(texts), dim)``, L2-normalised rows.

        Raises:
            mmrag.NotASequenceError: ``texts`` is a single item, a set or a
                mapping (see :func:`mmrag.inputs.as_items`).
            mmrag.TextInputError: An item is not a string or holds a lone
                surrogate; the message names its index (also a ``TypeError``).

        Example:
            >>> vecs = enc.embed_texts(["a red circle", "红色的圆形"])
            >>> vecs.shape
            (2, 768)
        """
        items = as_texts(texts)
        if self.cache is not None:
            embed = lambda misses: self._embed_texts(misses, batch_size, show_progress)  # noqa: E731 - uncached
            return embed_with_cache(self.cache, self, items, "text", batch_size=batch_size, embed=embed)
        return self._embed_texts(items, batch_size, show_progress)

    def _embed_texts(self, items: list[str], batch_size: int | None, show_progress: bool | None = False) -> np.ndarray:
        # Batch texts of similar length together so little of each batch is padding;
        # rows go back to input order afterwards (padding never changes a vector).
        order = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
        prepare = lambda chunk, _start: self.prepare_texts(chunk)  # noqa: E731 - texts need no start index
        ordered = [items[i] for i in order]
        vectors = self._pipeline(ordered, prepare, self.forward_texts, batch_size, show_progress, "text")
        restored = np.empty_like(vectors)
        restored[order] = vectors
        return restored

    def embed_images(
        self,
        images: Iterable[ImageInput],
        *,
        batch_size: int | None = None,
        limits: ImageLimits | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed images given as anything :func:`mmrag.resolve_image` accepts.

        Decoding and preprocessing of the next batch overlap the forward pass
        of the current one (for CLIP, Chinese-CLIP and SigLIP on worker
        processes when the call is large enough; see
        ``LoadOptions.image_workers``). A batch with one bad item raises for
        that item and returns nothing. Images already resolved by
        :func:`mmrag.resolve_image` are used as they are (not copied or
        decoded again).

        Args:
            images: A list of paths, URLs, data URIs, base64 strings, bytes,
                file-like objects, PIL images or HWC uint8 arrays, mixed sizes
                allowed.
            batch_size: Override the encoder's ``batch_size`` for this call.
            limits: Override the encoder's ``image_limits`` for this call.
            show_progress: A progress bar (``None``: past one batch, where visible; see :mod:`mmrag.progress`).

        Returns:
            Float32 array of shape ``(len(images), dim)``, L2-normalised rows.

        Raises:
            mmrag.NotASequenceError: ``images`` is a single item (a path, a
                string, bytes, a PIL image, an array, a file object), a set or
                a mapping (see :func:`mmrag.inputs.as_items`).
            mmrag.ImageInputError: An item could not be resolved or decoded;
                the message names its index and the reason.

        Example:
            >>> enc.embed_images(["photo.jpg", pil_image]).shape
            (2, 768)
        """
        items = as_items(images, "images")
        active = limits or self.image_limits
        if self.cache is not None:
            embed = lambda misses: self._embed_images(misses, batch_size, active, show_progress)  # noqa: E731 - uncached
            return embed_with_cache(self.cache, self, items, "image", batch_size=batch_size, limits=active, embed=embed)
        return self._embed_images(items, batch_size, active, show_progress)

    def _embed_images(
        self, items: list[ImageInput], batch_size: int | None, active: ImageLimits, show_progress: bool | None = False
    ) -> np.ndarray:
        size = batch_size or self.batch_size  # checked by _pipeline (and by a worker pool's stream)
        with self._image_batches(items, active, size) as prepare:
            return self._pipeline(items, prepare, self.forward_images, size, show_progress, "image")

    def _image_batches(
        self, items: list[ImageInput], limits: ImageLimits, batch_size: int
    ) -> contextlib.AbstractContextManager[Callable[[list[ImageInput], int], Batch]]:
        """The prepare step of one ``embed_images`` call, for its chunks in order (default: chunk by chunk)."""
        return contextlib.nullcontext(
            lambda chunk, start: self.prepare_image_inputs(chunk, limits=limits, start=start, call_size=len(items))
        )

    def embed_fused(
        self, images: Iterable[ImageInput], texts: Iterable[str], *, batch_size: int | None = None
    ) -> FusedEmbeddings:
        """Embed image-text pairs and fuse each pair into one vector.

        Args:
            images: One image per pair.
            texts: One text per pair, same length as ``images``.
            batch_size: Override the encoder's ``batch_size`` for this call.

        Returns:
            A :class:`FusedEmbeddings` with ``image``, ``text`` and ``fused``
            arrays, where ``fused = normalize(image + text)``.

        Raises:
            mmrag.NotASequenceError: ``images`` or ``texts`` is a single item,
                a set or a mapping.
            ValueError: ``images`` and ``texts`` differ in length.
            mmrag.TextInputError: A text is not a string or not valid Unicode.
            mmrag.ImageInputError: An image could not be resolved.

        Example:
            >>> pair = enc.embed_fused(["shoe.jpg"], ["red running shoe"])
            >>> pair.fused.shape
            (1, 768)
        """
        image_items, text_items = checked_pairs(images, texts)
        image_vecs = self.embed_images(image_items, batch_size=batch_size)
        text_vecs = self.embed_texts(text_items, batch_size=batch_size)
        return FusedEmbeddings(image=image_vecs, text=text_vecs, fused=l2_normalize(image_vecs + text_vecs))

    @property
    def signature(self) -> dict[str, str | int]:
        """What a vector space depends on: a store records it to refuse mixing.

        Returns:
            ``model_id``, ``family``, ``dim`` and ``preprocessing`` (a short
            description of text length and image preprocessing).
        """
        return {"model_id": self.model_id, "family": self.family, "dim": self.dim, "preprocessing": self.preprocessing}

    @property
    def preprocessing(self) -> str:
        """A short, stable description of the preprocessing (for store metadata)."""
        return ""

    def find_batch_size(self, *, start: int = 8, limit: int = 1024) -> int:
        """The largest batch (up to ``limit``) whose image and text forward passes fit in device memory.

        What ``LoadOptions(batch_size="auto")`` runs on a CUDA GPU: trial
        batches of the largest inputs (full-size images, texts of the full
        text length), doubling from ``start`` until one runs out of memory,
        then bisecting back (:func:`mmrag.encoders.memory.search_batch_size`).
        It does not change :attr:`batch_size`.

        Args:
            start: The first size to try.
            limit: The largest size to try.

        Returns:
            The batch size found.

        Raises:
            RuntimeError: Not even one item fits.
        """

        from mmrag.encoders.memory import find_batch_size

        return find_batch_size(self, start=start, limit=limit)

    def close(self) -> None:
        """Stop the prefetch thread (and a family's worker processes). The encoder stays usable (restarts on demand)."""
        self._prefetcher.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, family={self.family!r}, dim={self.dim}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).replace('torch.', '')!r})"
        )

    # -------------------------------------------------------------- internals
    def _pipeline(
        self,
        items: list[_Item],
        prepare: Callable[[list[_Item], int], Batch],
        forward: Callable[[Batch], torch.Tensor],
        batch_size: int | None,
        show_progress: bool | None = False,
        unit: str = "item",
    ) -> np.ndarray:
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        chunks = [(items[start : start + size], start) for start in range(0, len(items), size)]
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = self._prefetcher.run(chunks, lambda chunk: prepare(*chunk))
        shown = show_progress if show_progress is not None else (None if len(chunks) > 1 else False)
        vectors: list[np.ndarray] = []
        with progress_bar(len(items), show=shown, desc="embedding", unit=unit) as bar:
            for batch in batches:
                vectors.append(self._forward(forward, batch))
                bar.update(len(vectors[-1]))
        return np.concatenate(vectors, axis=0)

    def _forward(self, forward: Callable[[Batch], torch.Tensor], batch: Batch, *, warn: bool = True) -> np.ndarray:
        """One forward pass; out of device memory, the batch is split in half and each half retried."""
        try:
            return self._forward_once(forward, batch)
        except Exception as exc:
            count = batch_length(batch)
            if not is_out_of_memory(exc) or count is None or count < 2:
                raise
        # Outside the except block, so the failed attempt's tensors (held by the traceback) are freed.
        free_cached_memory(self.device)
        if warn:  # once per batch of the call, not for every half
            message = f"mmrag: out of device memory for a batch of {count}; retried in halves (lower batch_size)"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        first, second = split_batch(batch)
        del batch
        halves = [self._forward(forward, first, warn=False), self._forward(forward, second, warn=False)]
        return np.concatenate(halves, axis=0)

    def _forward_once(self, forward: Callable[[Batch], torch.Tensor], batch: Batch) -> np.ndarray:
        import torch

        with self._forward_lock, torch.inference_mode():  # concurrent calls overlap their CPU work, not forwards
            features = forward(batch)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
            self.forward_count += 1
        return features.cpu().numpy().astype(np.float32, copy=False)
