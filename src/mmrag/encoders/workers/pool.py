"""The parent's side of the image worker pool: :class:`ImageWorkerPool`, routing items, ordering errors."""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmrag.encoders.preprocess import ImageSpec
from mmrag.encoders.workers.processes import PoolState
from mmrag.encoders.workers.stream import ImageBatchStream
from mmrag.inputs import ImageInput, ImageLimits, as_items

__all__ = ["MAX_DEFAULT_WORKERS", "SEND_MAX_PIXELS", "WORKER_MIN_IMAGES", "ImageWorkerPool", "default_num_workers"]

MAX_DEFAULT_WORKERS = 8
"""The most workers :func:`default_num_workers` picks."""

WORKER_MIN_IMAGES = 32
"""An encoder starts its image workers only for an ``embed_images`` call of at least this many images.

Starting costs about 0.3 s of CPU per worker (a fresh interpreter importing numpy, Pillow and
``mmrag.inputs``) and ~1 s of wall time on 2 busy cores, which a few images never pay back; smaller calls
are prepared in the calling process (the same pixels, still overlapped with the forward pass) until some
call starts the workers; from then on they serve every call of two or more images.
"""

SEND_MAX_PIXELS = 1_000_000
"""Default of ``ImageWorkerPool(send_max_pixels=)``: decoded images up to this size go to a worker.

Measured on 2 busy cores (tiny 224-px CLIP spec; parent CPU / total CPU per image, sent vs kept):
640x480 1.7 / 6.7 ms vs 6.2 / 6.8 ms; 1024x768 5.4 / 19 ms vs 13 / 13 ms; 2000x1500 21 / 66 ms vs
45 / 45 ms. Sending always frees the parent (2-4x), but above about a megapixel the copy, pickle
and pipe cost more CPU in total than the resize they move.
"""


