""":class:`EmbeddingCache`: vectors by (identity, content key), in memory and optionally on disk."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from mmrag.cache.disk import DiskVectors, cache_file
from mmrag.cache.keys import HasSignature, encoder_identity, signature_dim
from mmrag.errors import InvalidInputError

__all__ = ["CacheStats", "EmbeddingCache"]

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class CacheStats:
    """What a cache did and holds.

    Attributes:
        hits: Lookups answered from the cache (memory or disk).
        misses: Lookups that found nothing.
        entries: Vectors held in memory.
        bytes: Memory those vectors take.
        path: The SQLite file, or ``None`` for a memory-only cache.
    """

    hits: int
    misses: int
    entries: int
    bytes: int
    path: str | None

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, ``0.0`` before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class EmbeddingCache:
    """Embeddings already computed, so the same text or image is never embedded twice by the same model.

    Vectors are keyed by the encoder's identity (:meth:`identity`: a hash
    of its :attr:`~mmrag.Encoder.signature`) and a content key
    (:func:`~mmrag.cache.text_key`, :func:`~mmrag.cache.image_key`), so two
    models never share an entry. Memory holds a bounded LRU; with ``path``
    every vector is also written to a SQLite file that later processes (and
    several processes at once) reuse. Safe to share between threads.

    Args:
        path: A SQLite file (or a directory, which gets ``embeddings.sqlite``)
            to keep vectors across runs; ``None`` keeps them in memory only.
        max_entries: Most vectors held in memory (``None``: no bound).
        max_bytes: Most bytes of vectors held in memory (``None``: no bound).
            The least recently used vectors go first; the disk is not bounded
            (see :meth:`clear`).
        timeout: Seconds to wait when another process is writing the file.

    Example:
        >>> cache = EmbeddingCache()                      # or EmbeddingCache(path="~/.cache/mmrag")
        >>> vectors = embed_with_cache(cache, enc, ["a red circle"], "text")
        >>> vectors = embed_with_cache(cache, enc, ["a red circle"], "text")  # no forward pass
        >>> cache.hits
        1
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_entries: int | None = DEFAULT_MAX_ENTRIES,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        timeout: float = 30.0,
    ) -> None:
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
                raise InvalidInputError(f"{name} must be a non-negative integer or None, got {bound!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._memory: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._memory_bytes = 0
        self._dims: dict[str, int] = {}
        self._hits = 0
        self._misses = 0
        self._disk = DiskVectors(cache_file(path), timeout=timeout) if path is not None else None

    # ------------------------------------------------------------ identities
    def identity(self, encoder: HasSignature | Mapping[str, str | int]) -> str:
        """The identity of an encoder's vector space, registered with its dimension.

        Args:
            encoder: An encoder, or its ``signature``.

        Returns:
            :func:`~mmrag.cache.encoder_identity` of it: equal for equal
            signatures, in any process.
        """
        signature = encoder if isinstance(encoder, Mapping) else encoder.signature
        identity = encoder_identity(signature)
        dim = signature_dim(signature)
        with self._lock:
            if identity not in self._dims:
                self._dims[identity] = self._disk.register(identity, dim, signature) if self._disk else dim
        return identity

    def _dim(self, identity: str) -> int | None:
        with self._lock:
            dim = self._dims.get(identity)
            if dim is None and self._disk is not None:
                dim = self._disk.dim(identity)
                if dim is not None:
                    self._dims[identity] = dim
            return dim

    # ------------------------------------------------------------- look-ups
    def get_many(self, identity: str, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each key, or ``None`` where there is none.

        Args:
            identity: From :meth:`identity`.
            keys: Content keys.

        Returns:
            One read-only float32 vector or ``None`` per key, in order.
            Counts a hit or a miss per key.
        """
        _check_identity(identity)
        listed = _check_keys(keys)
        with self._lock:
            found: list[np.ndarray | None] = []
            for key in listed:
                vector = self._memory.get((identity, key))
                if vector is not None:
                    self._memory.move_to_end((identity, key))
                found.append(vector)
        missing = [key for key, vector in zip(listed, found) if vector is None]
        if missing and self._disk is not None:
            from_disk = self._disk.get_many(identity, missing, self._dim(identity))
            with self._lock:
                for position, key in enumerate(listed):
                    if found[position] is None and key in from_disk:
                        found[position] = self._remember(identity, key, from_disk[key])
        with self._lock:
            hits = sum(vector is not None for vector in found)
            self._hits += hits
            self._misses += len(found) - hits
        return found

    def get(self, identity: str, key: str) -> np.ndarray | None:
        """The cached vector of one key, or ``None``."""
        return self.get_many(identity, [key])[0]

    def put_many(self, identity: str, keys: Sequence[str], vectors: Any) -> None:
        """Store one vector per key.

        Args:
            identity: From :meth:`identity`.
            keys: Content keys, one per vector.
            vectors: An ``(n, dim)`` array (or a list of equal-length
                vectors) of finite numbers; stored as float32.

        Raises:
            InvalidInputError: Not one vector per key, a vector of the wrong
                length for this identity's dimension, or a NaN/infinite value
                (the message names the row). Nothing is stored then.
        """
        _check_identity(identity)
        listed = _check_keys(keys)
        array = _check_vectors(vectors, len(listed))
        if not listed:
            return
        dim = self._dim(identity)
        if dim is not None and array.shape[1] != dim:
            raise InvalidInputError(
                f"vectors have length {array.shape[1]}, but cache identity {identity} holds vectors of length {dim}"
            )
        if self._disk is not None:
            self._disk.put_many(identity, listed, array)
        with self._lock:
            self._dims.setdefault(identity, int(array.shape[1]))
            for key, row in zip(listed, array):
                self._remember(identity, key, row.copy())

    def put(self, identity: str, key: str, vector: Any) -> None:
        """Store one vector (see :meth:`put_many`)."""
        self.put_many(identity, [key], [vector])

    # --------------------------------------------------------------- upkeep
    def _remember(self, identity: str, key: str, vector: np.ndarray) -> np.ndarray:
        """Hold ``vector`` in memory (read-only), evicting the least recently used beyond the bounds."""
        vector.setflags(write=False)
        slot = (identity, key)
        previous = self._memory.pop(slot, None)
        if previous is not None:
            self._memory_bytes -= previous.nbytes
        self._memory[slot] = vector
        self._memory_bytes += vector.nbytes
        while self._memory and (
            (self.max_entries is not None and len(self._memory) > self.max_entries)
            or (self.max_bytes is not None and self._memory_bytes > self.max_bytes)
        ):
            _slot, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= dropped.nbytes
        return vector

    def clear(self, identity: str | None = None) -> None:
        """Forget cached vectors (of one identity, or all), in memory and on disk."""
        with self._lock:
            for slot in [s for s in self._memory if identity is None or s[0] == identity]:
                self._memory_bytes -= self._memory.pop(slot).nbytes
            if identity is None:
                self._dims.clear()
            else:
                self._dims.pop(identity, None)
        if self._disk is not None:
            self._disk.clear(identity)

    @property
    def hits(self) -> int:
        """Lookups answered from the cache so far."""
        return self._hits

    @property
    def misses(self) -> int:
        """Lookups that found nothing so far."""
        return self._misses

    @property
    def path(self) -> str | None:
        """The SQLite file, or ``None`` for a memory-only cache."""
        return None if self._disk is None else str(self._disk.path)

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and memory use, as one :class:`CacheStats`."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._memory), self._memory_bytes, self.path)

    def disk_count(self, identity: str | None = None) -> int:
        """Vectors in the SQLite file (of one identity, or all); ``0`` for a memory-only cache."""
        return 0 if self._disk is None else self._disk.count(identity)

    def close(self) -> None:
        """Close the SQLite file (memory entries stay usable). Idempotent."""
        if self._disk is not None:
            self._disk.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"path={self.path!r}" if self._disk is not None else "memory"
        return f"EmbeddingCache({where}, entries={len(self._memory)}, hits={self._hits}, misses={self._misses})"


def _check_identity(identity: object) -> None:
    if not isinstance(identity, str) or not identity:
        raise InvalidInputError(f"identity must be a non-empty string from EmbeddingCache.identity, got {identity!r}")


def _check_keys(keys: Sequence[str]) -> list[str]:
    if isinstance(keys, (str, bytes)):
        raise InvalidInputError("keys must be a list of content keys, not a single string; wrap it in a list")
    listed = list(keys)
    for index, key in enumerate(listed):
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"key {index} must be a non-empty string, got {key!r}")
    return listed


def _check_vectors(vectors: Any, n: int) -> np.ndarray:
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"vectors must be numbers of one length per row: {exc}") from exc
    if n == 0 and array.size == 0:
        return array
    if array.ndim != 2 or array.shape[0] != n:
        raise InvalidInputError(f"expected {n} vectors as an (n, dim) array, got shape {array.shape}")
    if array.shape[1] == 0:
        raise InvalidInputError("vectors must not be empty")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise InvalidInputError(f"vector {int(np.argmin(finite))} has a NaN or infinite value; nothing was stored")
    return array
