"""A Chroma-backed multimodal store: text and image vectors side by side.

Layout
    One logical store is two Chroma collections, ``<name>_images`` and
    ``<name>_texts``, in cosine space. A modality-restricted search touches one
    collection, which keeps it as fast as an unfiltered query (a ``where``
    filter on a shared collection was ~20x slower at 50k vectors; see
    ``benchmarks/store.py``). A search over both modalities queries both and
    merges the two ranked lists.

Records
    Every record carries its ``modality``, its ``source`` (an image's path or
    URL, never pixels or base64; a text's own text, or its file's path) and
    the caller's metadata. Record ids are derived from the model, the
    modality, the content and the source, so adding the same thing again
    changes nothing.

Scores
    ``Hit.score`` is the cosine similarity between query and item vectors
    (higher is better, at most 1). Text-text and text-image similarities live
    on different scales (for CLIP roughly 0.8 against 0.3), so when both
    modalities are returned they are merged by reciprocal rank fusion: each
    modality's list is ranked on its own and items are ordered by
    ``1 / (60 + rank)``, ties broken by score. Neither modality crowds out the
    other merely by scale. Pass ``fusion="score"`` to order by raw cosine.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from mmrag.errors import ImageInputError, StoreLockedError, StoreMismatchError
from mmrag.inputs import (
    IMAGE_EXTENSIONS,
    ImageInput,
    Modality,
    QueryType,
    image_source,
    is_image_query,
    resolve_image,
)

if TYPE_CHECKING:
    from PIL import Image

    from mmrag.encoders.base import Encoder

__all__ = ["IMAGE_EXTENSIONS", "TEXT_EXTENSIONS", "Hit", "IndexReport", "Modality", "MultimodalStore", "Record"]

MODALITIES: tuple[Modality, ...] = ("image", "text")
TEXT_EXTENSIONS = frozenset({".txt", ".md"})
"""File endings ``index_folder`` reads as texts (UTF-8)."""

_RESERVED_KEYS = frozenset({"modality", "source"})
_INTERNAL_PREFIX = "mmrag_"
_FORMAT_VERSION = 1
_RRF_K = 60
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,54}[a-zA-Z0-9]$")


@dataclass(frozen=True)
class Record:
    """One stored item.

    Attributes:
        id: The record id.
        modality: ``"image"`` or ``"text"``.
        source: The image's path or URL, or the text file's path; for texts
            added directly, the text itself. ``None`` for images given as
            pixels or bytes.
        text: The text of a text record; ``None`` for images.
        metadata: The caller's metadata (without mmrag's own keys).
    """

    id: str
    modality: Modality
    source: str | None
    text: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Hit(Record):
    """A search result: a :class:`Record` plus its similarity to the query.

    Attributes:
        score: Cosine similarity between query and item (higher is better).
    """

    score: float = 0.0


@dataclass
class IndexReport:
    """What an add or index call did.

    Attributes:
        added: New records written.
        updated: Existing records rewritten (changed file, new metadata, or an
            explicit id given again).
        skipped: Items already stored unchanged (no embedding was computed).
        removed: Records deleted because their file is gone.
        failed: ``(source, reason)`` for every item that could not be stored.
        ids: The record id of every stored or skipped item, in input order.
        embedded: Items embedded by this call (``0`` on an unchanged re-run).
    """

    added: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    embedded: int = 0

    def summary(self) -> str:
        """One line: ``added 3, updated 1, skipped 10, removed 0, failed 1``."""
        return (
            f"added {self.added}, updated {self.updated}, skipped {self.skipped}, "
            f"removed {self.removed}, failed {len(self.failed)}"
        )

    def __str__(self) -> str:
        return self.summary()


class MultimodalStore:
    """Text and image vectors in one Chroma-backed store, searchable in all four directions.

    Args:
        encoder: The encoder that embeds items and queries. A store remembers
            the model that built it and refuses another one.
        path: Directory of an embedded (on-disk) Chroma database. Used when no
            ``client`` is given; defaults to ``"./mmrag_db"``. One process at a
            time: a second process opening the same path fails at once with
            :class:`~mmrag.StoreLockedError`.
        collection: Name of the logical store (3+ characters, letters, digits,
            ``.``, ``_``, ``-``); two Chroma collections are made from it.
        client: A Chroma client to use instead of an embedded one, e.g.
            ``chromadb.HttpClient(host="127.0.0.1", port=8000)``.

    Raises:
        StoreMismatchError: The collections were built with another model,
            dimension or preprocessing.
        StoreLockedError: Another process has the embedded path open.
        ValueError: The collection name is not valid.

    Example:
        >>> import mmrag
        >>> store = mmrag.MultimodalStore(mmrag.load_encoder("demo"), path="./mmrag_db")
        >>> store.index_folder("photos/")
        >>> [hit.source for hit in store.search("a red circle", k=3, modality="image")]
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        path: str | os.PathLike[str] | None = None,
        collection: str = "mmrag",
        client: Any | None = None,
    ) -> None:
        self._lock: _PathLock | None = None
        self.path: Path | None = None
        if not _COLLECTION_NAME.match(collection) or ".." in collection:
            raise ValueError(
                f"invalid collection name {collection!r}: use 3-56 letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        self.encoder = encoder
        self.name = collection
        if client is None:
            import chromadb

            db_path = Path(path if path is not None else "./mmrag_db").expanduser().resolve()
            db_path.mkdir(parents=True, exist_ok=True)
            self._lock = _PathLock.acquire(db_path)
            try:
                client = chromadb.PersistentClient(path=str(db_path), settings=_chroma_settings())
            except Exception:
                self._lock.release()
                raise
            self.path = db_path
        self.client = client
        try:
            self._collections = {modality: self._open_collection(modality) for modality in MODALITIES}
        except Exception:
            self.close()
            raise
        self._model_key = f"{encoder.model_id}|{encoder.dim}"
        self._write_batch = max(1, min(int(client.get_max_batch_size()), 1024))

    # ------------------------------------------------------------------ setup
    def _open_collection(self, modality: Modality) -> Any:
        signature = {f"{_INTERNAL_PREFIX}{key}": value for key, value in self.encoder.signature.items()}
        signature[f"{_INTERNAL_PREFIX}format"] = _FORMAT_VERSION
        signature[f"{_INTERNAL_PREFIX}modality"] = modality
        collection = self.client.get_or_create_collection(
            name=f"{self.name}_{modality}s",
            metadata=signature,
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        stored = collection.metadata or {}
        mismatched = [
            key.removeprefix(_INTERNAL_PREFIX)
            for key in (f"{_INTERNAL_PREFIX}model_id", f"{_INTERNAL_PREFIX}dim", f"{_INTERNAL_PREFIX}preprocessing")
            if stored.get(key) != signature[key]
        ]
        if mismatched:
            where = f"path {str(self.path)!r}, " if getattr(self, "path", None) else ""
            raise StoreMismatchError(
                f"store {self.name!r} ({where}collection {collection.name!r}) was built with model "
                f"{stored.get(_INTERNAL_PREFIX + 'model_id')!r} (dim {stored.get(_INTERNAL_PREFIX + 'dim')}), "
                f"but this encoder is {self.encoder.model_id!r} (dim {self.encoder.dim}); differs in: "
                f"{', '.join(mismatched)}. Vectors of different models cannot be mixed: open it with the original "
                "model, or use another collection name or path for this one"
            )
        return collection

    @staticmethod
    def recorded_model(path: str | os.PathLike[str] = "./mmrag_db", *, collection: str = "mmrag") -> str | None:
        """The model id an embedded store was built with, without loading any model.

        Args:
            path: The embedded database directory.
            collection: The logical store name.

        Returns:
            The recorded model id (pass it to :func:`mmrag.load_encoder`), or
            ``None`` when there is no such store.

        Raises:
            StoreLockedError: Another process has the path open.
        """
        db_path = Path(path).expanduser().resolve()
        if not db_path.is_dir():
            return None
        import chromadb

        lock = _PathLock.acquire(db_path)
        try:
            client = chromadb.PersistentClient(path=str(db_path), settings=_chroma_settings())
            for modality in MODALITIES:
                try:
                    metadata = client.get_collection(f"{collection}_{modality}s").metadata or {}
                except Exception:  # chroma raises NotFoundError / ValueError across versions
                    continue
                model_id = metadata.get(f"{_INTERNAL_PREFIX}model_id")
                if model_id:
                    return str(model_id)
            return None
        finally:
            lock.release()

    def close(self) -> None:
        """Release the embedded path so another process may open it."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> MultimodalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path else f"client={type(getattr(self, 'client', None)).__name__}"
        model = getattr(getattr(self, "encoder", None), "model_id", None)
        return f"MultimodalStore({where}, collection={getattr(self, 'name', None)!r}, model={model!r})"

    # ------------------------------------------------------------------ write
    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> IndexReport:
        """Embed and store texts (upsert).

        Args:
            texts: The texts. Each is its own record; embeddings see the first
                ``encoder.max_text_length`` tokens, the full text is stored.
            metadatas: One metadata mapping (or ``None``) per text: str, int,
                float or bool values; the keys ``modality``, ``source`` and
                ``mmrag_*`` are reserved.
            ids: Record ids to use instead of content-derived ones; an id that
                exists is overwritten.

        Returns:
            An :class:`IndexReport`; ``report.ids`` holds the record ids.

        Raises:
            TypeError: A text is not a string (the message names its index).
            ValueError: Lengths differ, or a metadata value or key is invalid.
        """
        items = list(texts) if not isinstance(texts, str) else None
        if items is None:
            raise TypeError("texts must be a list of strings, not a single string; wrap it in a list")
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"text {index}: expected str, got {type(text).__name__}")
        user_meta = _check_metadatas(metadatas, len(items))
        record_ids = _check_ids(ids, len(items)) or [self._record_id("text", _text_digest(t), None) for t in items]
        pending = [
            _Pending(record_id, "text", text, {"source": text}, meta, lambda text=text: text)
            for record_id, text, meta in zip(record_ids, items, user_meta)
        ]
        return self._write_pending(pending, explicit_ids=ids is not None)

    def add_images(
        self,
        images: Sequence[ImageInput],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> IndexReport:
        """Embed and store images (upsert).

        Every image is resolved and checked before anything is written: one bad
        item raises :class:`~mmrag.ImageInputError` naming it, and the store is
        left as it was.

        Args:
            images: Anything :func:`mmrag.resolve_image` accepts. Paths and URLs
                are recorded as the source; pixels and base64 never are.
            metadatas: One metadata mapping (or ``None``) per image.
            ids: Record ids to use instead of content-derived ones.

        Returns:
            An :class:`IndexReport`; ``report.ids`` holds the record ids.

        Raises:
            mmrag.ImageInputError: An image could not be resolved or decoded.
            ValueError: Lengths differ, or a metadata value or key is invalid.
        """
        items = list(images)
        user_meta = _check_metadatas(metadatas, len(items))
        explicit = _check_ids(ids, len(items))
        limits = self.encoder.image_limits
        decoded = [resolve_image(item, limits=limits, index=index) for index, item in enumerate(items)]
        sources = [image_source(item) for item in items]
        record_ids = explicit or [
            self._record_id("image", _pixel_digest(image), source) for image, source in zip(decoded, sources)
        ]
        pending = [
            _Pending(record_id, "image", None, {"source": source or ""}, meta, lambda image=image: image)
            for record_id, image, source, meta in zip(record_ids, decoded, sources, user_meta)
        ]
        return self._write_pending(pending, explicit_ids=ids is not None)

    def _write_pending(self, pending: list[_Pending], *, explicit_ids: bool) -> IndexReport:
        report = IndexReport(ids=[item.id for item in pending])
        existing = self._existing_metadata(pending)
        todo: list[_Pending] = []
        for item in pending:
            old = existing.get(item.id)
            if old is None:
                report.added += 1
                todo.append(item)
            elif explicit_ids:
                report.updated += 1
                todo.append(item)
            elif _user_metadata(old) != item.user_metadata:
                report.updated += 1
                self._collections[item.modality].update(ids=[item.id], metadatas=[item.chroma_metadata()])
            else:
                report.skipped += 1
        for modality in MODALITIES:
            group = [item for item in todo if item.modality == modality]
            for start in range(0, len(group), self.encoder.batch_size):
                chunk = group[start : start + self.encoder.batch_size]
                vectors = self._embed([item.load() for item in chunk], modality)
                report.embedded += len(chunk)
                self._upsert(modality, chunk, vectors)
        return report

    def _existing_metadata(self, pending: Sequence[_Pending]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for modality in MODALITIES:
            ids = list(dict.fromkeys(item.id for item in pending if item.modality == modality))
            for start in range(0, len(ids), self._write_batch):
                got = self._collections[modality].get(ids=ids[start : start + self._write_batch], include=["metadatas"])
                found.update(zip(got["ids"], (meta or {} for meta in got["metadatas"])))
        return found

    def _embed(self, payloads: list[Any], modality: Modality) -> np.ndarray:
        if modality == "image":
            return self.encoder.embed_images(payloads)
        return self.encoder.embed_texts(payloads)

    def _upsert(self, modality: Modality, items: Sequence[_Pending], vectors: np.ndarray) -> None:
        collection = self._collections[modality]
        for start in range(0, len(items), self._write_batch):
            chunk = items[start : start + self._write_batch]
            collection.upsert(
                ids=[item.id for item in chunk],
                embeddings=vectors[start : start + len(chunk)],
                metadatas=[item.chroma_metadata() for item in chunk],
                documents=[item.document for item in chunk] if modality == "text" else None,
            )

    def _record_id(self, modality: Modality, digest: str, source: str | None) -> str:
        key = f"{self._model_key}|{modality}|{digest}|{source or ''}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    # ----------------------------------------------------------------- folder
    def index_folder(
        self,
        path: str | os.PathLike[str],
        *,
        recursive: bool = True,
        show_progress: bool | None = None,
    ) -> IndexReport:
        """Index a folder's images and ``.txt``/``.md`` texts, keeping the store in sync with it.

        A re-run embeds only what changed: unchanged files (same size and
        modification time) are skipped, changed files are re-embedded and
        replaced, and records of deleted files are removed. Reading, embedding
        and writing overlap. A file that cannot be read is reported in
        ``failed`` while every good file is indexed. An interrupted run, run
        again, finishes with no duplicates.

        Args:
            path: The folder.
            recursive: Walk sub-folders too (hidden ones are skipped).
            show_progress: Show a progress bar; default: when stderr is a terminal.

        Returns:
            An :class:`IndexReport` with added, updated, skipped, removed and failed.

        Raises:
            NotADirectoryError: ``path`` is not a directory.
        """
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"not a folder: {str(path)!r}")
        files = sorted(_walk(root, recursive), key=lambda entry: (entry[1], entry[0]))  # one modality per chunk
        report = IndexReport()
        known = self._folder_records(root)
        on_disk = {str(file) for file, _ in files}
        stale = [record for source, record in known.items() if source not in on_disk]

        todo: list[tuple[Path, Modality, os.stat_result, _FolderRecord | None]] = []
        for file, modality in files:
            try:
                stat = file.stat()
            except OSError as exc:
                report.failed.append((str(file), f"cannot read: {exc.strerror or exc}"))
                continue
            record = known.get(str(file))
            if record is not None and record.unchanged(stat) and record.modality == modality:
                report.skipped += 1
                report.ids.append(record.id)
                continue
            if record is not None and record.modality != modality:
                stale.append(record)
                record = None
            todo.append((file, modality, stat, record))

        progress = _progress(len(todo), show_progress, desc=f"indexing {root.name or root}")
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrag-read") as reader,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrag-write") as writer,
        ):
            chunks = [todo[i : i + self.encoder.batch_size] for i in range(0, len(todo), self.encoder.batch_size)]
            pending_read: Future[list[_Loaded]] | None = (
                reader.submit(self._read_chunk, chunks[0], root) if chunks else None
            )
            pending_write: Future[None] | None = None
            for position in range(len(chunks)):
                assert pending_read is not None
                loaded = pending_read.result()
                pending_read = (
                    reader.submit(self._read_chunk, chunks[position + 1], root) if position + 1 < len(chunks) else None
                )
                good = [item for item in loaded if item.error is None]
                for item in loaded:
                    if item.error is not None:
                        report.failed.append((str(item.file), item.error))
                vectors = {
                    modality: self._embed([item.payload for item in good if item.modality == modality], modality)
                    for modality in MODALITIES
                    if any(item.modality == modality for item in good)
                }
                report.embedded += len(good)
                if pending_write is not None:
                    pending_write.result()
                pending_write = writer.submit(self._write_folder_chunk, good, vectors)
                for item in good:
                    report.ids.append(item.pending.id)
                    if item.previous is None:
                        report.added += 1
                    else:
                        report.updated += 1
                progress.update(len(chunks[position]))
            if pending_write is not None:
                pending_write.result()
        progress.close()

        for modality in MODALITIES:
            gone = [record.id for record in stale if record.modality == modality]
            for start in range(0, len(gone), self._write_batch):
                self._collections[modality].delete(ids=gone[start : start + self._write_batch])
        report.removed = len(stale)
        return report

    def _read_chunk(
        self, chunk: list[tuple[Path, Modality, os.stat_result, _FolderRecord | None]], root: Path
    ) -> list[_Loaded]:
        loaded = []
        for file, modality, stat, previous in chunk:
            try:
                payload: Any
                if modality == "image":
                    payload = resolve_image(file, limits=self.encoder.image_limits)
                    digest = _pixel_digest(payload)
                    document = None
                else:
                    payload = _read_text(file)
                    digest = _text_digest(payload)
                    document = payload
            except (ImageInputError, OSError, UnicodeDecodeError) as exc:
                reason = exc.reason if isinstance(exc, ImageInputError) else _reason(exc)
                loaded.append(_Loaded(file, modality, None, previous, None, reason))
                continue
            internal = {
                "source": str(file),
                f"{_INTERNAL_PREFIX}folder": str(root),
                f"{_INTERNAL_PREFIX}mtime_ns": int(stat.st_mtime_ns),
                f"{_INTERNAL_PREFIX}size": int(stat.st_size),
            }
            pending = _Pending(
                self._record_id(modality, digest, str(file)), modality, document, internal, {}, lambda: None
            )
            loaded.append(_Loaded(file, modality, payload, previous, pending, None))
        return loaded

    def _write_folder_chunk(self, good: list[_Loaded], vectors: dict[Modality, np.ndarray]) -> None:
        for modality, matrix in vectors.items():
            items = [item for item in good if item.modality == modality]
            self._upsert(modality, [item.pending for item in items], matrix)
            replaced = [item.previous.id for item in items if item.previous and item.previous.id != item.pending.id]
            if replaced:
                self._collections[modality].delete(ids=replaced)

    def _folder_records(self, root: Path) -> dict[str, _FolderRecord]:
        records: dict[str, _FolderRecord] = {}
        for modality in MODALITIES:
            got = self._collections[modality].get(where={f"{_INTERNAL_PREFIX}folder": str(root)}, include=["metadatas"])
            for record_id, meta in zip(got["ids"], got["metadatas"]):
                meta = meta or {}
                source = str(meta.get("source", ""))
                records[source] = _FolderRecord(
                    record_id,
                    modality,
                    int(meta.get(f"{_INTERNAL_PREFIX}mtime_ns", -1)),
                    int(meta.get(f"{_INTERNAL_PREFIX}size", -1)),
                )
        return records

    # ------------------------------------------------------------------- read
    def search(
        self,
        query: str | ImageInput,
        *,
        k: int = 10,
        modality: Modality | None = None,
        where: Mapping[str, Any] | None = None,
        query_type: QueryType = "auto",
        fusion: Literal["rrf", "score"] = "rrf",
    ) -> list[Hit]:
        """Search texts and images with a text or an image query.

        Args:
            query: A text, or any image input (path, URL, data URI, bytes, PIL,
                numpy). With ``query_type="auto"`` a string is an image when it
                is an http(s) URL, a ``data:`` URI, or an existing file with an
                image ending; any other string is a text. Non-strings are images.
            k: Most hits to return.
            modality: ``"image"`` or ``"text"`` to search one modality; ``None``
                for both, merged by reciprocal rank fusion (see ``fusion``).
            where: Chroma-style metadata filter on the caller's metadata, e.g.
                ``{"album": "2024"}`` or ``{"year": {"$gte": 2020}}``.
            query_type: Force ``"text"`` or ``"image"`` instead of the rule above.
            fusion: How two modalities are merged: ``"rrf"`` (rank fusion, the
                default) or ``"score"`` (raw cosine, where the higher-scale
                modality tends to win).

        Returns:
            Up to ``k`` hits, best first; ``hit.score`` is the cosine similarity.

        Raises:
            ValueError: ``k`` < 1 or an unknown ``modality``.
            mmrag.ImageInputError: An image query could not be resolved.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return self.search_by_vector(
            self.embed_query(query, query_type=query_type), k=k, modality=modality, where=where, fusion=fusion
        )

    def search_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        k: int = 10,
        modality: Modality | None = None,
        where: Mapping[str, Any] | None = None,
        fusion: Literal["rrf", "score"] = "rrf",
    ) -> list[Hit]:
        """Search with a query vector you already have (e.g. from :meth:`embed_query`).

        Args:
            vector: A vector of length ``encoder.dim`` from this store's encoder.
            k: Most hits to return.
            modality: ``"image"``, ``"text"`` or ``None`` for both (merged).
            where: Chroma-style metadata filter.
            fusion: ``"rrf"`` or ``"score"``; see :meth:`search`.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            ValueError: Bad ``k``, ``modality`` or vector length.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if modality not in (None, *MODALITIES):
            raise ValueError(f"modality must be 'image', 'text' or None, got {modality!r}")
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.encoder.dim:
            raise ValueError(f"query vector has {query.shape[0]} dimensions; this store holds {self.encoder.dim}")
        modalities = MODALITIES if modality is None else (modality,)
        ranked = {m: self._query(m, query, k, where) for m in modalities}
        if modality is not None:
            return ranked[modality]
        return merge_ranked(list(ranked.values()), k, fusion=fusion)

    def embed_query(self, query: str | ImageInput, *, query_type: QueryType = "auto") -> np.ndarray:
        """The query vector :meth:`search` uses.

        Args:
            query: A text or an image input.
            query_type: ``"auto"``, ``"text"`` or ``"image"`` (see :meth:`search`).

        Returns:
            A float32 vector of length ``encoder.dim``.
        """
        if is_image_query(query, query_type):
            return self.encoder.embed_images([query])[0]
        if not isinstance(query, str):
            raise TypeError(f"a text query must be a string, got {type(query).__name__}")
        return self.encoder.embed_texts([query])[0]

    def _query(self, modality: Modality, vector: np.ndarray, k: int, where: Mapping[str, Any] | None) -> list[Hit]:
        collection = self._collections[modality]
        result = collection.query(  # Chroma returns fewer than k (or none) when it holds fewer
            query_embeddings=[vector],
            n_results=k,
            where=dict(where) if where else None,
            include=["metadatas", "documents", "distances"],
        )
        documents = (result.get("documents") or [[None] * len(result["ids"][0])])[0]
        return [
            _hit(record_id, modality, meta or {}, document, 1.0 - float(distance))
            for record_id, meta, document, distance in zip(
                result["ids"][0], result["metadatas"][0], documents, result["distances"][0]
            )
        ]

    def count(self, modality: Modality | None = None) -> int:
        """Number of records, of one modality or of both.

        Args:
            modality: ``"image"``, ``"text"`` or ``None`` for all.

        Returns:
            The record count.
        """
        modalities = MODALITIES if modality is None else (modality,)
        return sum(self._collections[m].count() for m in modalities)

    def get(self, ids: Sequence[str]) -> list[Record]:
        """Fetch records by id.

        Args:
            ids: Record ids.

        Returns:
            The records found, in the order of ``ids`` (unknown ids are left out).
        """
        found: dict[str, Record] = {}
        for modality in MODALITIES:
            got = self._collections[modality].get(ids=list(ids), include=["metadatas", "documents"])
            documents = got.get("documents") or [None] * len(got["ids"])
            for record_id, meta, document in zip(got["ids"], got["metadatas"], documents):
                found[record_id] = _record(record_id, modality, meta or {}, document)
        return [found[i] for i in ids if i in found]

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records by id.

        Args:
            ids: Record ids; unknown ids are ignored.

        Returns:
            How many records were deleted.
        """
        deleted = 0
        for modality in MODALITIES:
            present = self._collections[modality].get(ids=list(ids), include=[])["ids"]
            if present:
                self._collections[modality].delete(ids=present)
                deleted += len(present)
        return deleted


# --------------------------------------------------------------------- helpers
def merge_ranked(lists: Sequence[Sequence[Hit]], k: int, *, fusion: Literal["rrf", "score"] = "rrf") -> list[Hit]:
    """Merge per-modality result lists (each best first) into one list of ``k``.

    Args:
        lists: Ranked hit lists, one per modality.
        k: Most hits to return.
        fusion: ``"rrf"`` orders by ``sum(1 / (60 + rank))`` (ties by score);
            ``"score"`` orders by raw cosine.

    Returns:
        The merged hits, best first.
    """
    if fusion == "score":
        merged = [hit for hits in lists for hit in hits]
        return sorted(merged, key=lambda hit: -hit.score)[:k]
    if fusion != "rrf":
        raise ValueError(f"fusion must be 'rrf' or 'score', got {fusion!r}")
    fused: dict[str, tuple[float, Hit]] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            previous = fused.get(hit.id, (0.0, hit))[0]
            fused[hit.id] = (previous + 1.0 / (_RRF_K + rank), hit)
    ordered = sorted(fused.values(), key=lambda pair: (-pair[0], -pair[1].score))
    return [hit for _, hit in ordered[:k]]


@dataclass
class _Pending:
    id: str
    modality: Modality
    document: str | None
    internal: dict[str, Any]
    user_metadata: dict[str, Any]
    load: Any  # () -> the text or decoded image to embed

    def chroma_metadata(self) -> dict[str, Any]:
        return {**self.user_metadata, **self.internal, "modality": self.modality}


@dataclass(frozen=True)
class _FolderRecord:
    id: str
    modality: Modality
    mtime_ns: int
    size: int

    def unchanged(self, stat: os.stat_result) -> bool:
        return self.mtime_ns == int(stat.st_mtime_ns) and self.size == int(stat.st_size)


@dataclass
class _Loaded:
    file: Path
    modality: Modality
    payload: Any
    previous: _FolderRecord | None
    pending: Any  # _Pending when loaded
    error: str | None


def _user_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _RESERVED_KEYS and not k.startswith(_INTERNAL_PREFIX)}


