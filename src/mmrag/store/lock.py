"""One process per embedded Chroma path: embedded Chroma is not multi-process safe.

A store opened on a path takes an OS file lock on ``<path>/mmrag.lock``; a
second process fails at once with :class:`~mmrag.StoreLockedError`. Stores
opened on the same path within one process share the lock.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from mmrag.errors import StoreLockedError

__all__: list[str] = []  # internal to mmrag.store


class PathLock:
    """A held claim on one embedded path; :meth:`release` gives it back (once).

    Stores opened on the same path within one process share the OS lock: it is
    dropped when the last of them releases.
    """

    _held: ClassVar[dict[Path, tuple[Any, int]]] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, path: Path) -> PathLock:
        """Claim ``path`` for this process.

        Raises:
            StoreLockedError: Another process holds it (the message names it).
        """
        with cls._guard:
            held = cls._held.get(path)
            if held is not None:
                cls._held[path] = (held[0], held[1] + 1)
                return cls(path)
            handle = open(path / "mmrag.lock", "a+")  # noqa: SIM115 - kept open while the store lives
            if not _try_lock(handle):
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                raise StoreLockedError(
                    f"the store at {str(path)!r} is already open in {owner}; embedded Chroma cannot be shared "
                    "between processes. Close the other process, use another path, or run a Chroma server "
                    "(`chroma run --path DIR`) and pass client=chromadb.HttpClient(...)"
                )
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            cls._held[path] = (handle, 1)
            return cls(path)

    def release(self) -> None:
        """Give the claim back; the OS lock goes when the process's last claim does."""
        if self._released:
            return
        self._released = True
        with self._guard:
            handle, count = self._held.get(self.path, (None, 0))
            if handle is None:
                return
            if count > 1:
                self._held[self.path] = (handle, count - 1)
                return
            del self._held[self.path]
            handle.close()  # closing the descriptor drops the OS lock


def _try_lock(handle: io.TextIOBase) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
