"""The on-disk layer of an :class:`~mmrag.cache.EmbeddingCache`: one SQLite file, float32 blobs.

Safe for several threads (one connection behind a lock) and several
processes (WAL journal, a busy timeout, short transactions: a reader never
waits for a writer, writers take turns). Each row holds one vector:
``(identity, key, dim, vector)`` with the vector as little-endian float32
bytes; a row whose blob does not hold ``dim`` floats is ignored. The
``identities`` table records each identity's dimension and the signature it
was made from, for whoever inspects the file. The file lives on a local
disk (SQLite's WAL mode does not work over network file systems).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DiskVectors", "cache_file"]

DEFAULT_FILE_NAME = "embeddings.sqlite"
"""The file used when ``path`` names a directory."""

SCHEMA_VERSION = 1
_CHUNK = 500  # keys per SELECT: far below SQLite's bound-parameter limit

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vectors (identity TEXT NOT NULL, key TEXT NOT NULL, dim INTEGER NOT NULL, "
    "vector BLOB NOT NULL, PRIMARY KEY (identity, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS identities (identity TEXT PRIMARY KEY, dim INTEGER NOT NULL, signature TEXT NOT NULL)",
)


def cache_file(path: str | os.PathLike[str]) -> Path:
    """The SQLite file for a cache ``path``: the path itself, or a file inside it when it is a directory.

    Args:
        path: A file (created if missing, parent directories too) or an
            existing directory.

    Returns:
        The absolute file path.
    """
    target = Path(os.fspath(path)).expanduser()
    if target.is_dir():
        target = target / DEFAULT_FILE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.resolve()


class DiskVectors:
    """Vectors in one SQLite file, keyed by ``(identity, key)``.

    Args:
        path: The SQLite file (see :func:`cache_file`).
        timeout: Seconds to wait for another process's write to finish.
    """

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = path
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self._timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with conn:  # one short transaction, so two processes creating the file at once do not clash
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the embedding cache {str(self.path)!r} is closed")
        if os.getpid() != self._pid:  # a forked child must not share its parent's connection
            self._pid = os.getpid()
            self._conn = self._connect()
        return self._conn

    def get_many(self, identity: str, keys: Sequence[str], dim: int | None) -> dict[str, np.ndarray]:
        """The stored vectors among ``keys`` (read-only float32 arrays), by key.

        Args:
            identity: The vector space.
            keys: Content keys to look up.
            dim: The dimension a vector must have, or ``None`` for any.
        """
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, dim, vector FROM vectors WHERE identity = ? AND key IN ({marks})"  # "?"s only
                rows = conn.execute(query, (identity, *chunk)).fetchall()
                for key, stored_dim, blob in rows:
                    if (dim is None or stored_dim == dim) and len(blob) == 4 * stored_dim:
                        found[key] = np.frombuffer(blob, dtype="<f4").astype(np.float32, copy=False)
        return found

    def put_many(self, identity: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 row per key (replacing what was there), in one transaction."""
        dim = int(vectors.shape[1])
        rows = [(identity, key, dim, row.astype("<f4").tobytes()) for key, row in zip(keys, vectors)]
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR IGNORE INTO identities (identity, dim, signature) VALUES (?, ?, ?)",
                    (identity, dim, "{}"),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (identity, key, dim, vector) VALUES (?, ?, ?, ?)", rows
                )

    def register(self, identity: str, dim: int, signature: Mapping[str, object]) -> int:
        """Record an identity's dimension and signature; returns the dimension on record.

        An identity already recorded keeps its dimension (the one returned).
        """
        text = json.dumps(dict(signature), sort_keys=True, ensure_ascii=False, default=str)
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO identities (identity, dim, signature) VALUES (?, ?, ?) "
                    "ON CONFLICT (identity) DO UPDATE SET signature = excluded.signature WHERE signature = '{}'",
                    (identity, dim, text),
                )
                row = conn.execute("SELECT dim FROM identities WHERE identity = ?", (identity,)).fetchone()
        return int(row[0])

    def dim(self, identity: str) -> int | None:
        """The dimension on record for ``identity``, or ``None``."""
        with self._lock:
            row = self._connection().execute("SELECT dim FROM identities WHERE identity = ?", (identity,)).fetchone()
        return None if row is None else int(row[0])

    def count(self, identity: str | None = None) -> int:
        """Vectors stored (for one identity, or all)."""
        with self._lock:
            conn = self._connection()
            if identity is None:
                row = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
            else:
                row = conn.execute("SELECT COUNT(*) FROM vectors WHERE identity = ?", (identity,)).fetchone()
        return int(row[0])

    def clear(self, identity: str | None = None) -> None:
        """Delete every vector (of one identity, or all) and its identity row."""
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if identity is None:
                    conn.execute("DELETE FROM vectors")
                    conn.execute("DELETE FROM identities")
                else:
                    conn.execute("DELETE FROM vectors WHERE identity = ?", (identity,))
                    conn.execute("DELETE FROM identities WHERE identity = ?", (identity,))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None
