"""Memory returned to the system after a burst of large images or texts.

Decoding an 8000x8000 image takes hundreds of megabytes in blocks that the C
allocator (glibc) keeps after they are freed, spread over its per-thread
arenas, so a burst left gigabytes resident for good. :class:`MemoryTrimmer`
asks glibc to give free memory back (``malloc_trim``) once the pipeline is
empty again after enough churn. Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
from typing import Any

__all__ = ["MemoryTrimmer", "release_free_memory"]

TRIM_AFTER_BYTES = 64 * 1024 * 1024
"""Churn (bytes of decoded pixels, characters of long texts) that makes an idle pipeline worth trimming."""


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free memory to the system.

    Returns:
        ``True`` if glibc's ``malloc_trim`` ran, ``False`` where there is none.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class MemoryTrimmer:
    """Runs :func:`release_free_memory` on a background thread when the pipeline empties after enough churn.

    Args:
        threshold: Churned bytes that make a trim worth it.
    """

    def __init__(self, threshold: int = TRIM_AFTER_BYTES) -> None:
        self.threshold = threshold
        self.trims = 0
        self._churn = 0
        self._running = False
        self._lock = threading.Lock()

    def note(self, nbytes: int) -> None:
        """Record memory taken and freed by the work just done."""
        if nbytes > 0:
            with self._lock:
                self._churn += nbytes

    def idle(self) -> None:
        """The pipeline is empty: trim now (on a thread) if enough churn has built up."""
        with self._lock:
            if self._running or self._churn < self.threshold:
                return
            self._churn = 0
            self._running = True
        threading.Thread(target=self._trim, name="mmrag-trim", daemon=True).start()

    def _trim(self) -> None:
        try:
            time.sleep(0.05)  # let the last responses and the batcher drop their buffers
            if release_free_memory():
                self.trims += 1
        finally:
            with self._lock:
                self._running = False
