"""``MultimodalStoreRetriever``: a LlamaIndex ``MultiModalRetriever`` over an mmrag store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, QueryType
from llama_index.core.vector_stores.types import MetadataFilters

from mmrag.batching import EmbeddingBatcher
from mmrag.errors import InvalidInputError
from mmrag.inputs import ImageInput, Modality
from mmrag.llama_index._nodes import composed_of, hit_to_node, image_of, query_of, text_of
from mmrag.llama_index._settings import RetrieverSettings
from mmrag.store import Hit, MultimodalStore, StoredModality, merge_ranked

__all__ = ["MultimodalStoreRetriever"]


class MultimodalStoreRetriever(RetrieverSettings, MultiModalRetriever):
    """A LlamaIndex retriever over an :class:`mmrag.MultimodalStore`.

    Results are ``NodeWithScore`` objects whose node id is the store's record
    id and whose score is the cosine similarity. Images come back as
    ``ImageNode`` with ``image_path`` (or ``image_url``) and metadata, never
    pixels or base64; texts as ``TextNode``. Every node's metadata holds
    ``modality``, ``source`` and the record's own metadata.

    ``retrieve`` takes a text (a string, or a ``QueryBundle``), an image (a
    ``QueryBundle`` with ``image_path``) or both, a composed query
    (``QueryBundle(query_str="make it red", image_path="shoe.jpg")``: the query
    vector is the encoder's fused vector of the two, see
    :meth:`mmrag.MultimodalStore.search`), and searches ``modality``. The
    direction-specific methods fix the modality themselves.

    How many results come back takes LlamaIndex's own arguments too:
    ``similarity_top_k`` texts and ``image_similarity_top_k`` images, each
    settable after construction like on ``MultiModalVectorIndexRetriever``.
    A search over both modalities merges at most that many of each by rank
    fusion, and at most ``k`` in all when ``k`` is given.

    Args:
        store: The store to search.
        k: Most results per query: sets both ``similarity_top_k`` and
            ``image_similarity_top_k`` (unless given) and, for a search over
            both modalities, the total. Default 10, when neither of those two is given.
        modality: What :meth:`retrieve` searches: ``"image"``, ``"text"``,
            ``"pair"`` (image-text pairs, ``ImageNode`` with text; ``k`` of
            them) or ``None`` for all (merged by rank fusion, see
            :meth:`mmrag.MultimodalStore.search`).
        similarity_top_k: Most text results (``text_retrieve``,
            ``image_to_text_retrieve``, the texts of a mixed ``retrieve``).
        image_similarity_top_k: Most image results (``text_to_image_retrieve``,
            ``image_to_image_retrieve``, the images and the pairs of a mixed
            ``retrieve``).
        where: Chroma-style metadata filter applied to every query, e.g.
            ``{"album": "2024"}``.
        filters: LlamaIndex ``MetadataFilters`` applied to every query,
            translated by :func:`filters_to_where` (together with ``where``
            when both are given).
        batcher: An :class:`~mmrag.EmbeddingBatcher` over the store's encoder
            (e.g. ``LocalMultiModalEmbedding.batcher``). When given, the async
            methods embed their queries through it, so concurrent queries
            share forward passes; without it each async query embeds alone
            (in a worker thread).
        callback_manager: LlamaIndex callback manager.

    Raises:
        mmrag.InvalidInputError: ``k`` or a top-k < 1, an unknown ``modality``, or a ``batcher`` for
            another model than the store's.
        mmrag.InvalidFilterError: ``filters`` uses an operator Chroma has no equivalent for.

    Example:
        >>> retriever = MultimodalStoreRetriever(store, k=5)
        >>> [n.node.image_path for n in retriever.text_to_image_retrieve("a red circle")]  # doctest: +SKIP
        >>> retriever = MultimodalStoreRetriever(store, similarity_top_k=3, image_similarity_top_k=2)
        >>> retriever.similarity_top_k = 1  # honoured from the next query on
    """

    def __init__(
        self,
        store: MultimodalStore,
        k: int | None = None,
        modality: StoredModality | None = None,
        *,
        similarity_top_k: int | None = None,
        image_similarity_top_k: int | None = None,
        where: Mapping[str, Any] | None = None,
        filters: MetadataFilters | None = None,
        batcher: EmbeddingBatcher | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if modality not in (None, "image", "text", "pair"):
            raise InvalidInputError(f"modality must be 'image', 'text', 'pair' or None, got {modality!r}")
        if batcher is not None and batcher.encoder.signature != store.encoder.signature:
            raise InvalidInputError(
                f"the batcher runs {batcher.encoder.model_id!r} but the store holds vectors of "
                f"{store.encoder.model_id!r}; pass a batcher over the store's encoder"
            )
        super().__init__(callback_manager=callback_manager)
        self.store = store
        self.modality: StoredModality | None = modality
        self.where = dict(where) if where else None
        self.batcher = batcher
        self._set_counts(k, similarity_top_k, image_similarity_top_k)
        self.filters = filters

    # ------------------------------------------------------------- retrieval
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Search ``modality`` with the bundle's image and text (composed), its image, or its text."""
        composed = composed_of(query_bundle)
        if composed is not None:
            return self._composed(*composed, self.modality)
        query, kind = query_of(query_bundle)
        return self._search(query, kind, self.modality)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Async form of :meth:`_retrieve`."""
        composed = composed_of(query_bundle)
        if composed is not None:
            return await asyncio.to_thread(self._composed, *composed, self.modality)
        query, kind = query_of(query_bundle)
        return await self._asearch(query, kind, self.modality)

    def text_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Retrieve texts for a text query.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return self._search(text_of(str_or_query_bundle), "text", "text")

    def text_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Retrieve images for a text query.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return self._search(text_of(str_or_query_bundle), "text", "image")

    def image_to_image_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Retrieve images similar to an image.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return self._search(image_of(str_or_query_bundle), "image", "image")

    def image_to_text_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Retrieve texts for an image (e.g. captions or notes about a photo).

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return self._search(image_of(str_or_query_bundle), "image", "text")

    async def atext_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Async form of :meth:`text_retrieve`.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return await self._asearch(text_of(str_or_query_bundle), "text", "text")

    async def atext_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Async form of :meth:`text_to_image_retrieve`.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return await self._asearch(text_of(str_or_query_bundle), "text", "image")

    async def aimage_to_image_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Async form of :meth:`image_to_image_retrieve`.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return await self._asearch(image_of(str_or_query_bundle), "image", "image")

    async def aimage_to_text_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Async form of :meth:`image_to_text_retrieve`.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return await self._asearch(image_of(str_or_query_bundle), "image", "text")

    # BaseImageRetriever's private hooks, for code that calls them directly.
    def _text_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.text_to_image_retrieve(query_bundle)

    def _image_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.image_to_image_retrieve(query_bundle)

    async def _atext_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self.atext_to_image_retrieve(query_bundle)

    async def _aimage_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self.aimage_to_image_retrieve(query_bundle)

    # -------------------------------------------------------------- internals
    def _composed(self, text: str, image: ImageInput, modality: StoredModality | None) -> list[NodeWithScore]:
        vector = self.store.embed_query(text, image=image)
        return [hit_to_node(hit) for hit in self._by_vector(vector, modality)]

    def _search(self, query: str | ImageInput, kind: Modality, modality: StoredModality | None) -> list[NodeWithScore]:
        hits: list[Hit]
        if self._one_store_call(modality):
            k = self._k_for(modality)
            hits = self.store.search(query, k=k, modality=modality, where=self.combined_where(), query_type=kind)
        else:
            hits = self._mixed_by_vector(self.store.embed_query(query, query_type=kind))
        return [hit_to_node(hit) for hit in hits]

    async def _asearch(
        self, query: str | ImageInput, kind: Modality, modality: StoredModality | None
    ) -> list[NodeWithScore]:
        # Nothing blocking runs on the event loop. With a batcher, the query is
        # embedded on its worker thread (concurrent queries share forward
        # passes) and only the Chroma lookup goes to a thread. Without one,
        # the whole search (embedding + lookup) runs in one worker thread:
        # the simplest non-blocking form, and the encoder and Chroma client
        # are thread-safe, so concurrent queries are fine.
        if self.batcher is None:
            return await asyncio.to_thread(self._search, query, kind, modality)
        if kind == "image":
            vectors = await self.batcher.aembed_images([query], limits=self.store.encoder.image_limits)
        else:
            vectors = await self.batcher.aembed_texts([text_of(query)])
        hits = await asyncio.to_thread(self._by_vector, vectors[0], modality)
        return [hit_to_node(hit) for hit in hits]

    def _k_for(self, modality: StoredModality | None) -> int:
        """The ``k`` of one store call: the total for all modalities or pairs, else that modality's top-k."""
        return self.k if modality is None or modality == "pair" else self.top_k_for(modality)

    def _by_vector(self, vector: Any, modality: StoredModality | None) -> list[Hit]:
        if not self._one_store_call(modality):
            return self._mixed_by_vector(vector)
        k = self._k_for(modality)
        return self.store.search_by_vector(vector, k=k, modality=modality, where=self.combined_where())

    def _mixed_by_vector(self, vector: Any) -> list[Hit]:
        """Up to ``similarity_top_k`` texts and ``image_similarity_top_k`` images and pairs, fused, at most ``k``."""
        where = self.combined_where()
        counts: dict[StoredModality, int] = {"image": self.top_k_for("image"), "text": self.top_k_for("text")}
        counts["pair"] = counts["image"]  # pairs come back as ImageNode (with text)
        ranked = [
            self.store.search_by_vector(vector, k=count, modality=modality, where=where)
            for modality, count in counts.items()
        ]
        return merge_ranked(ranked, self.k)
