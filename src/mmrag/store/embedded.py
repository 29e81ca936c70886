"""An embedded (on-disk) Chroma database: its path's lock, its client, closing both, and clear storage errors.

Staleness
    Chroma keeps one in-memory ``System`` (with its vector index) per path and
    process while any client of the path is open, and reuses it for every new
    client. A client that is never closed keeps it alive: a store reopened
    after another process wrote to the path would count the new records but
    search the old index. :meth:`EmbeddedDatabase.close` closes the client (the
    last close drops the ``System``), so a reopened store reads the path afresh.

Storage errors
    A full disk or a read-only folder surfaces from Chroma as an
    ``InternalError`` that names neither (``Failed to apply logs to the
    metadata segment``). :func:`storage_errors` turns such failures into an
    :class:`OSError` (``ENOSPC`` or ``EROFS``) that names the path and what to
    do, and a Chroma server that went away (``httpx.ReadError: Connection
    reset by peer``) into a :class:`ConnectionError` that names the server.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmrag.store.lock import PathLock

__all__: list[str] = []  # internal to mmrag.store

LOW_SPACE_BYTES = 4 * 1024 * 1024
"""Below this much free space on a database's device, a failing Chroma call is put down to a full disk."""

_FULL = ("database or disk is full", "no space left on device")
_READ_ONLY = ("readonly database", "read-only file system", "permission denied")


def chroma_settings() -> Any:
    """Settings for an embedded Chroma client: no telemetry, no reset."""
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


class EmbeddedDatabase:
    """An open embedded Chroma path: the process's claim on it and one client.

    Args:
        path: The database directory (absolute).
        lock: This process's claim on it.
        client: A ``chromadb.PersistentClient`` of it.
    """

    def __init__(self, path: Path, lock: PathLock, client: Any) -> None:
        self.path = path
        self.client = client
        self._lock: PathLock | None = lock

    @classmethod
    def open(cls, path: Path) -> EmbeddedDatabase:
        """Claim ``path`` (made if missing) and open a Chroma client on it.

        Raises:
            StoreLockedError: Another process has it open.
            OSError: The folder is read-only or its disk is full (the message says so).
        """
        import chromadb

        with storage_errors(path, "open the store"):
            path.mkdir(parents=True, exist_ok=True)
            lock = PathLock.acquire(path)
        try:
            with storage_errors(path, "open the store"):
                try:
                    client = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
                except Exception:
                    _drop_unstarted_system(str(path))
                    raise
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, client)

    def close(self) -> None:
        """Close the client, then release the claim (a second call does nothing)."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            self.client.close()
        finally:
            lock.release()


def _drop_unstarted_system(identifier: str) -> None:
    """Forget a ``System`` Chroma registered for ``identifier`` but failed to start.

    Chroma 1.5 registers a path's ``System`` before starting it; when starting
    fails (a full disk), the broken one stays cached with no client holding it,
    and the next open of the path fails with an unrelated ``AttributeError``.
    Only a ``System`` no client holds is dropped.
    """
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # pragma: no cover - another Chroma layout
        return
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    counts = getattr(SharedSystemClient, "_identifier_to_refcount", None)
    if isinstance(systems, dict) and isinstance(counts, dict) and counts.get(identifier, 0) <= 0:
        systems.pop(identifier, None)


def storage_error(path: Path | None, exc: BaseException, doing: str) -> OSError | None:
    """A clear :class:`OSError` for a failure caused by a full disk or a read-only folder, else ``None``.

    Args:
        path: The embedded database directory (``None`` for a Chroma server:
            its disk is not ours to inspect).
        exc: What Chroma (or the OS) raised.
        doing: What was attempted, for the message (``"write to the store"``).
    """
    if path is None or not _storage_like(exc):
        return None
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    codes = {e.errno for e in chain if isinstance(e, OSError)}
    where = f"cannot {doing} at {str(path)!r}"
    full = errno.ENOSPC in codes or any(s in text for s in _FULL)
    read_only = bool(codes & {errno.EROFS, errno.EACCES, errno.EPERM}) or any(s in text for s in _READ_ONLY)
    free = _free_bytes(path)
    if full or (not read_only and free is not None and free < LOW_SPACE_BYTES):
        shown = "unknown" if free is None else f"{free // 1024} KiB"
        return OSError(
            errno.ENOSPC,
            f"{where}: no space left on its device ({shown} free). Records stored before are kept; free some "
            f"space and run again (an interrupted index_folder finishes then). Cause: {exc}",
        )
    if read_only:
        return OSError(
            errno.EROFS if errno.EROFS in codes or "read-only" in text else errno.EACCES,
            f"{where}: the folder (or its database file) is read-only, and Chroma writes to it even to search. "
            f"Make it writable, or copy it somewhere writable. Cause: {exc}",
        )
    return None


def unreachable_error(server: str | None, exc: BaseException, doing: str) -> ConnectionError | None:
    """A clear :class:`ConnectionError` for a Chroma server that cannot be reached, else ``None``.

    Args:
        server: ``host:port`` of the server (``None`` for an embedded database).
        exc: What the client raised.
        doing: What was attempted, for the message.
    """
    if server is None:
        return None
    try:
        import httpx

        transport: tuple[type[BaseException], ...] = (ConnectionError, httpx.TransportError)
    except ImportError:  # pragma: no cover - chromadb installs httpx
        transport = (ConnectionError,)
    if not any(isinstance(e, transport) for e in _chain(exc)):
        return None
    return ConnectionError(
        f"cannot {doing}: the Chroma server at {server} cannot be reached ({type(exc).__name__}: {exc}). "
        "Records it stored before are kept; run again once it is back (an interrupted index_folder finishes then)"
    )


def server_address(client: Any) -> str | None:
    """``host:port`` of a Chroma HTTP client, or ``None`` for an embedded one."""
    try:
        settings = client.get_settings()
    except Exception:  # not a Chroma client we know
        return None
    host = getattr(settings, "chroma_server_host", None)
    return f"{host}:{getattr(settings, 'chroma_server_http_port', None)}" if host else None


@contextmanager
def storage_errors(path: Path | None, doing: str, server: str | None = None) -> Iterator[None]:
    """Re-raise a full disk, a read-only folder or a lost server as a clear :class:`OSError`.

    Args:
        path: The embedded database directory, or ``None``.
        doing: What is attempted, for the message (``"write to the store"``).
        server: ``host:port`` of a Chroma server, or ``None``.
    """
    try:
        yield
    except Exception as exc:
        clear = storage_error(path, exc, doing) or unreachable_error(server, exc, doing)
        if clear is None:
            raise
        raise clear from exc


def _storage_like(exc: BaseException) -> bool:
    """An OS error, or Chroma's catch-all ``InternalError`` (never a validation error or one of mmrag's own)."""
    return isinstance(exc, OSError) or type(exc).__name__ == "InternalError"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path if path.exists() else path.parent).free
    except OSError:
        return None
