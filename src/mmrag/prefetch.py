"""Overlap CPU work with model calls: prepare chunk ``i + 1`` while the caller uses chunk ``i``.

Encoders (tokenising, decoding and resizing images), rerankers and
``MultimodalStore.index_folder`` (reading files ahead of embedding them, and
writing one chunk behind) share this one mechanism; each owns a
:class:`Prefetcher` with one background thread (or ``ahead`` threads, where
several chunks may be prepared at once).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["Prefetcher"]

_Chunk = TypeVar("_Chunk")
_Batch = TypeVar("_Batch")


class Prefetcher:
    """Background threads that prepare the next chunk(s) while the current one is used.

    The thread starts on first use and is reused; :meth:`close` stops it, and
    the next use starts a new one. A sized collection of at most one chunk is
    prepared on the caller's thread (there is nothing to overlap with). Used as
    a context manager, leaving the block closes it and waits for the thread.

    Args:
        thread_name: Prefix of the background threads' names.
        ahead: Chunks prepared at once, each on its own thread, while the
            caller uses the current one (1: one thread, one chunk ahead).

    Raises:
        ValueError: ``ahead`` is below 1.

    Example:
        >>> prefetcher = Prefetcher("demo")
        >>> [b for b in prefetcher.run([1, 2, 3], lambda chunk: chunk * 10)]
        [10, 20, 30]
        >>> prefetcher.close()
    """

    def __init__(self, thread_name: str, *, ahead: int = 1) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1, got {ahead}")
        self._thread_name = thread_name
        self._depth = ahead
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, chunks: Iterable[_Chunk], prepare: Callable[[_Chunk], _Batch]) -> Iterator[_Batch]:
        """Yield ``prepare(chunk)`` for each chunk, in order, preparing ``ahead`` chunks ahead.

        ``chunks`` may be lazy (a generator): the next chunk is then produced on
        the caller's thread while the background thread prepares the previous
        one, so a producer, ``prepare`` and the consumer all overlap.

        Args:
            chunks: The chunks to prepare (a sequence, or any iterable).
            prepare: Turns one chunk into a batch (runs on the background thread).

        Returns:
            An iterator of prepared batches; an exception in ``prepare`` is
            raised when its batch is reached, one in producing ``chunks`` when
            the next batch is asked for.
        """
        if isinstance(chunks, Sized) and len(chunks) <= 1:
            return iter([prepare(chunk) for chunk in chunks])
        return self._ahead(chunks, prepare)

    def close(self, *, wait: bool = False) -> None:
        """Stop the background thread (a later :meth:`run` starts a new one).

        Args:
            wait: Return only after the chunk being prepared (if any) is done
                and the thread has ended; otherwise it ends on its own.
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(wait=True)

    def _ahead(self, chunks: Iterable[_Chunk], prepare: Callable[[_Chunk], _Batch]) -> Iterator[_Batch]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix=self._thread_name)
            pool = self._pool
        pending: deque[Future[_Batch]] = deque()
        for chunk in chunks:  # produced while the previous chunks are being prepared
            pending.append(pool.submit(prepare, chunk))
            if len(pending) > self._depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