def default_num_workers() -> int:
    """One worker per CPU core this process may use, at most :data:`MAX_DEFAULT_WORKERS`; 0 on one core.

    Returns:
        The number of worker processes :class:`ImageWorkerPool` starts by default.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, MAX_DEFAULT_WORKERS)


class ImageWorkerPool:
    """Decode and preprocess images on worker processes into ``uint8`` model-size pixels.

    Workers start on the first :meth:`prepare` call with at least two items
    (single items are prepared in the calling thread: no round trip) that
    allows a start, and are reused until :meth:`close` (or until the pool is
    garbage-collected, or the interpreter exits). ``num_workers=0`` does everything in the calling
    thread; so does a pool whose workers could not start (with a
    ``RuntimeWarning``). Safe to call from several threads (calls run one at a
    time).

    Args:
        spec: The model's :class:`~mmrag.encoders.preprocess.ImageSpec`.
        num_workers: Worker processes; ``None`` for :func:`default_num_workers`,
            ``0`` for none.
        fast: Fast decoding (JPEG DCT scaling, box reduction; not exact).
        slots_per_worker: Images each worker may have in flight (its slots of
            shared memory).
        send_max_pixels: Decoded inputs (PIL images, arrays) up to this many
            pixels are preprocessed on a worker, bigger ones in the calling
            thread (see :data:`SEND_MAX_PIXELS`).

    Raises:
        ValueError: ``num_workers`` is negative or ``slots_per_worker`` < 1.

    Example:
        >>> pool = ImageWorkerPool(spec)
        >>> pool.prepare(paths, start=64).shape
        (32, 3, 224, 224)
        >>> pool.close()
    """

    def __init__(
        self,
        spec: ImageSpec,
        *,
        num_workers: int | None = None,
        fast: bool = False,
        slots_per_worker: int = 3,
        send_max_pixels: int = SEND_MAX_PIXELS,
    ) -> None:
        workers = default_num_workers() if num_workers is None else num_workers
        if workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {workers}")
        if slots_per_worker < 1:
            raise ValueError(f"slots_per_worker must be >= 1, got {slots_per_worker}")
        self.spec = spec
        self.fast = fast
        self.num_workers = workers
        self.slots_per_worker = slots_per_worker
        self.send_max_pixels = send_max_pixels
        self._lock = threading.Lock()
        self._state: PoolState | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._start_failed = False
        self.startup_s: float | None = None
        """Seconds the last start of the workers took (``None`` before any)."""

    # ------------------------------------------------------------------ public
    @property
    def running(self) -> bool:
        """Whether worker processes are up."""
        return self._state is not None

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the running workers (empty when none run)."""
        state = self._state
        return tuple(worker.process.pid for worker in state.workers) if state else ()

    def prepare(
        self,
        items: Sequence[ImageInput],
        *,
        limits: ImageLimits | None = None,
        start: int = 0,
        allow_start: bool = True,
    ) -> np.ndarray:
        """Resolve, decode and preprocess a batch of images, all or nothing.

        Args:
            items: Any :data:`mmrag.ImageInput` values, in order.
            limits: Limits to enforce; ``ImageLimits()`` when omitted.
            start: Index of ``items[0]`` in the caller's whole input, so errors
                name the caller's index.
            allow_start: Start the workers if they are not running. ``False``:
                use them only if they already run, else work in this thread
                (for calls too small to pay for a start; same pixels).

        Returns:
            A new ``uint8`` array of shape ``(len(items), 3, height, width)``,
            row ``i`` for ``items[i]``.

        Raises:
            mmrag.ImageInputError: For the first item (in input order) that
                cannot be resolved or decoded; its ``index`` is ``start + i``.
            mmrag.NotASequenceError: ``items`` is a single item.
            RuntimeError: A worker died; the pool is shut down (the next call
                starts new workers).
        """
        batch = as_items(items, "images")
        if not batch:
            return np.empty((0, *self.spec.output_shape), dtype=np.uint8)
        with self.prepare_batches(batch, len(batch), limits=limits, start=start, allow_start=allow_start) as stream:
            return next(stream)

    def prepare_batches(
        self,
        items: Sequence[ImageInput],
        batch_size: int,
        *,
        limits: ImageLimits | None = None,
        start: int = 0,
        allow_start: bool = True,
    ) -> ImageBatchStream:
        """Prepare a whole call as consecutive batches, feeding the workers the next batch's items early.

        What an encoder's ``embed_images`` uses: while batch ``k`` is being
        completed, free worker slots already take items of batch ``k + 1``,
        so no worker idles at a batch boundary. The pixels are those of
        :meth:`prepare` on each batch.

        Args:
            items: Any :data:`mmrag.ImageInput` values, in order.
            batch_size: Items per batch (the last may have fewer).
            limits: Limits to enforce; ``ImageLimits()`` when omitted.
            start: Index of ``items[0]`` in the caller's whole input (for errors).
            allow_start: As in :meth:`prepare`.

        Returns:
            An :class:`~mmrag.encoders.workers.ImageBatchStream`: ``next()``
            gives the next batch as a new ``uint8`` array ``(n, 3, height,
            width)``; a bad item raises :class:`mmrag.ImageInputError` when its
            batch is reached. Close it (or use it as a context manager) when
            stopping early.

        Raises:
            mmrag.NotASequenceError: ``items`` is a single item.
            ValueError: ``batch_size`` is below 1.

        Example:
            >>> with pool.prepare_batches(paths, 64) as batches:
            ...     shapes = [batch.shape[0] for batch in batches]
        """
        batch = as_items(items, "images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        with self._lock:
            remote = len(batch) >= 2 and (self._state is not None or allow_start) and self._ensure_started()
            state = self._state if remote else None
        return ImageBatchStream(self, state, batch, batch_size, limits or ImageLimits(), start)

    def close(self) -> None:
        """Stop the workers and free their shared memory. The pool restarts on the next :meth:`prepare`."""
        with self._lock:
            self._shutdown()

    def __enter__(self) -> ImageWorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ImageWorkerPool(num_workers={self.num_workers}, fast={self.fast}, running={self.running}, "
            f"spec={self.spec.describe()!r})"
        )

    # --------------------------------------------------------------- internals
    def _ensure_started(self) -> bool:
        """Start the workers if needed; ``False`` means: work in-process."""
        if self.num_workers == 0 or self._start_failed:
            return False
        if self._state is not None:
            return True
        began = time.perf_counter()
        try:
            state = PoolState.start(self.spec, self.num_workers, self.slots_per_worker, self.fast)
        except (OSError, RuntimeError) as exc:
            self._start_failed = True
            warnings.warn(
                f"mmrag could not start image worker processes ({exc}); preparing images in-process",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.startup_s = time.perf_counter() - began
        self._state = state
        self._finalizer = weakref.finalize(self, state.shutdown)
        return True

    def _shutdown(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs state.shutdown once
            self._finalizer = None
        self._state = None
