"""LlamaIndex adapter: a local multimodal embedding model and a retriever over a MultimodalStore.

Two pieces, both importable only when ``llama-index-core`` is installed:

* :class:`LocalMultiModalEmbedding` is a LlamaIndex ``MultiModalEmbedding``
  backed by an mmrag :class:`~mmrag.Encoder`. Use it as both ``embed_model``
  and ``image_embed_model`` of a ``MultiModalVectorStoreIndex``: texts and
  images land in one vector space, so text-to-image search works. A batch
  from LlamaIndex costs one forward pass per ``embed_batch_size`` items, and
  the async methods run the model off the event loop, coalescing concurrent
  calls into shared forward passes (see :class:`~mmrag.EmbeddingBatcher`).
* :class:`MultimodalStoreRetriever` is a LlamaIndex ``MultiModalRetriever`` over
  an :class:`mmrag.MultimodalStore`, for users who index with mmrag and query
  with LlamaIndex. Images come back as ``ImageNode`` (path or URL, never
  pixels), texts as ``TextNode``.
* :class:`CrossModalReranker` is a ``BaseNodePostprocessor`` that rescores
  retrieved ``ImageNode`` and ``TextNode`` results with an mmrag
  :class:`~mmrag.Reranker` (BLIP / BLIP-2 ITM, bge cross-encoders, dual
  encoders), for a text or an image query, in one batched scoring call.

Example:
    >>> from llama_index.core import SimpleDirectoryReader, StorageContext
    >>> from llama_index.core.indices import MultiModalVectorStoreIndex
    >>> from mmrag.llama_index import LocalMultiModalEmbedding
    >>> embed = LocalMultiModalEmbedding(model="demo")
    >>> docs = SimpleDirectoryReader("photos/").load_data()
    >>> index = MultiModalVectorStoreIndex.from_documents(docs, embed_model=embed, image_embed_model=embed)
    >>> index.as_retriever().text_to_image_retrieve("a red circle")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    ImageType,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    QueryType,
    TextNode,
)

from mmrag.batching import EmbeddingBatcher
from mmrag.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mmrag.inputs import ImageInput, is_url
from mmrag.rerank import InputType, Reranker, RerankerSpec, describe_reranker_spec, load_reranker
from mmrag.rerank.reranker import rerank_known_modalities
from mmrag.store import Hit, Modality, MultimodalStore

if TYPE_CHECKING:
    import torch

__all__ = ["CrossModalReranker", "LocalMultiModalEmbedding", "MultimodalStoreRetriever", "hit_to_node"]

dispatcher = get_dispatcher(__name__)

Embedding = list[float]
"""One embedding as LlamaIndex wants it: a list of Python floats."""


class LocalMultiModalEmbedding(MultiModalEmbedding):
    """A LlamaIndex multimodal embedding model that runs a local mmrag encoder.

    Texts, queries and images are embedded into one vector space (CLIP,
    SigLIP, SigLIP 2, Chinese-CLIP or the bundled ``"demo"`` model), with
    L2-normalised vectors, so cosine similarity and dot product agree.

    Args:
        model: A preset alias (see :func:`mmrag.list_models`), a hub id or a
            local directory. Defaults to ``"siglip2-base-224"``. Leave it out
            when passing ``encoder``.
        encoder: An already loaded :class:`mmrag.Encoder` to use instead of
            loading ``model``; ``model`` is then its ``model_id``.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; default: the best available.
            Only for loading ``model``.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; default: the
            family's choice for the device. Only for loading ``model``.
        embed_batch_size: Items per forward pass; default 64, or the
            encoder's ``batch_size`` when ``encoder`` is given.
        local_files_only: Never use the network to load ``model``.
        batch_wait_ms: How long concurrent async requests wait for others to
            join their forward pass.
        **kwargs: Other ``BaseEmbedding`` fields, e.g. ``callback_manager``.

    Raises:
        ValueError: ``encoder`` is given together with a different ``model``,
            or with ``device``/``dtype``.
        mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.

    Example:
        >>> from mmrag.llama_index import LocalMultiModalEmbedding
        >>> embed = LocalMultiModalEmbedding(model="demo", device="cpu")
        >>> len(embed.get_text_embedding("a red circle"))
        64
        >>> vectors = embed.get_image_embedding_batch(["a.png", "b.png"])  # doctest: +SKIP
    """

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Preset alias, hub id or local directory of the mmrag encoder.",
    )
    device: str | None = Field(
        default=None,
        description="Device to run on ('cuda', 'mps', 'cpu'...); None picks CUDA, then MPS, then CPU.",
    )
    dtype: str | None = Field(
        default=None,
        description="Weight dtype ('float32', 'float16', 'bfloat16'); None: half precision on a GPU, float32 on CPU.",
    )
    embed_batch_size: int = Field(
        default=64,
        description="Most items per forward pass (LlamaIndex hands batches of this size to the model).",
        gt=0,
        le=2048,
    )
    local_files_only: bool = Field(
        default=False,
        description="Never touch the network when loading the model.",
    )
    batch_wait_ms: float = Field(
        default=2.0,
        description="How long concurrent async requests wait for others to join a shared forward pass.",
        ge=0.0,
    )

    _encoder: Encoder = PrivateAttr()
    _owns_encoder: bool = PrivateAttr(default=False)
    _batcher: EmbeddingBatcher | None = PrivateAttr(default=None)
    _batcher_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        embed_batch_size: int | None = None,
        local_files_only: bool = False,
        batch_wait_ms: float = 2.0,
        **kwargs: Any,
    ) -> None:
        if encoder is not None:
            if model is not None and str(model) not in (encoder.model_id, encoder.model_id.removeprefix("mmrag/")):
                raise ValueError(f"got model={str(model)!r} and an encoder for {encoder.model_id!r}; pass one of them")
            if device is not None or dtype is not None:
                raise ValueError(
                    "device and dtype apply when LocalMultiModalEmbedding loads the model; with encoder=..., "
                    "pass them to mmrag.load_encoder instead"
                )
            batch_size = encoder.batch_size if embed_batch_size is None else embed_batch_size
            loaded, owns = encoder, False
        else:
            batch_size = 64 if embed_batch_size is None else embed_batch_size
            loaded = load_encoder(
                DEFAULT_MODEL if model is None else model,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                local_files_only=local_files_only,
            )
            owns = True
        kwargs.setdefault("model_name", loaded.model_id)
        super().__init__(
            model=loaded.model_id if encoder is not None else str(DEFAULT_MODEL if model is None else model),
            device=None if device is None else str(device),
            dtype=None if dtype is None else str(dtype).removeprefix("torch."),
            embed_batch_size=batch_size,
            local_files_only=local_files_only,
            batch_wait_ms=batch_wait_ms,
            **kwargs,
        )
        self._encoder = loaded
        self._owns_encoder = owns

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this component.

        Returns:
            ``"LocalMultiModalEmbedding"``.
        """
        return "LocalMultiModalEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder doing the work."""
        return self._encoder

    @property
    def batcher(self) -> EmbeddingBatcher:
        """The batcher that coalesces concurrent async requests (created on first use)."""
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = EmbeddingBatcher(
                    self._encoder, max_batch_items=self.embed_batch_size, max_wait_ms=self.batch_wait_ms
                )
            return self._batcher

    def close(self) -> None:
        """Stop the batcher's worker thread (and the encoder's, if this object loaded it).

        The object stays usable: threads restart on demand.
        """
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()
        if self._owns_encoder:
            self._encoder.close()

    # ------------------------------------------------------------- sync hooks
    def _get_query_embedding(self, query: str) -> Embedding:
        """Embed one query text (the same text tower as documents; no prefix)."""
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        """Embed one text."""
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed texts: one forward pass per ``embed_batch_size`` texts."""
        return self._encoder.embed_texts(list(texts), batch_size=self.embed_batch_size).tolist()

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        """Embed one image (a path, URL, ``BytesIO`` or anything :func:`mmrag.resolve_image` takes)."""
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        """Embed images: one forward pass per ``embed_batch_size`` images."""
        images: list[ImageInput] = list(img_file_paths)
        return self._encoder.embed_images(images, batch_size=self.embed_batch_size).tolist()

    # ------------------------------------------------------------ async hooks
    # Every async hook goes through the batcher: the model runs on its worker
    # thread, never on the event loop, and requests that arrive together (e.g.
    # many ``aget_image_embedding`` calls gathered at once) share forward passes.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        """Embed one query text off the event loop."""
        return (await self.batcher.aembed_texts([query]))[0].tolist()

    async def _aget_text_embedding(self, text: str) -> Embedding:
        """Embed one text off the event loop."""
        return (await self.batcher.aembed_texts([text]))[0].tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed texts off the event loop, sharing forward passes with concurrent calls."""
        return (await self.batcher.aembed_texts(list(texts))).tolist()

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        """Embed one image off the event loop."""
        return (await self.batcher.aembed_images([img_file_path]))[0].tolist()

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        """Embed images off the event loop, sharing forward passes with concurrent calls."""
        return (await self.batcher.aembed_images(list(img_file_paths))).tolist()


