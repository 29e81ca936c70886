"""``MultimodalStore``: text and image vectors in one Chroma-backed store, searchable in all four directions.

It also holds image-text pairs and answers composed (image + text) queries
(:mod:`mmrag.store.pairs`). The store ties an encoder to a :class:`~mmrag.store.collection_pair.CollectionPair`:
it embeds what is added (skipping what is stored unchanged), searches one or
both modalities and merges them (:mod:`mmrag.store.fusion`), and indexes
folders (:mod:`mmrag.store.folder`). An embedded path is held by one process
at a time (:mod:`mmrag.store.lock`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mmrag.inputs import ImageInput, QueryType, as_items
from mmrag.store.checks import check_collection_name, check_fusion, check_k, check_modality, query_vector
from mmrag.store.collection_pair import CollectionPair, recorded_model_at
from mmrag.store.embedded import EmbeddedDatabase
from mmrag.store.filters import validate_where
from mmrag.store.folder import FolderIndexer
from mmrag.store.fusion import merge_ranked
from mmrag.store.hits import HitList
from mmrag.store.pairs import PairsMixin
from mmrag.store.records import IndexReport, Record, StoredModality
from mmrag.store.upsert import pending_images, pending_texts, write_pending

if TYPE_CHECKING:
    from mmrag.cache import EmbeddingCache
    from mmrag.encoders.base import Encoder

__all__ = ["MultimodalStore"]


class MultimodalStore(PairsMixin):
    """Text and image vectors in one Chroma-backed store, searchable in all four directions.

    Args:
        encoder: The encoder that embeds items and queries. A store remembers
            the model that built it and refuses another one.
        path: Directory of an embedded (on-disk) Chroma database. Used when no
            ``client`` is given; defaults to ``"./mmrag_db"``. One process at a
            time: a second process opening the same path fails at once with
            :class:`~mmrag.StoreLockedError`. :meth:`close` the store (or use
            ``with``) before another process writes to the path: a store
            opened again afterwards sees what that process wrote.
        collection: Name of the logical store (3+ characters, letters, digits,
            ``.``, ``_``, ``-``); Chroma collections ``<name>_images`` and
            ``<name>_texts`` are made from it (and ``<name>_pairs`` by the
            first :meth:`add_pairs`).
        client: A Chroma client to use instead of an embedded one, e.g.
            ``chromadb.HttpClient(host="127.0.0.1", port=8000)``.
        cache: An :class:`~mmrag.EmbeddingCache` for an encoder that has none
            (it becomes ``encoder.cache``, shared by everything using it).

    Raises:
        StoreMismatchError: The collections were built with another model,
            dimension or preprocessing.
        StoreLockedError: Another process has the embedded path open.
        OSError: The embedded path is read-only or its disk is full (the message says which).
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
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._database: EmbeddedDatabase | None = None  # the embedded path this store opened, closed by close()
        self.path: Path | None = None
        check_collection_name(collection)
        self.encoder = encoder
        if cache is not None and encoder.cache is None:
            encoder.cache = cache
        self.name = collection
        if client is None:
            db_path = Path(path if path is not None else "./mmrag_db").expanduser().resolve()
            self._database = EmbeddedDatabase.open(db_path)
            client, self.path = self._database.client, self._database.path
        self.client = client
        try:
            self._collections = CollectionPair(client, collection, encoder, self.path)
        except Exception:
            self.close()
            raise
        self._model_key = f"{encoder.model_id}|{encoder.dim}"

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
            OSError: The folder is read-only or its disk is full.
        """
        return recorded_model_at(Path(path).expanduser().resolve(), collection)

    def close(self) -> None:
        """Close the embedded database this store opened, release its path, stop its query threads (twice: no-op).

        Chroma keeps one in-memory index per path and process while any client
        of it is open; closing the last one drops it, so a store opened on the
        path later reads the database afresh, including what another process
        wrote meanwhile. A ``client=`` passed in is left open (it is the
        caller's).
        """
        collections = getattr(self, "_collections", None)
        if collections is not None:
            collections.close()
        if self._database is not None:
            self._database.close()

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
        show_progress: bool | None = None,
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
            show_progress: As for :meth:`index_folder`; by default only past one batch.

        Returns:
            An :class:`IndexReport`; ``report.ids`` holds the record ids.

        Raises:
            mmrag.NotASequenceError: ``texts`` is a single string, not a list.
            TypeError: A text is not a string (the message names its index).
            ValueError: Lengths differ, or a metadata value or key is invalid.
        """
        pending = pending_texts(texts, metadatas, ids, self._model_key)
        return write_pending(self._collections, self.encoder, pending, ids is not None, show_progress)

    def add_images(
        self,
        images: Sequence[ImageInput],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> IndexReport:
        """Embed and store images (upsert).

        Every image is resolved and checked before anything is written: one bad
        item raises :class:`~mmrag.ImageInputError` naming it, and the store is
        left as it was.

        Args:
            images: Anything :func:`mmrag.resolve_image` accepts, in a list.
                Paths and URLs are recorded as the source; pixels and base64
                never are.
            metadatas: One metadata mapping (or ``None``) per image.
            ids: Record ids to use instead of content-derived ones.
            show_progress: As for :meth:`add_texts`.

        Returns:
            An :class:`IndexReport`; ``report.ids`` holds the record ids.

        Raises:
            mmrag.NotASequenceError: ``images`` is a single image, not a list.
            mmrag.ImageInputError: An image could not be resolved or decoded.
            ValueError: Lengths differ, or a metadata value or key is invalid.
        """
        pending = pending_images(images, metadatas, ids, self.encoder, self._model_key)
        return write_pending(self._collections, self.encoder, pending, ids is not None, show_progress)

    def index_folder(
        self,
        path: str | os.PathLike[str],
        *,
        recursive: bool = True,
        follow_links: bool = False,
        show_progress: bool | None = None,
    ) -> IndexReport:
        """Index a folder's images and ``.txt``/``.md`` texts, keeping the store in sync with it.

        A re-run embeds only what changed: unchanged files (same size and
        modification time) are skipped, changed files are re-embedded and
        replaced, and records of deleted files are removed. Reading, embedding
        and writing overlap. Every file that cannot be indexed (unreadable,
        corrupt, empty, not UTF-8, not a regular file) is a ``failed`` entry
        naming it while every good file is indexed. An interrupted or killed
        run, run again, finishes with one record per file and no leftovers.

        Symbolic links are followed only within the folder: a link that
        leaves it (``passwd.txt -> /etc/passwd``) is not read unless
        ``follow_links=True``. Links not followed (and dangling links and link
        loops) are listed in ``report.skipped_links`` with the reason. A file
        name that is not UTF-8 is indexed, and shown with ``\\xNN`` escapes.

        Args:
            path: The folder.
            recursive: Walk sub-folders too (hidden ones are skipped).
            follow_links: Also follow links to files and folders outside the
                folder (a folder reached twice is walked once).
            show_progress: Show a progress bar; default: a widget in Jupyter
                (text without ipywidgets), a bar in a terminal, none otherwise.

        Returns:
            An :class:`IndexReport` with added, updated, skipped, removed,
            failed and skipped_links.

        Raises:
            NotADirectoryError: ``path`` is not a directory.
        """
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"not a folder: {str(path)!r}")
        indexer = FolderIndexer(self._collections, self.encoder, self._model_key)
        return indexer.index(root, recursive=recursive, follow_links=follow_links, show_progress=show_progress)

    # ------------------------------------------------------------------- read
    def search(
        self,
        query: str | ImageInput,
        *,
        image: ImageInput | None = None,
        k: int = 10,
        modality: StoredModality | None = None,
        where: Mapping[str, Any] | None = None,
        query_type: QueryType = "auto",
        fusion: Literal["rrf", "score"] = "rrf",
    ) -> HitList:
        """Search texts, images and pairs with a text, an image or a composed (image + text) query.

        Args:
            query: A text, or any image input (path, URL, data URI, bytes, PIL,
                numpy). With ``query_type="auto"`` a string is an image when it
                is an http(s) URL, a ``data:`` URI, or an existing file with an
                image ending; any other string is a text. Non-strings are images.
            image: An image to compose with the text ``query`` ("this shoe, but
                in red"): the query vector is then
                ``encoder.embed_fused([image], [query]).fused``.
            k: Most hits to return.
            modality: ``"image"``, ``"text"`` or ``"pair"`` to search one kind of
                record; ``None`` for all (pairs where the store has any), merged
                by reciprocal rank fusion (see ``fusion``).
            where: Chroma-style metadata filter on the caller's metadata, e.g.
                ``{"album": "2024"}`` or ``{"year": {"$gte": 2020}}``; checked
                by :func:`~mmrag.store.validate_where`.
            query_type: Force ``"text"`` or ``"image"`` instead of the rule above.
            fusion: How two modalities are merged: ``"rrf"`` (rank fusion, the
                default) or ``"score"`` (raw cosine, where the higher-scale
                modality tends to win). With a ``modality`` there is one list
                and nothing to merge: ``fusion`` is then unused (but an
                unknown value is still refused).

        Returns:
            Up to ``k`` hits, best first (a :class:`~mmrag.HitList`); ``hit.score`` is the cosine.

        Raises:
            mmrag.InvalidInputError: ``k`` is not an int >= 1, an unknown
                ``modality`` or ``fusion``, or ``image=`` with a blank text.
            mmrag.InvalidFilterError: ``where`` is malformed (the message names the part).
            mmrag.ImageInputError: An image query could not be resolved.
        """
        check_k(k)
        check_modality(modality)
        check_fusion(fusion)
        validate_where(where)
        vector = self.embed_query(query, image=image, query_type=query_type)
        return self.search_by_vector(vector, k=k, modality=modality, where=where, fusion=fusion)

    def search_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        k: int = 10,
        modality: StoredModality | None = None,
        where: Mapping[str, Any] | None = None,
        fusion: Literal["rrf", "score"] = "rrf",
    ) -> HitList:
        """Search with a query vector you already have (e.g. from :meth:`embed_query`).

        Args:
            vector: A vector of length ``encoder.dim`` from this store's encoder.
            k: Most hits to return.
            modality: ``"image"``, ``"text"``, ``"pair"`` or ``None`` for all (merged).
            where: Chroma-style metadata filter (see :meth:`search`).
            fusion: ``"rrf"`` or ``"score"``; see :meth:`search`.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            mmrag.InvalidInputError: Bad ``k``, ``modality`` or ``fusion``; a
                vector of the wrong length, with NaN or infinite entries, or
                all zeros. (Its length does not matter otherwise: cosine
                similarity ignores it.)
            mmrag.InvalidFilterError: ``where`` is malformed.
        """
        k = check_k(k)
        modalities = check_modality(modality)
        check_fusion(fusion)
        checked_where = validate_where(where)
        query = query_vector(vector, self.encoder.dim)
        ranked = self._collections.query_each(self._collections.present(modalities), query, k, checked_where)
        if modality is not None:
            return HitList(ranked.get(modality, []))
        return HitList(merge_ranked(list(ranked.values()), k, fusion=fusion))

    def count(self, modality: StoredModality | None = None) -> int:
        """Number of records, of one modality or of all.

        Args:
            modality: ``"image"``, ``"text"``, ``"pair"`` or ``None`` for all.

        Returns:
            The record count.

        Raises:
            mmrag.InvalidInputError: An unknown ``modality``.
        """
        return sum(self._collections.count(m) for m in check_modality(modality))

    def get(self, ids: Sequence[str]) -> list[Record]:
        """Fetch records by id.

        Args:
            ids: Record ids, in a list.

        Returns:
            The records found, in the order of ``ids`` (unknown ids are left out).

        Raises:
            mmrag.NotASequenceError: ``ids`` is a single id, not a list.
        """
        wanted = as_items(ids, "ids")
        return self._collections.get(wanted) if wanted else []

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records by id.

        Args:
            ids: Record ids, in a list; unknown ids are ignored.

        Returns:
            How many records were deleted.

        Raises:
            mmrag.NotASequenceError: ``ids`` is a single id, not a list.
        """
        doomed = as_items(ids, "ids")
        return self._collections.delete_present(doomed) if doomed else 0
