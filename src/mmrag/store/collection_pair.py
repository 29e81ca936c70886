"""The Chroma collections behind one logical store: ``<name>_images``, ``<name>_texts`` and ``<name>_pairs``.

``<name>_pairs`` holds the image-text pairs of ``add_pairs`` (one fused vector
each). It is made on the first ``add_pairs``, so a store without pairs keeps
the two-collection layout it always had; a store opened where it exists uses
it (and checks its signature like the other two).

A modality-restricted search touches one collection, which keeps it as fast as
an unfiltered query (a ``where`` filter on a shared collection was ~20x slower
at 50k vectors; see ``benchmarks/store.py``). Each collection records the
encoder's signature (model, dimension, preprocessing) and refuses another one.
Writes go in blocks of the client's max batch size (``add`` for new ids,
``upsert`` for stored ones). A search of several modalities queries their
collections at once on a thread pool the pair owns (made on first use, shut
down by :meth:`CollectionPair.close`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.errors import StoreMismatchError
from mmrag.logs import logger
from mmrag.store.embedded import EmbeddedDatabase, server_address, storage_errors
from mmrag.store.records import (
    INTERNAL_PREFIX,
    MODALITIES,
    STORED_MODALITIES,
    Hit,
    Pending,
    Record,
    StoredModality,
    to_hit,
    to_record,
)

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__: list[str] = []  # internal to mmrag.store

FORMAT_VERSION = 1
_log = logger("store")


def collection_name(name: str, modality: StoredModality) -> str:
    """The Chroma collection of one modality of store ``name``: ``<name>_images``, ``_texts`` or ``_pairs``."""
    return f"{name}_{modality}s"


def recorded_model_id(client: Any, name: str) -> str | None:
    """The model id the collections of store ``name`` were built with, or ``None``."""
    model_id = recorded_signature(client, name).get("model_id")
    return str(model_id) if model_id else None


def recorded_signature(client: Any, name: str) -> dict[str, Any]:
    """The encoder signature store ``name`` recorded (``model_id``, ``dim``, ... ``text_model``), or ``{}``."""
    for modality in STORED_MODALITIES:
        try:
            metadata = client.get_collection(collection_name(name, modality)).metadata or {}
        except Exception:  # chroma raises NotFoundError / ValueError across versions
            continue
        if metadata.get(f"{INTERNAL_PREFIX}model_id"):
            return {
                key.removeprefix(INTERNAL_PREFIX): value
                for key, value in metadata.items()
                if key.startswith(INTERNAL_PREFIX)
            }
    return {}


def recorded_model_at(path: Path, name: str) -> str | None:
    """The model id store ``name`` in the embedded database at ``path`` was built with, or ``None`` (no store)."""
    if not path.is_dir():
        return None
    database = EmbeddedDatabase.open(path)
    try:
        return recorded_model_id(database.client, name)
    finally:
        database.close()


class CollectionPair:
    """The image and text collections of one store (and its pair collection), opened (or made) for one encoder.

    The pair collection is opened when it exists and made by the first write
    to it (:meth:`ensure`); reads of it before then find nothing.

    Args:
        client: A Chroma client.
        name: The logical store name.
        encoder: The store's encoder; its signature is recorded and checked.
        path: The embedded database directory, for error messages.

    Raises:
        StoreMismatchError: A collection was built with another model,
            dimension or preprocessing.
    """

    def __init__(self, client: Any, name: str, encoder: Encoder, path: Path | None) -> None:
        self.name = name
        self._encoder = encoder
        self._path = path
        self._client = client
        self._server = server = None if path is not None else server_address(client)
        with storage_errors(path, "open the store", server):
            opened: dict[StoredModality, Any] = {m: self._open(client, m) for m in MODALITIES}
            if self._exists("pair"):
                opened["pair"] = self._open(client, "pair")
            max_batch = int(client.get_max_batch_size())
        self._collections: dict[StoredModality, Any] = {m: _Guarded(c, path, server) for m, c in opened.items()}
        self.write_batch = max(1, max_batch)
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        if _log.isEnabledFor(logging.INFO):
            counts = ", ".join(f"{self.count(modality)} {modality}s" for modality in MODALITIES)
            _log.info("opened store %r (%s) for %s", name, counts, encoder.model_id)

    def __getitem__(self, modality: StoredModality) -> Any:
        return self._collections[modality]

    def present(self, modalities: Sequence[StoredModality] = STORED_MODALITIES) -> tuple[StoredModality, ...]:
        """Those of ``modalities`` whose collection exists (image and text always; pair once made)."""
        return tuple(m for m in modalities if m in self._collections)

    def ensure(self, modality: StoredModality) -> Any:
        """The collection of ``modality``, made now if it does not exist yet (the pair collection)."""
        if modality not in self._collections:
            with storage_errors(self._path, "write to the store", self._server):
                collection = self._open(self._client, modality)
            self._collections[modality] = _Guarded(collection, self._path, self._server)
        return self._collections[modality]

    def _exists(self, modality: StoredModality) -> bool:
        try:
            self._client.get_collection(collection_name(self.name, modality))
        except Exception:  # chroma raises NotFoundError / ValueError across versions
            return False
        return True

    def _open(self, client: Any, modality: StoredModality) -> Any:
        encoder = self._encoder
        signature: dict[str, Any] = {f"{INTERNAL_PREFIX}{key}": value for key, value in encoder.signature.items()}
        signature[f"{INTERNAL_PREFIX}format"] = FORMAT_VERSION
        signature[f"{INTERNAL_PREFIX}modality"] = modality
        collection = client.get_or_create_collection(
            name=collection_name(self.name, modality),
            metadata=signature,
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        stored = collection.metadata or {}
        mismatched = [
            key.removeprefix(INTERNAL_PREFIX)
            for key in (f"{INTERNAL_PREFIX}model_id", f"{INTERNAL_PREFIX}dim", f"{INTERNAL_PREFIX}preprocessing")
            if stored.get(key) != signature[key]
        ]
        if mismatched:
            where = f"path {str(self._path)!r}, " if self._path else ""
            raise StoreMismatchError(
                f"store {self.name!r} ({where}collection {collection.name!r}) was built with model "
                f"{stored.get(INTERNAL_PREFIX + 'model_id')!r} (dim {stored.get(INTERNAL_PREFIX + 'dim')}), "
                f"but this encoder is {encoder.model_id!r} (dim {encoder.dim}); differs in: "
                f"{', '.join(mismatched)}. Vectors of different models cannot be mixed: open it with the original "
                "model, or use another collection name or path for this one"
            )
        return collection

    # ------------------------------------------------------------------ write
    def existing_metadata(self, pending: Sequence[Pending]) -> dict[str, dict[str, Any]]:
        """The stored metadata of every pending item already present, by id."""
        found: dict[str, dict[str, Any]] = {}
        for modality in self.present():
            ids = list(dict.fromkeys(item.id for item in pending if item.modality == modality))
            for start in range(0, len(ids), self.write_batch):
                got = self[modality].get(ids=ids[start : start + self.write_batch], include=["metadatas"])
                found.update(zip(got["ids"], (meta or {} for meta in got["metadatas"])))
        return found

    def update_metadata(self, item: Pending) -> None:
        """Rewrite one stored item's metadata (its vector stays)."""
        self[item.modality].update(ids=[item.id], metadatas=[item.chroma_metadata()])

    def upsert(self, modality: StoredModality, items: Sequence[Pending], vectors: np.ndarray) -> None:
        """Write items with their vectors (row ``i`` belongs to ``items[i]``), replacing stored ones."""
        self.write(modality, items, vectors, replace=True)

    def write(self, modality: StoredModality, items: Sequence[Pending], vectors: np.ndarray, *, replace: bool) -> None:
        """Write items with their vectors: ``add`` (ids not stored; Chroma keeps a stored one) or ``upsert``."""
        collection = self.ensure(modality)
        for start in range(0, len(items), self.write_batch):
            chunk = items[start : start + self.write_batch]
            (collection.upsert if replace else collection.add)(
                ids=[item.id for item in chunk],
                embeddings=vectors[start : start + len(chunk)],
                metadatas=[item.chroma_metadata() for item in chunk],
                documents=[item.document for item in chunk] if modality != "image" else None,
            )

    def delete(self, modality: StoredModality, ids: Sequence[str]) -> None:
        """Delete records of one modality by id (all present; in write batches)."""
        for start in range(0, len(ids), self.write_batch):
            self[modality].delete(ids=list(ids[start : start + self.write_batch]))

    def delete_present(self, ids: Sequence[str]) -> int:
        """Delete whichever of ``ids`` exist, in any modality; how many were deleted."""
        deleted = 0
        for modality in self.present():
            present = self[modality].get(ids=list(ids), include=[])["ids"]
            if present:
                self[modality].delete(ids=present)
                deleted += len(present)
        return deleted

    # ------------------------------------------------------------------- read
    def metadata_where(self, modality: StoredModality, where: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``(id, metadata)`` of every record of one modality matching a Chroma filter."""
        got = self[modality].get(where=dict(where), include=["metadatas"])
        return [(record_id, meta or {}) for record_id, meta in zip(got["ids"], got["metadatas"])]

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids, in their order (unknown ids are left out)."""
        found: dict[str, Record] = {}
        for modality in self.present():
            got = self[modality].get(ids=list(ids), include=["metadatas", "documents"])
            documents = got.get("documents") or [None] * len(got["ids"])
            for record_id, meta, document in zip(got["ids"], got["metadatas"], documents):
                found[record_id] = to_record(record_id, modality, meta or {}, document)
        return [found[i] for i in ids if i in found]

    def query(self, modality: StoredModality, vector: np.ndarray, k: int, where: Mapping[str, Any] | None) -> list[Hit]:
        """Up to ``k`` nearest records of one modality, best first, by cosine (none without its collection)."""
        if modality not in self._collections:
            return []
        result = self[modality].query(  # Chroma returns fewer than k (or none) when it holds fewer
            query_embeddings=[vector],
            n_results=k,
            where=dict(where) if where else None,
            include=["metadatas", "documents", "distances"],
        )
        documents = (result.get("documents") or [[None] * len(result["ids"][0])])[0]
        return [
            to_hit(record_id, modality, meta or {}, document, 1.0 - float(distance))
            for record_id, meta, document, distance in zip(
                result["ids"][0], result["metadatas"][0], documents, result["distances"][0]
            )
        ]

    def query_each(
        self, modalities: Sequence[StoredModality], vector: np.ndarray, k: int, where: Mapping[str, Any] | None
    ) -> dict[StoredModality, list[Hit]]:
        """:meth:`query` for each modality, the collections queried at once when there are several."""
        if len(modalities) < 2 or self._closed:
            return {m: self.query(m, vector, k, where) for m in modalities}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(STORED_MODALITIES), thread_name_prefix="mmrag-query")
        futures = {m: self._pool.submit(self.query, m, vector, k, where) for m in modalities}
        return {m: future.result() for m, future in futures.items()}

    def close(self) -> None:
        """Shut down the query pool (later searches query one collection after the other)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def count(self, modality: StoredModality | None = None) -> int:
        """Number of records of one modality, or of all."""
        modalities = STORED_MODALITIES if modality is None else (modality,)
        return sum(self[m].count() for m in self.present(modalities))


_WRITES = frozenset({"add", "upsert", "update", "delete", "modify"})


class _Guarded:
    """A Chroma collection whose calls report a full disk, a read-only folder or a lost server clearly."""

    def __init__(self, collection: Any, path: Path | None, server: str | None) -> None:
        self._collection = collection
        self._path = path
        self._server = server

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute
        doing = "write to the store" if name in _WRITES else "read the store"

        def guarded(*args: Any, **kwargs: Any) -> Any:
            with storage_errors(self._path, doing, self._server):
                return attribute(*args, **kwargs)

        return guarded