class MultimodalStoreRetriever(MultiModalRetriever):
    """A LlamaIndex retriever over an :class:`mmrag.MultimodalStore`.

    Results are ``NodeWithScore`` objects whose node id is the store's record
    id and whose score is the cosine similarity. Images come back as
    ``ImageNode`` with ``image_path`` (or ``image_url``) and metadata, never
    pixels or base64; texts as ``TextNode``. Every node's metadata holds
    ``modality``, ``source`` and the record's own metadata.

    ``retrieve`` takes a text (a string, or a ``QueryBundle``) or an image (a
    ``QueryBundle`` with ``image_path``) and searches ``modality``. The
    direction-specific methods fix the modality themselves.

    Args:
        store: The store to search.
        k: Most results per query.
        modality: What :meth:`retrieve` searches: ``"image"``, ``"text"`` or
            ``None`` for both (merged by rank fusion, see
            :meth:`mmrag.MultimodalStore.search`).
        where: Chroma-style metadata filter applied to every query, e.g.
            ``{"album": "2024"}``.
        batcher: An :class:`~mmrag.EmbeddingBatcher` over the store's encoder
            (e.g. ``LocalMultiModalEmbedding.batcher``). When given, the async
            methods embed their queries through it, so concurrent queries
            share forward passes; without it each async query embeds alone
            (in a worker thread).
        callback_manager: LlamaIndex callback manager.

    Raises:
        ValueError: ``k`` < 1, an unknown ``modality``, or a ``batcher`` for
            another model than the store's.

    Example:
        >>> retriever = MultimodalStoreRetriever(store, k=5)
        >>> [n.node.image_path for n in retriever.text_to_image_retrieve("a red circle")]  # doctest: +SKIP
    """

    def __init__(
        self,
        store: MultimodalStore,
        k: int = 10,
        modality: Modality | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        batcher: EmbeddingBatcher | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if modality not in (None, "image", "text"):
            raise ValueError(f"modality must be 'image', 'text' or None, got {modality!r}")
        if batcher is not None and batcher.encoder.signature != store.encoder.signature:
            raise ValueError(
                f"the batcher runs {batcher.encoder.model_id!r} but the store holds vectors of "
                f"{store.encoder.model_id!r}; pass a batcher over the store's encoder"
            )
        super().__init__(callback_manager=callback_manager)
        self.store = store
        self.k = k
        self.modality: Modality | None = modality
        self.where = dict(where) if where else None
        self.batcher = batcher

    # ------------------------------------------------------------- retrieval
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Search ``modality`` with the bundle's image if it has one, else its text."""
        query, kind = _query_of(query_bundle)
        return self._search(query, kind, self.modality)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Async form of :meth:`_retrieve`."""
        query, kind = _query_of(query_bundle)
        return await self._asearch(query, kind, self.modality)

    def text_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Retrieve texts for a text query.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return self._search(_text_of(str_or_query_bundle), "text", "text")

    def text_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Retrieve images for a text query.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return self._search(_text_of(str_or_query_bundle), "text", "image")

    def image_to_image_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Retrieve images similar to an image.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return self._search(_image_of(str_or_query_bundle), "image", "image")

    def image_to_text_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Retrieve texts for an image (e.g. captions or notes about a photo).

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return self._search(_image_of(str_or_query_bundle), "image", "text")

    async def atext_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Async form of :meth:`text_retrieve`.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return await self._asearch(_text_of(str_or_query_bundle), "text", "text")

    async def atext_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Async form of :meth:`text_to_image_retrieve`.

        Args:
            str_or_query_bundle: The query text, or a ``QueryBundle``.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return await self._asearch(_text_of(str_or_query_bundle), "text", "image")

    async def aimage_to_image_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Async form of :meth:`image_to_image_retrieve`.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``ImageNode`` nodes, best first.
        """
        return await self._asearch(_image_of(str_or_query_bundle), "image", "image")

    async def aimage_to_text_retrieve(self, str_or_query_bundle: QueryType | ImageInput) -> list[NodeWithScore]:
        """Async form of :meth:`image_to_text_retrieve`.

        Args:
            str_or_query_bundle: An image path or URL, a ``QueryBundle`` with
                ``image_path``, or any other :data:`mmrag.ImageInput`.

        Returns:
            ``NodeWithScore`` with ``TextNode`` nodes, best first.
        """
        return await self._asearch(_image_of(str_or_query_bundle), "image", "text")

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
    def _search(
        self, query: str | ImageInput, kind: Literal["text", "image"], modality: Modality | None
    ) -> list[NodeWithScore]:
        hits = self.store.search(query, k=self.k, modality=modality, where=self.where, query_type=kind)
        return [hit_to_node(hit) for hit in hits]

    async def _asearch(
        self, query: str | ImageInput, kind: Literal["text", "image"], modality: Modality | None
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
            vectors = await self.batcher.aembed_texts([_text_query(query)])
        hits = await asyncio.to_thread(
            self.store.search_by_vector, vectors[0], k=self.k, modality=modality, where=self.where
        )
        return [hit_to_node(hit) for hit in hits]


def hit_to_node(hit: Hit) -> NodeWithScore:
    """Turn a store hit into a LlamaIndex ``NodeWithScore``.

    Args:
        hit: A :class:`mmrag.Hit`.

    Returns:
        A ``NodeWithScore`` whose node id is ``hit.id`` and score ``hit.score``:
        an ``ImageNode`` (``image_path`` for files, ``image_url`` for URLs; no
        pixels) for images, a ``TextNode`` for texts. The metadata holds
        ``modality``, ``source`` and ``hit.metadata``; ``modality`` (and a
        ``source`` that merely repeats the text) is hidden from the LLM and
        from embedding.
    """
    metadata: dict[str, Any] = {**hit.metadata, "modality": hit.modality, "source": hit.source}
    hidden = ["modality"]
    if hit.modality == "image":
        url = hit.source if hit.source and is_url(hit.source) else None
        path = hit.source if hit.source and url is None else None
        node: TextNode = ImageNode(
            id_=hit.id,
            image_path=path,
            image_url=url,
            metadata=metadata,
            excluded_llm_metadata_keys=hidden,
            excluded_embed_metadata_keys=hidden,
        )
    else:
        if hit.source is not None and hit.source == hit.text:
            hidden = [*hidden, "source"]
        node = TextNode(
            id_=hit.id,
            text=hit.text or "",
            metadata=metadata,
            excluded_llm_metadata_keys=hidden,
            excluded_embed_metadata_keys=hidden,
        )
    return NodeWithScore(node=node, score=hit.score)


def _text_of(query: QueryType) -> str:
    """The text of a text query."""
    if isinstance(query, QueryBundle):
        return query.query_str
    if not isinstance(query, str):
        raise TypeError(f"a text query must be a str or QueryBundle, got {type(query).__name__}")
    return query


def _image_of(query: QueryType | ImageInput) -> ImageInput:
    """The image of an image query: a bundle's ``image_path`` (else its text), or the input itself."""
    if isinstance(query, QueryBundle):
        if query.image_path:
            return query.image_path
        if query.query_str:
            return query.query_str
        raise ValueError("an image query needs a QueryBundle with image_path (or an image path or URL)")
    return query


def _text_query(query: object) -> str:
    """A text query as a string, refusing anything else (as ``MultimodalStore.search`` does)."""
    if not isinstance(query, str):
        raise TypeError(f"a text query must be a string, got {type(query).__name__}")
    return query


def _query_of(bundle: QueryBundle) -> tuple[str | ImageInput, Literal["text", "image"]]:
    """A bundle with ``image_path`` is an image query; any other bundle a text query."""
    if bundle.image_path:
        return bundle.image_path, "image"
    return bundle.query_str, "text"


# ------------------------------------------------------------------ reranking
ModelSpec = Union[RerankerSpec, Sequence[RerankerSpec], Mapping[str, RerankerSpec]]
"""What :func:`mmrag.load_reranker` takes: one model, a list, or a pair->model mapping."""

RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key under which :class:`CrossModalReranker` keeps the first-stage score."""


class CrossModalReranker(BaseNodePostprocessor):
    """Rerank retrieved text and image nodes with an mmrag :class:`~mmrag.Reranker`.

    A LlamaIndex node postprocessor: put it in a query engine's
    ``node_postprocessors`` or call :meth:`postprocess_nodes` on what a
    retriever returned (:class:`MultimodalStoreRetriever`, a
    ``MultiModalVectorStoreIndex`` retriever, any other).

    * **Candidates**: an ``ImageNode`` is scored as an image, read from its
      ``image`` (base64), else ``image_path``, else ``image_url`` (LlamaIndex's
      own order); a ``Node`` with an ``image_resource`` likewise; every other
      node as the text ``node.get_content(metadata_mode)``.
    * **Query**: the bundle's ``image_path`` if it has one (an image query,
      e.g. ``QueryBundle("", image_path="photo.jpg")``), else its
      ``query_str`` (always a text, even if it names an image file).
    * **Output**: new ``NodeWithScore`` objects, best first, at most
      ``top_n``; ``score`` is the reranker's match probability in ``[0, 1]``
      (see :mod:`mmrag.rerank` for what it means across modalities). Each node
      is a copy with the original metadata plus ``retrieval_score`` (the
      first-stage score, when there was one; hidden from the LLM and from
      embedding). The nodes passed in are not modified.

    All candidates go to the reranker in **one** scoring call, texts and images
    mixed, which batches them per backend (``ceil(n / batch_size)`` model
    calls per modality). Only when a text would be misread as an image by
    :func:`mmrag.inputs.is_image_query` (e.g. a text that is just an http URL)
    are texts and images scored in two calls, one per modality.

    Args:
        reranker: A loaded :class:`~mmrag.Reranker` to use (it may be shared).
        model: Instead of ``reranker``: what :func:`mmrag.load_reranker`
            takes, e.g. ``"blip-itm-base-coco"``, ``["blip-itm-base-coco",
            "bge-reranker-base"]`` or a local directory.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; only for loading ``model``.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``; only for loading ``model``.
        batch_size: Most (query, candidate) pairs per model call; default: the
            reranker's own (32 when loading ``model``).
        top_n: Most nodes to return; ``None`` keeps all, reordered.
        metadata_mode: What text candidates include: ``MetadataMode.NONE``
            (the text alone, the default) or e.g. ``MetadataMode.EMBED``.
        local_files_only: Never use the network to load ``model``.
        **kwargs: Other postprocessor fields, e.g. ``callback_manager``.

    Raises:
        ValueError: Neither or both of ``reranker`` and ``model``, or
            ``device``/``dtype``/``local_files_only`` with ``reranker``.
        mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.

    Example:
        >>> from mmrag.llama_index import CrossModalReranker
        >>> reranker = CrossModalReranker(model=["blip-itm-base-coco", "bge-reranker-base"], top_n=3)
        >>> nodes = retriever.retrieve("a dog on the beach")  # doctest: +SKIP
        >>> best = reranker.postprocess_nodes(nodes, query_str="a dog on the beach")  # doctest: +SKIP
        >>> engine = index.as_query_engine(node_postprocessors=[reranker])  # doctest: +SKIP
    """

    model: str | list[str] | dict[str, str] | None = Field(
        default=None,
        description="What the reranker was loaded from (alias, hub id, path; a list or pair->model mapping).",
    )
    device: str | None = Field(default=None, description="Device the model was loaded on; None: the best available.")
    dtype: str | None = Field(default=None, description="Weight dtype the model was loaded with; None: the default.")
    batch_size: int = Field(default=32, description="Most (query, candidate) pairs per model call.", gt=0)
    top_n: int | None = Field(default=None, description="Most nodes to return; None keeps all, reordered.", ge=0)
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.NONE,
        description="Which metadata text candidates include (MetadataMode); NONE scores the text alone.",
    )
    local_files_only: bool = Field(default=False, description="Never use the network when loading the model.")

    _reranker: Reranker = PrivateAttr()
    _owns_reranker: bool = PrivateAttr(default=False)

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        model: ModelSpec | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
        top_n: int | None = None,
        metadata_mode: MetadataMode = MetadataMode.NONE,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> None:
        if (reranker is None) == (model is None):
            raise ValueError("pass either reranker= (a loaded mmrag.Reranker) or model= (what load_reranker takes)")
        if reranker is not None:
            if device is not None or dtype is not None or local_files_only:
                raise ValueError(
                    "device, dtype and local_files_only apply when CrossModalReranker loads the model; with "
                    "reranker=..., pass them to mmrag.load_reranker instead"
                )
            loaded, owns = reranker, False
            label: Any = {pair: backend.model_id for pair, backend in reranker.routes.items()}
            size = reranker.batch_size if batch_size is None else batch_size
        else:
            size = 32 if batch_size is None else batch_size
            loaded = load_reranker(
                model,  # type: ignore[arg-type]
                device=device,
                dtype=dtype,
                batch_size=size,
                local_files_only=local_files_only,
            )
            owns, label = True, describe_reranker_spec(model)
        super().__init__(
            model=label,
            device=None if device is None else str(device),
            dtype=None if dtype is None else str(dtype).removeprefix("torch."),
            batch_size=size,
            top_n=top_n,
            metadata_mode=metadata_mode,
            local_files_only=local_files_only,
            **kwargs,
        )
        self._reranker = loaded
        self._owns_reranker = owns

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this component.

        Returns:
            ``"CrossModalReranker"``.
        """
        return "CrossModalReranker"

    @property
    def reranker(self) -> Reranker:
        """The mmrag reranker doing the scoring."""
        return self._reranker

    def close(self) -> None:
        """Stop the reranker's prefetch threads, if this object loaded it (it stays usable)."""
        if self._owns_reranker:
            self._reranker.close()

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        """Rescore ``nodes`` for the query, best first, at most ``top_n``.

        Args:
            nodes: Retrieved nodes (text and image nodes may be mixed).
            query_bundle: The query: its ``image_path`` (image query) or ``query_str``.

        Returns:
            Copies of the best nodes with the reranker's scores.

        Raises:
            ValueError: No query, an empty query, or an image node without an image.
            mmrag.UnsupportedPairError: The reranker serves no backend for a
                needed (query, candidate) modality pair.
            mmrag.ImageInputError: A query or node image could not be read.
        """
        query, query_type = _rerank_query(query_bundle)
        top_n = self.top_n
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if top_n is None else top_n,
                model_name=str(self.model),
            )
        )
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        candidates = [_node_candidate(result.node, self.metadata_mode) for result in nodes]
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: str(self.model),
            EventPayload.QUERY_STR: query_bundle.query_str if query_bundle is not None else "",
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            ranked = rerank_known_modalities(
                self._reranker,
                query,
                query_type,
                [item for item, _ in candidates],
                [modality for _, modality in candidates],
                top_n,
                self.batch_size,
            )
            reranked = [_rescored(nodes[item.index], item.score) for item in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked


def _rerank_query(bundle: QueryBundle | None) -> tuple[str, InputType]:
    """The query the reranker scores against: the bundle's image if it has one, else its text."""
    if bundle is None:
        raise ValueError("CrossModalReranker needs a query: pass query_str=... or a QueryBundle")
    if bundle.image_path:
        return bundle.image_path, "image"
    if not isinstance(bundle.query_str, str) or not bundle.query_str.strip():
        raise ValueError("empty query: rerank for a text (query_str) or an image (QueryBundle(image_path=...))")
    return bundle.query_str, "text"


def _node_candidate(node: BaseNode, metadata_mode: MetadataMode) -> tuple[Any, Modality]:
    """What the reranker scores for a node, and as which modality.

    Images are returned as non-strings (``Path``, ``bytes``) or http(s)/data URLs,
    so the reranker's ``"auto"`` rule reads every one of them as an image.
    """
    if isinstance(node, ImageNode):
        image: Any = None
        if node.image:
            image = _base64_image(node.image)
        elif node.image_path:
            image = Path(node.image_path)
        elif node.image_url:
            image = node.image_url
        if image is None:
            raise ValueError(
                f"ImageNode {node.node_id!r} has no image, image_path or image_url: there is nothing to rerank"
            )
        return image, "image"
    resource = getattr(node, "image_resource", None)  # llama_index.core.schema.Node
    if resource is not None and (resource.data or resource.path or resource.url):
        if resource.data:
            return _base64_image(resource.data), "image"
        if resource.path:
            return Path(resource.path), "image"
        return str(resource.url), "image"
    return node.get_content(metadata_mode=metadata_mode), "text"


def _base64_image(data: str | bytes) -> Any:
    """Decode base64 image data to bytes; leave data URIs and undecodable text to the image resolver."""
    if isinstance(data, str) and data.lstrip()[:5].lower() == "data:":
        return data
    compact = "".join(data.split()) if isinstance(data, str) else b"".join(data.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return data


def _rescored(result: NodeWithScore, score: float) -> NodeWithScore:
    """A copy of ``result`` with the new score; the old one kept in the node's metadata."""
    node = result.node
    if result.score is None:
        copy = node.model_copy(update={"metadata": dict(node.metadata)})
    else:
        hidden = [RETRIEVAL_SCORE_KEY]
        copy = node.model_copy(
            update={
                "metadata": {**node.metadata, RETRIEVAL_SCORE_KEY: result.score},
                "excluded_llm_metadata_keys": _with_keys(node.excluded_llm_metadata_keys, hidden),
                "excluded_embed_metadata_keys": _with_keys(node.excluded_embed_metadata_keys, hidden),
            }
        )
    return NodeWithScore(node=copy, score=score)


def _with_keys(keys: list[str], extra: list[str]) -> list[str]:
    return [*keys, *(key for key in extra if key not in keys)]
