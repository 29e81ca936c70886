"""Coalesce concurrent embedding requests into shared forward passes.

Many small requests arriving at once (64 async ``aget_image_embedding`` calls,
64 HTTP requests for one image each) should cost a few batched forward passes,
not one each. :class:`EmbeddingBatcher` puts one worker thread in front of an
:class:`~mmrag.Encoder`: callers submit requests (from any thread or event
loop), the worker drains whatever is waiting, up to ``max_batch_items``
items, runs them through the encoder together, and hands each caller its own
rows. The model never runs on an event loop, and there is no thread per
request.

Image-text pairs (``embed_fused``, composed queries) are batched the same
way: concurrent pairs share one ``encoder.embed_fused`` call.

The queue is bounded: when ``max_pending_items`` items are already waiting,
a new request fails at once with :class:`QueueFullError` instead of growing
memory without limit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mmrag.encoders.fused import FusedEmbeddings, checked_pairs
from mmrag.errors import ImageInputError, OverloadedError
from mmrag.inputs import ImageInput, ImageLimits, as_items, as_texts, resolve_image

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__ = ["EmbeddingBatcher", "QueueFullError"]

Kind = Literal["text", "image", "pair"]
KINDS: tuple[Kind, ...] = ("text", "image", "pair")


class QueueFullError(OverloadedError):
    """The batcher already holds its maximum of waiting items; retry later."""


@dataclass
class _Request:
    kind: Kind
    items: list[Any]  # checked texts ("text"), image inputs ("image") or (image input, checked text) pairs ("pair")
    limits: ImageLimits | None
    future: Future[np.ndarray] = field(default_factory=Future)


class EmbeddingBatcher:
    """One worker thread that runs concurrent embedding requests in shared batches.

    Args:
        encoder: The encoder to run.
        max_batch_items: Most items gathered into one encoder call (the encoder
            still runs at most ``encoder.batch_size`` per forward pass);
            default ``encoder.batch_size``.
        max_wait_ms: How long the worker waits for more requests to join a
            batch that is not yet full.
        max_pending_items: Most items waiting in the queue; beyond it
            submissions raise :class:`QueueFullError`.

    Example:
        >>> batcher = EmbeddingBatcher(encoder)
        >>> vectors = await asyncio.gather(*(batcher.aembed_texts([t]) for t in texts))
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        max_batch_items: int | None = None,
        max_wait_ms: float = 2.0,
        max_pending_items: int = 4096,
    ) -> None:
        self.encoder = encoder
        self.max_batch_items = max_batch_items or encoder.batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_pending_items = max_pending_items
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._pending_items = 0
        self._pending_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- submit
    def submit(self, kind: Kind, items: Iterable[object], *, limits: ImageLimits | None = None) -> Future[np.ndarray]:
        """Queue a request; the future resolves to its vectors (``(len(items), dim)``; pairs: ``(len(items), 3, dim)``).

        Texts are checked here, before anything is queued; images are
        resolved on the worker thread (an image already resolved by
        :func:`mmrag.resolve_image` is used as it is).

        Args:
            kind: ``"text"``, ``"image"`` or ``"pair"``.
            items: A list of texts, of image inputs, or of ``(image, text)``
                pairs.
            limits: Image limits for this request (default: the encoder's).

        Returns:
            A future with the float32 vectors, or the request's own error
            (an :class:`~mmrag.ImageInputError` naming the item's index within
            this request). For pairs the array is ``(len(items), 3, dim)``:
            image, text and fused vector of each pair (see :meth:`embed_fused`).

        Raises:
            mmrag.NotASequenceError: ``items`` is a single item, a set or a
                mapping (see :func:`mmrag.inputs.as_items`).
            mmrag.TextInputError: A text is not a string or not valid
                Unicode (the message names its index within this request).
            ValueError: An unknown ``kind``, or a pair that is not an
                ``(image, text)`` tuple.
            QueueFullError: Too many items are already waiting.
            RuntimeError: The batcher is closed.
        """
        if self._closed:
            raise RuntimeError("the batcher is closed")
        if kind == "text":
            listed: list[Any] = as_texts(items)
        elif kind == "image":
            listed = as_items(items, "images")
        elif kind == "pair":
            listed = _checked_pairs(as_items(items, "pairs"))
        else:
            raise ValueError(f"kind must be 'text', 'image' or 'pair', got {kind!r}")
        request = _Request(kind, listed, limits)
        if not request.items:
            shape = (0, 3, self.encoder.dim) if kind == "pair" else (0, self.encoder.dim)
            request.future.set_result(np.zeros(shape, dtype=np.float32))
            return request.future
        with self._pending_lock:
            if self._pending_items + len(request.items) > self.max_pending_items:
                raise QueueFullError(
                    f"embedding queue is full ({self._pending_items} items waiting, limit {self.max_pending_items})"
                )
            self._pending_items += len(request.items)
        self._ensure_worker()
        self._queue.put(request)
        return request.future

    def embed_texts(self, texts: Iterable[str]) -> np.ndarray:
        """Embed texts through the shared queue, blocking until done.

        Args:
            texts: The texts.

        Returns:
            Float32 vectors, one row per text.
        """
        return self.submit("text", texts).result()

    def embed_images(self, images: Iterable[ImageInput], *, limits: ImageLimits | None = None) -> np.ndarray:
        """Embed images through the shared queue, blocking until done.

        Args:
            images: Image inputs.
            limits: Image limits for this request.

        Returns:
            Float32 vectors, one row per image.
        """
        return self.submit("image", images, limits=limits).result()

    async def aembed_texts(self, texts: Iterable[str]) -> np.ndarray:
        """Embed texts without blocking the event loop; concurrent calls share forward passes.

        Args:
            texts: The texts.

        Returns:
            Float32 vectors, one row per text.
        """
        return await asyncio.wrap_future(self.submit("text", texts))

    async def aembed_images(self, images: Iterable[ImageInput], *, limits: ImageLimits | None = None) -> np.ndarray:
        """Embed images without blocking the event loop; concurrent calls share forward passes.

        Args:
            images: Image inputs.
            limits: Image limits for this request.

        Returns:
            Float32 vectors, one row per image.
        """
        return await asyncio.wrap_future(self.submit("image", images, limits=limits))

    def embed_fused(
        self, images: Iterable[ImageInput], texts: Iterable[str], *, limits: ImageLimits | None = None
    ) -> FusedEmbeddings:
        """``encoder.embed_fused`` through the shared queue, blocking until done.

        Args:
            images: One image input per pair.
            texts: One text per pair.
            limits: Image limits for this request.

        Returns:
            The pairs' image, text and fused vectors.

        Raises:
            ValueError: ``images`` and ``texts`` differ in length.
            mmrag.NotASequenceError: ``images`` or ``texts`` is a single item.
            mmrag.TextInputError: A text is not a string or not valid Unicode.
            mmrag.ImageInputError: An image cannot be resolved (names its index).
            QueueFullError: Too many items are already waiting.
            RuntimeError: The batcher is closed.
        """
        return FusedEmbeddings.from_stacked(self.submit("pair", _zipped(images, texts), limits=limits).result())

    async def aembed_fused(
        self, images: Iterable[ImageInput], texts: Iterable[str], *, limits: ImageLimits | None = None
    ) -> FusedEmbeddings:
        """``encoder.embed_fused`` without blocking the event loop; concurrent calls share forward passes.

        Args:
            images: One image input per pair.
            texts: One text per pair.
            limits: Image limits for this request.

        Returns:
            The pairs' image, text and fused vectors.

        Raises:
            ValueError: ``images`` and ``texts`` differ in length.
            mmrag.NotASequenceError: ``images`` or ``texts`` is a single item.
            mmrag.TextInputError: A text is not a string or not valid Unicode.
            mmrag.ImageInputError: An image cannot be resolved (names its index).
            QueueFullError: Too many items are already waiting.
            RuntimeError: The batcher is closed.
        """
        stacked = await asyncio.wrap_future(self.submit("pair", _zipped(images, texts), limits=limits))
        return FusedEmbeddings.from_stacked(stacked)

    @property
    def pending_items(self) -> int:
        """Items submitted and not yet finished."""
        return self._pending_items

    def close(self) -> None:
        """Finish queued requests, then stop the worker thread."""
        self._closed = True
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=60)
            self._worker = None

    # ---------------------------------------------------------------- worker
    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="mmrag-batcher", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            count = len(first.items)
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch_items:
                try:
                    following = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if following is None:
                    stop = True
                    break
                batch.append(following)
                count += len(following.items)
            for kind in KINDS:
                group = [request for request in batch if request.kind == kind]
                if group:
                    self._run_group(kind, group)
            with self._pending_lock:
                self._pending_items -= count

    def _run_group(self, kind: Kind, group: list[_Request]) -> None:
        runnable: list[tuple[_Request, list[Any]]] = []
        for request in group:
            if request.future.done():  # cancelled by its caller while waiting
                continue
            payload = request.items  # texts were checked by submit()
            if kind != "text":
                limits = request.limits or self.encoder.image_limits
                try:
                    if kind == "image":
                        payload = [resolve_image(item, limits=limits, index=i) for i, item in enumerate(payload)]
                    else:
                        payload = [
                            (resolve_image(pair[0], limits=limits, index=i), pair[1]) for i, pair in enumerate(payload)
                        ]
                except ImageInputError as exc:
                    _fail(request.future, exc)
                    continue
            runnable.append((request, payload))
        if not runnable:
            return
        items = [item for _, payload in runnable for item in payload]
        try:
            vectors = self._embed(kind, items)
        except BaseException as exc:
            for request, _ in runnable:
                _fail(request.future, exc)
            return
        start = 0
        for request, payload in runnable:
            if not request.future.done():  # a caller may have given up (cancelled) meanwhile
                request.future.set_result(vectors[start : start + len(payload)])
            start += len(payload)

    def _embed(self, kind: Kind, items: list[Any]) -> np.ndarray:
        if kind == "text":
            return self.encoder.embed_texts(items)
        if kind == "image":
            return self.encoder.embed_images(items)
        pairs = self.encoder.embed_fused([image for image, _ in items], [text for _, text in items])
        return pairs.stacked()


def _zipped(images: Iterable[ImageInput], texts: Iterable[str]) -> list[tuple[ImageInput, str]]:
    image_items, text_items = checked_pairs(images, texts)
    return list(zip(image_items, text_items))


def _checked_pairs(items: list[Any]) -> list[tuple[ImageInput, str]]:
    """``(image, text)`` pairs with their texts checked (the message names the pair's index)."""
    for index, pair in enumerate(items):
        if not isinstance(pair, tuple) or len(pair) != 2:
            got = f"a tuple of {len(pair)} items" if isinstance(pair, tuple) else type(pair).__name__
            raise ValueError(
                f"pair {index} must be an (image, text) tuple, got {got}; pass a list of pairs, even for one"
            )
    texts = as_texts([text for _, text in items])
    return [(image, text) for (image, _), text in zip(items, texts)]


def _fail(future: Future[np.ndarray], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