def _record(record_id: str, modality: Modality, meta: Mapping[str, Any], document: str | None) -> Record:
    return Record(record_id, modality, meta.get("source") or None, document, _user_metadata(meta))


def _hit(record_id: str, modality: Modality, meta: Mapping[str, Any], document: str | None, score: float) -> Hit:
    return Hit(record_id, modality, meta.get("source") or None, document, _user_metadata(meta), score)


def _check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int) -> list[dict[str, Any]]:
    if metadatas is None:
        return [{} for _ in range(n)]
    metas = list(metadatas)
    if len(metas) != n:
        raise ValueError(f"got {len(metas)} metadatas for {n} items; pass one per item (or None)")
    checked = []
    for index, meta in enumerate(metas):
        meta = dict(meta or {})
        for key, value in meta.items():
            if not isinstance(key, str) or key in _RESERVED_KEYS or key.startswith(_INTERNAL_PREFIX):
                raise ValueError(
                    f"metadata of item {index}: key {key!r} is reserved or not a string "
                    "('modality', 'source' and 'mmrag_*' belong to mmrag)"
                )
            if not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"metadata of item {index}: value of {key!r} must be str, int, float or bool, "
                    f"got {type(value).__name__}"
                )
        checked.append(meta)
    return checked


def _check_ids(ids: Sequence[str] | None, n: int) -> list[str] | None:
    if ids is None:
        return None
    chosen = list(ids)
    if len(chosen) != n:
        raise ValueError(f"got {len(chosen)} ids for {n} items; pass one per item")
    for index, record_id in enumerate(chosen):
        if not isinstance(record_id, str) or not record_id:
            raise ValueError(f"id of item {index} must be a non-empty string, got {record_id!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError("ids must be unique within one call")
    return chosen


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pixel_digest(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _read_text(file: Path) -> str:
    text = file.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError("empty text file")
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _walk(root: Path, recursive: bool) -> Iterator[tuple[Path, Modality]]:
    entries: Iterable[Path] = root.rglob("*") if recursive else root.iterdir()
    for entry in entries:
        relative = entry.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        suffix = entry.suffix.lower()
        if suffix in IMAGE_EXTENSIONS and entry.is_file():
            yield entry, "image"
        elif suffix in TEXT_EXTENSIONS and entry.is_file():
            yield entry, "text"


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def _progress(total: int, show: bool | None, *, desc: str) -> Any:
    import sys

    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, desc=desc, unit="file", disable=not enabled or total == 0, leave=False)


class _PathLock:
    """One process per embedded Chroma path (embedded Chroma is not multi-process safe).

    Stores opened on the same path within one process share the lock.
    """

    _held: ClassVar[dict[Path, tuple[Any, int]]] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, path: Path) -> _PathLock:
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
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
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
