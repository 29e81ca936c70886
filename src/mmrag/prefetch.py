"""Overlap CPU preparation with model calls: prepare batch ``i + 1`` while the caller runs batch ``i``.

Encoders (tokenising, decoding and resizing images) and rerankers share this
one mechanism; each owns a :class:`Prefetcher` with a single background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["Prefetcher"]

_Chunk = TypeVar("_Chunk")
_Batch = TypeVar("_Batch")


class Prefetcher:
    """One background thread that prepares the next chunk while the current one is used.

    The thread starts on first use and is reused; :meth:`close` stops it, and
    the next use starts a new one. A single chunk is prepared on the caller's
    thread (there is nothing to overlap with).

    Args:
        thread_name: Prefix of the background thread's name.

    Example:
        >>> prefetcher = Prefetcher("demo")
        >>> [b for b in prefetcher.run([1, 2, 3], lambda chunk: chunk * 10)]
        [10, 20, 30]
        >>> prefetcher.close()
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, chunks: Sequence[_Chunk], prepare: Callable[[_Chunk], _Batch]) -> Iterator[_Batch]:
        """Yield ``prepare(chunk)`` for each chunk, in order, preparing one chunk ahead.

        Args:
            chunks: The chunks to prepare.
            prepare: Turns one chunk into a batch (runs on the background thread).

        Returns:
            An iterator of prepared batches; an exception in ``prepare`` is
            raised when its batch is reached.
        """
        if len(chunks) <= 1:
            return iter([prepare(chunk) for chunk in chunks])
        return self._ahead(chunks, prepare)

    def close(self) -> None:
        """Stop the background thread (a later :meth:`run` starts a new one)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None

    def _ahead(self, chunks: Sequence[_Chunk], prepare: Callable[[_Chunk], _Batch]) -> Iterator[_Batch]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
            pool = self._pool
        pending: Future[_Batch] = pool.submit(prepare, chunks[0])
        for position in range(len(chunks)):
            batch = pending.result()
            if position + 1 < len(chunks):
                pending = pool.submit(prepare, chunks[position + 1])
            yield batch
