"""What a running server holds: the model (loaded once, in the background), the queue, the store.

:class:`Runtime` is created with the app and filled by a loader thread at
startup, so ``/health`` answers while the model loads and ``/ready`` turns 200
when it is done. Request handlers use its helpers, which keep every blocking
step off the event loop:

* images are decoded (and URLs fetched, under the SSRF guard) on a small
  thread pool shared by all requests, once each, within the decode budget,
  and shrunk to what the model needs (:mod:`mmrag.server.images`): the
  decoded images pass through the batcher and the encoder unchanged,
  because :func:`mmrag.inputs.resolve_image` returns an image it produced
  as it is;
* long texts are cut to the model's window before anything tokenises them
  (:mod:`mmrag.server.tokens`), texts over ``--max-text-chars`` are refused;
* every vector comes from the one :class:`~mmrag.EmbeddingBatcher`, fed by
  the :class:`~mmrag.server.coalesce.Coalescer`, which gathers concurrent
  requests into full batches;
* Chroma queries run on a dedicated store thread;
* after a burst of large inputs, free memory goes back to the system
  (:mod:`mmrag.server.memory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mmrag.encoders.fused import FusedEmbeddings
from mmrag.errors import ImageInputError
from mmrag.server.coalesce import Coalescer, Kind
from mmrag.server.errors import ApiError, server_wording
from mmrag.server.images import ImageDecoder
from mmrag.server.limits import Admission, DecodeBudget, current_ticket
from mmrag.server.memory import MemoryTrimmer
from mmrag.server.recorded import RecordedModel
from mmrag.server.settings import ServerSettings
from mmrag.server.store_source import chroma_client, embedding_cache, recorded_model
from mmrag.server.tokens import SHORT_TEXT_CHARS, TokenCounter

if TYPE_CHECKING:
    from PIL import Image

    from mmrag.batching import EmbeddingBatcher
    from mmrag.encoders.base import Encoder
    from mmrag.store import MultimodalStore

__all__ = ["ItemError", "Runtime"]

logger = logging.getLogger("uvicorn.error")  # shown with uvicorn's own startup lines
_T = TypeVar("_T")


@dataclass(frozen=True)
class ItemError:
    """One input that could not be used.

    Attributes:
        index: Its position in the request's list.
        message: Why, naming the item briefly (never the whole base64).
    """

    index: int
    message: str


class Runtime:
    """The server's long-lived state.

    Args:
        settings: The server settings.
        on_fatal: Called (from the loader thread) when the model or store
            cannot be loaded; the server should then exit.
    """

    def __init__(self, settings: ServerSettings, on_fatal: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.limits = settings.image_limits()
        self.admission = Admission(settings.max_queue)
        self.decode_budget = DecodeBudget(settings.max_decode_pixels)
        self.images = ImageDecoder(self.limits, self.decode_budget)
        self.tokens = TokenCounter()
        self.trimmer = MemoryTrimmer()
        self.coalescer: Coalescer | None = None
        self.on_fatal = on_fatal
        self.encoder: Encoder | None = None
        self.batcher: EmbeddingBatcher | None = None
        self.store: MultimodalStore | None = None
        self.load_error: str | None = None
        self.started_at = time.monotonic()
        self._ready = threading.Event()
        self._closed = False
        self._loader: threading.Thread | None = None
        self._resolve_pool = ThreadPoolExecutor(settings.resolve_workers, thread_name_prefix="mmrag-resolve")
        self._store_pool = ThreadPoolExecutor(1, thread_name_prefix="mmrag-store")
        # Tokenising for usage counts and cutting long texts: one thread (the tokenizer copy is locked anyway),
        # apart from the decoding threads, so texts never wait behind images waiting for the decode budget.
        self._text_pool = ThreadPoolExecutor(1, thread_name_prefix="mmrag-text")
        self.requests_served = 0
        self.in_flight = 0
        self.statuses: Counter[int] = Counter()
        self.items_embedded: Counter[str] = Counter()

    # ---------------------------------------------------------------- loading
    @property
    def ready(self) -> bool:
        """Whether the model (and store) are loaded and requests can be served."""
        return self._ready.is_set()

    def start_loading(self) -> None:
        """Load the model, the store and the queue on a background thread."""
        self._loader = threading.Thread(target=self._load, name="mmrag-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        from mmrag.batching import EmbeddingBatcher
        from mmrag.encoders import DEFAULT_MODEL, load_encoder

        settings = self.settings
        try:
            recorded = recorded_model(settings) if settings.model is None else RecordedModel()
            model, text_model = recorded.load_arguments(settings.model, settings.text_model)
            started = time.perf_counter()
            encoder = load_encoder(
                model or DEFAULT_MODEL,
                options=settings.load_options,
                text_model=text_model,
                cache=embedding_cache(settings),
            )
            self.encoder = encoder
            self.images.use_model(encoder)
            if settings.db is not None or settings.chroma_url is not None:
                from mmrag.store import MultimodalStore

                client = chroma_client(settings)
                self.store = MultimodalStore(encoder, path=settings.db, client=client, collection=settings.collection)
            batcher = EmbeddingBatcher(
                encoder,
                max_batch_items=settings.batch_size,
                max_wait_ms=0.0,  # the coalescer holds partial batches (--max-wait-ms), the batcher never waits
                # Admission (429) bounds the queue; this is only a backstop that
                # must let one oversized request (clamped by Admission) through.
                max_pending_items=settings.max_queue + settings.max_items + 1,
            )
            self.coalescer = Coalescer(
                lambda kind, items: batcher.submit(kind, items, limits=self.limits),
                batch_items=settings.batch_size,
                window_s=settings.max_wait_ms / 1000.0,
                on_the_way=lambda: self.admission.on_the_way,
            )
            self.batcher = batcher
            logger.info(
                "model %s loaded in %.1fs (dim %d, device %s)",
                encoder.model_id, time.perf_counter() - started, encoder.dim, encoder.device,
            )  # fmt: skip  # aligned by hand
        except Exception as exc:  # reported on /ready and in the log, then the server exits
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("cannot start: %s", self.load_error)
            if self.on_fatal is not None:
                self.on_fatal()
            return
        if self._closed:  # shut down while loading
            self._close_loaded()
            return
        self._ready.set()

    def require_ready(self) -> tuple[Encoder, EmbeddingBatcher]:
        """The encoder and batcher, or a 503 while they load.

        Raises:
            ApiError: 503 ``not_ready`` with ``Retry-After``.
        """
        if not self.ready or self.encoder is None or self.batcher is None:
            reason = f"model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise ApiError(503, "not_ready", reason, headers={"Retry-After": "1"})
        return self.encoder, self.batcher

    # ---------------------------------------------------------------- helpers
    def check_items(self, count: int, what: str) -> None:
        """Refuse a request with more than ``max_items`` inputs (422).

        Args:
            count: How many inputs the request has.
            what: Their name for the message, e.g. ``"candidates"``.
        """
        if count > self.settings.max_items:
            raise ApiError(
                422,
                "too_many_items",
                f"{count} {what} in one request; this server accepts at most {self.settings.max_items} (--max-items)",
            )

    def check_texts(self, texts: Sequence[str], label: Callable[[int], str]) -> None:
        """Refuse a text over ``--max-text-chars`` (422 ``text_too_long``, naming the limit).

        Args:
            texts: The request's texts.
            label: Names text ``i`` in the message, e.g. ``lambda i: f"input {i}"``.
        """
        limit = self.settings.max_text_chars
        for index, text in enumerate(texts):
            if len(text) > limit:
                raise ApiError(
                    422,
                    "text_too_long",
                    f"{label(index)} is {len(text)} characters long; this server accepts at most {limit} "
                    "characters per text (--max-text-chars)",
                    index=index if len(texts) > 1 else None,
                )

    @contextlib.contextmanager
    def admitted(self, items: int) -> Iterator[None]:
        """Hold ``items`` places in the pipeline for the block (the request's ticket holds them), or raise 429.

        Raises:
            ApiError: 429 ``overloaded`` with ``Retry-After`` when full.
        """
        ticket = current_ticket()
        admitted = ticket.admit(items) if ticket is not None else self.admission.try_acquire(items)
        if not admitted:
            admission = self.admission
            raise ApiError(
                429,
                "overloaded",
                f"the embedding queue is full ({admission.depth} places taken, limit {admission.limit}, "
                "--max-queue); retry later",
                headers={"Retry-After": "1"},
            )
        try:
            yield
        finally:
            if ticket is None:
                self.admission.release(items)

    def request_left(self) -> None:
        """A request left the pipeline: send batches nobody is coming for, trim memory once it is empty."""
        if self.coalescer is not None:
            self.coalescer.recheck()
        if self.admission.depth == 0:
            self.trimmer.idle()

    async def resolve_images(
        self, items: Sequence[str], *, label: Callable[[int], str]
    ) -> tuple[list[Image.Image | None], list[ItemError]]:
        """Decode image inputs on the shared pool, each on its own.

        Args:
            items: Base64, data URIs, URLs (or paths below ``--allow-local-root``).
            label: Names item ``i`` in messages, e.g. ``lambda i: f"candidate {i}"``.

        Returns:
            ``(images, errors)``: one image per item (``None`` where it
            failed) and the failures, ordered by index.
        """
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(self._resolve_pool, self.images.resolve, item, index)
            for index, item in enumerate(items)
        ]
        results = await asyncio.gather(*futures)
        self.trimmer.note(self.images.take_decoded_bytes())
        images: list[Image.Image | None] = []
        errors: list[ItemError] = []
        for index, result in enumerate(results):
            if isinstance(result, ImageInputError):
                images.append(None)
                errors.append(ItemError(index, _item_message(label(index), result)))
            else:
                images.append(result)
        return images, errors

    async def prepare_texts(self, texts: Sequence[str], label: Callable[[int], str]) -> list[str]:
        """Refuse texts over ``--max-text-chars``, cut long ones to the model's window (on the shared pool).

        Args:
            texts: The request's texts.
            label: Names text ``i`` in messages.

        Returns:
            The texts to embed (and count tokens of).
        """
        self.check_texts(texts, label)
        long_chars = sum(len(text) for text in texts if len(text) > SHORT_TEXT_CHARS)
        if not long_chars:
            return list(texts)
        self.trimmer.note(long_chars * 4)
        encoder, _ = self.require_ready()
        return await self.run_cpu(self.tokens.bounded, encoder, texts)

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for texts (from :meth:`prepare_texts`), batched with concurrent requests."""
        vectors = await self._embed("text", list(texts))
        self.items_embedded["text"] += len(texts)
        return vectors

    async def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors for images decoded by :meth:`resolve_images`, batched with concurrent requests.

        The images are not decoded or copied again on the way to the model.
        """
        vectors = await self._embed("image", list(images))
        self.items_embedded["image"] += len(images)
        return vectors

    async def embed_fused(self, images: Sequence[Image.Image], texts: Sequence[str]) -> FusedEmbeddings:
        """Image, text and fused vectors of pairs: one ``encoder.embed_fused`` call per batch of concurrent requests.

        Raises:
            ValueError: ``images`` and ``texts`` differ in length.
        """
        stacked = await self._embed("pair", list(zip(images, texts, strict=True)))
        self.items_embedded.update(image=len(images), text=len(texts))
        return FusedEmbeddings.from_stacked(stacked)

    async def _embed(self, kind: Kind, items: list[Any]) -> np.ndarray:
        encoder, _ = self.require_ready()
        assert self.coalescer is not None
        ticket = current_ticket()
        if ticket is not None:
            ticket.submitted()
        if not items:
            return np.zeros((0, 3, encoder.dim) if kind == "pair" else (0, encoder.dim), dtype=np.float32)
        return await self.coalescer.embed(kind, items)

    async def run_store(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a store call on the store thread (never on the event loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_pool, lambda: fn(*args, **kwargs))

    async def run_cpu(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a short CPU-bound text helper (tokenising for usage counts, cutting long texts) on the text thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._text_pool, fn, *args)

    def metrics(self) -> dict[str, Any]:
        """Counters for ``GET /metrics``."""
        encoder = self.encoder
        return {
            "ready": self.ready,
            "model_id": encoder.model_id if encoder is not None else None,
            "dimension": encoder.dim if encoder is not None else None,
            "forward_passes": encoder.forward_count if encoder is not None else 0,
            "queue_depth": self.admission.depth,
            "queue_limit": self.admission.limit,
            "requests_on_the_way": self.admission.on_the_way,
            "batcher_pending": self.batcher.pending_items if self.batcher is not None else 0,
            "batches_sent": self.coalescer.batches_sent if self.coalescer is not None else 0,
            "decode_pixels_in_use": self.decode_budget.used,
            "decode_pixels_peak": self.decode_budget.peak,
            "decode_pixels_limit": self.decode_budget.limit,
            "decode_waits": self.decode_budget.waits,
            "images_shrunk": self.images.shrunk,
            "memory_trims": self.trimmer.trims,
            "requests_served": self.requests_served,
            "requests_in_flight": self.in_flight,
            "requests_refused_overload": self.admission.refused,
            "responses_by_status": {str(code): count for code, count in sorted(self.statuses.items())},
            "items_embedded": {"text": self.items_embedded["text"], "image": self.items_embedded["image"]},
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "process_cpu_s": round(time.process_time(), 3),
            "cache": dataclasses.asdict(encoder.cache.stats) if encoder is not None and encoder.cache else None,
        }

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Finish queued work, release the store and the pools (called at shutdown)."""
        self._closed = True
        if self.ready:
            self._close_loaded()
        self._resolve_pool.shutdown(wait=True, cancel_futures=True)
        self._store_pool.shutdown(wait=True, cancel_futures=True)
        self._text_pool.shutdown(wait=True, cancel_futures=True)

    def _close_loaded(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.store is not None:
            self.store.close()
        if self.encoder is not None:
            self.encoder.close()
            if self.encoder.cache is not None:
                self.encoder.cache.close()


def _item_message(name: str, error: ImageInputError) -> str:
    described = f" ({error.item})" if error.item else ""
    return f"{name}{described}: {server_wording(error.reason)}"
