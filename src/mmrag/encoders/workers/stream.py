"""One call's images as consecutive batches, with the next batch's items already on the workers.

:class:`ImageBatchStream` is what :meth:`ImageWorkerPool.prepare_batches
<mmrag.encoders.workers.ImageWorkerPool.prepare_batches>` returns. While it
completes batch ``k``, worker slots that fall free take items of batch
``k + 1``, so no worker waits at a batch boundary for the slowest image of the
batch (with 8 workers and batches of 64 that wait costs about a tenth of the
throughput; with 2-4 images per worker, a third). At most two batches are
being prepared at a time.

Every reply carries its owner (stream and position), so whichever call reads
it copies the pixels where they belong: calls from several threads may
interleave between batches, and a closed or abandoned stream's late replies
just free their slots.
"""

from __future__ import annotations

import os
import pathlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mmrag.encoders.preprocess import prepare_image
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageInput, ImageLimits, read_image_bytes, resolve_image

if TYPE_CHECKING:
    from mmrag.encoders.workers.pool import ImageWorkerPool
    from mmrag.encoders.workers.processes import PoolState, Reply

__all__ = ["ImageBatchStream"]


class ImageBatchStream:
    """Consecutive ``uint8`` batches of one call's images, in order: an iterator with :meth:`close`.

    Made by :meth:`ImageWorkerPool.prepare_batches
    <mmrag.encoders.workers.ImageWorkerPool.prepare_batches>`. Each ``next()``
    returns a new array ``(n, 3, height, width)`` for the next ``batch_size``
    items (fewer for the last). A bad item raises
    :class:`~mmrag.ImageInputError` (its index offset by ``start``) when its
    batch is reached, after every earlier batch was returned; the stream then
    ends; an error reading an input here (e.g. a closed file object) is raised
    the same way and leaves the workers running. If the workers stop between
    two batches (the pool closed, or a worker died in another call), the next
    ``next()`` sends the unfinished items to new ones. Use it as a context
    manager, or call :meth:`close`, to stop early. ``next()`` and
    :meth:`close` may be called from different threads.
    """

    def __init__(
        self,
        pool: ImageWorkerPool,
        state: PoolState | None,
        items: Sequence[ImageInput],
        batch_size: int,
        limits: ImageLimits,
        start: int,
    ) -> None:
        self._pool = pool
        self._state = state  # None: everything is prepared in the calling thread
        self._items = items
        self._size = batch_size
        self._limits = limits
        self._start = start
        try:
            self._cwd: str | None = os.getcwd() if state is not None else None
        except OSError:  # the working directory was removed: only absolute paths can work anyway
            self._cwd = None
        count = len(items)
        self._count = count
        self._returned = 0  # positions before this one were returned
        self._routed = 0  # positions before this one were routed
        self._remote: deque[int] = deque()  # routed, waiting for a free worker slot
        self._local: deque[int] = deque()  # routed, to prepare in this thread
        self._jobs: dict[int, _Job] = {}  # position -> what to send or prepare, until it is done
        self._outputs: dict[int, np.ndarray] = {}  # batch number -> its array
        self._done = bytearray(count)  # 1: pixels written or error recorded
        self._errors: dict[int, BaseException] = {}
        self._input_errors: set[int] = set()  # positions whose error came from reading the input here
        self._first_error = count
        self._closed = False

    # ------------------------------------------------------------------ public
    def __iter__(self) -> ImageBatchStream:
        return self

    def __next__(self) -> np.ndarray:
        with self._pool._lock:
            if self._closed or self._returned >= self._count:
                raise StopIteration
            if self._state is not None and self._pool._state is not self._state:
                self._rebind()  # the workers were stopped (closed, or one died) since the last batch
            first = self._returned
            stop = min(first + self._size, self._count)
            try:
                self._complete(first, stop)
            except BaseException as exc:
                self._finish()
                if self._state is not None and not self._is_item_error(exc):
                    self._pool._shutdown()  # a dead worker or an interrupt: the protocol state is unknown
                raise
            self._returned = stop
            return self._outputs.pop(first // self._size)

    def close(self) -> None:
        """Stop early: nothing more is prepared, and replies still on their way only free their slots."""
        with self._pool._lock:
            self._finish()

    def __enter__(self) -> ImageBatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        """The number of batches the stream yields in all."""
        return -(-self._count // self._size)

    # --------------------------------------------------------------- internals
    def _rebind(self) -> None:
        """Send this call's unfinished items to the pool's current workers (started again), or prepare them here."""
        self._state = self._pool._state if self._pool._ensure_started() else None
        self._remote.clear()
        self._local.clear()
        for position in range(self._returned, self._routed):
            job = self._jobs.get(position)
            if job is not None:  # routed, not done: its replies went with the old workers
                (self._remote if job.remote and self._state is not None else self._local).append(position)

    def _is_item_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is about an input (raised for its position), not about the workers."""
        return isinstance(exc, ImageInputError) or (
            self._first_error in self._input_errors and exc is self._errors.get(self._first_error)
        )

    def _finish(self) -> None:
        self._closed = True
        self._remote.clear()
        self._local.clear()
        self._jobs.clear()
        self._outputs.clear()

    def _complete(self, first: int, stop: int) -> None:
        """Work until positions ``first..stop`` are done (up to the first error); feed the next batch meanwhile."""
        state = self._state
        if state is not None:
            state.sync(self._limits, self._cwd)
        self._route(range(self._routed, min(stop + self._size, self._count)))
        settled = first
        while True:
            end = min(stop, self._first_error)
            while settled < end and self._done[settled]:
                settled += 1
            if settled >= end:
                break
            while state is not None and self._remote and self._remote[0] < self._first_error and state.has_free_slot():
                position = self._remote.popleft()
                state.submit(self._jobs[position].item, self._start + position, (self, position))
            worked_here = bool(self._local) and self._local[0] < self._first_error
            if worked_here:
                self._prepare_here(self._local.popleft())
            if state is not None and (worked_here or state.busy):
                for reply in state.replies(block=not worked_here):
                    _deliver(state, reply)
            elif not worked_here:  # nothing to do and nothing can arrive: a bookkeeping bug, not a hang
                raise RuntimeError(f"image batch stream stalled at position {settled}")  # pragma: no cover
        if self._first_error < stop:
            raise self._errors[self._first_error]

    def _route(self, positions: Iterable[int]) -> None:
        """Decide where each position is prepared (reading here what must be), allocating its batch array."""
        for position in positions:
            self._routed = max(self._routed, position + 1)
            batch = position // self._size
            if batch not in self._outputs:
                rows = min(self._size, self._count - batch * self._size)
                self._outputs[batch] = np.empty((rows, *self._pool.spec.output_shape), dtype=np.uint8)
            item = self._items[position]
            if self._state is None:
                job = _Job(item, remote=False)
            else:
                try:
                    job = _route(item, self._limits, self._start + position, self._pool.send_max_pixels)
                except Exception as exc:  # e.g. a closed file object: the input's error, raised at its batch
                    self._input_errors.add(position)
                    job = _Job(item, remote=False, error=exc)
            if job.error is not None:
                self._fail(position, job.error)
                continue
            self._jobs[position] = job
            (self._remote if job.remote else self._local).append(position)

    def _prepare_here(self, position: int) -> None:
        try:
            prepare_image(
                self._jobs.pop(position).item, self._pool.spec, limits=self._limits, index=self._start + position,
                fast=self._pool.fast, out=self._target(position),
            )  # fmt: skip
        except ImageInputError as exc:
            self._fail(position, exc)
        else:
            self._done[position] = 1

    def _target(self, position: int) -> np.ndarray:
        batch, row = divmod(position, self._size)
        target: np.ndarray = self._outputs[batch][row]
        return target

    def _fail(self, position: int, error: BaseException) -> None:
        self._jobs.pop(position, None)
        self._errors[position] = error
        self._done[position] = 1
        self._first_error = min(self._first_error, position)


def _deliver(state: PoolState, reply: Reply) -> None:
    """Copy a reply's pixels to its owner (or record its error) and free its slot."""
    try:
        owner = reply.owner
        if isinstance(owner, tuple) and isinstance(owner[0], ImageBatchStream):
            stream, position = owner
            if not stream._closed:
                if reply.error is None:
                    state.copy_out(reply, stream._target(position))
                    stream._done[position] = 1
                    stream._jobs.pop(position, None)
                else:
                    stream._fail(position, reply.error)
    finally:
        state.release(reply)


@dataclass
class _Job:
    """One item of a call: what to send (or prepare here)."""

    item: Any
    remote: bool
    error: BaseException | None = None


def _route(item: ImageInput, limits: ImageLimits, index: int, send_max_pixels: int) -> _Job:
    """Decide where an item is prepared; read or resolve here what cannot (or should not) be pickled as is."""
    if isinstance(item, (Image.Image, np.ndarray)):
        try:
            image = resolve_image(item, limits=limits, index=index)  # checks, orientation, RGB: a new image
        except ImageInputError as exc:
            return _Job(item, remote=False, error=exc)
        if image.width * image.height <= send_max_pixels:
            pixels = np.asarray(image)  # an RGB uint8 array is an input the worker resolves as is
            if image is not item:  # our copy; an image resolve_image produced earlier is the caller's
                image.close()
            return _Job(pixels, remote=True)
        return _Job(image, remote=False)
    if isinstance(item, (str, bytes)):
        return _Job(item, remote=True)
    if isinstance(item, os.PathLike):
        path = os.fspath(item)
        return _Job(pathlib.Path(path) if isinstance(path, str) else item, remote=isinstance(path, str))
    if isinstance(item, (bytearray, memoryview)) or hasattr(item, "read"):
        try:
            data = read_image_bytes(item, limits=limits, index=index)  # enforces max_bytes before copying
        except ImageInputError as exc:
            return _Job(item, remote=False, error=exc)
        return _Job(data, remote=True)
    return _Job(item, remote=False)  # unsupported: the resolver words the error
