"""LangChain adapter: mmrag encoders as LangChain embeddings, and a retriever over a store.

Two classes:

* :class:`LocalMultiModalEmbeddings`: a LangChain
  :class:`~langchain_core.embeddings.Embeddings` backed by a local mmrag
  encoder. Besides ``embed_documents`` / ``embed_query`` it has
  ``embed_image(uris=...)``, the method ``langchain_chroma.Chroma.add_images``
  and ``similarity_search_by_image`` look for, so texts and images land in one
  vector space. The async methods run through an
  :class:`~mmrag.EmbeddingBatcher`: they never run the model on the event
  loop, and concurrent calls share forward passes.
* :class:`MultimodalStoreRetriever`: a LangChain
  :class:`~langchain_core.retrievers.BaseRetriever` over an
  :class:`mmrag.MultimodalStore`, for text queries (``invoke("a red circle")``)
  and image queries (``invoke("", image="photo.png")``).
* :class:`CrossModalReranker`: a LangChain
  :class:`~langchain_core.documents.BaseDocumentCompressor` that reranks
  retrieved text and image documents with an mmrag :class:`~mmrag.Reranker`,
  e.g. as the ``base_compressor`` of a ``ContextualCompressionRetriever``
  (package ``langchain-classic``).

Example:
    >>> from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever
    >>> emb = LocalMultiModalEmbeddings(model="demo")
    >>> emb.embed_image(uris=["photo.png"])  # doctest: +SKIP
    >>> retriever = MultimodalStoreRetriever(store=store, k=4, modality="image")  # doctest: +SKIP
    >>> retriever.invoke("a red circle")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from mmrag.batching import EmbeddingBatcher
from mmrag.encoders.loading import load_encoder
from mmrag.encoders.presets import DEFAULT_MODEL
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageInput, ImageLimits, is_image_query, is_url, read_image_bytes
from mmrag.rerank import InputType, Reranker, RerankerSpec, describe_reranker_spec, load_reranker
from mmrag.rerank.reranker import rerank_known_modalities
from mmrag.store import Hit, Modality, MultimodalStore

if TYPE_CHECKING:
    import numpy as np

    from mmrag.encoders.base import Encoder

__all__ = ["CrossModalReranker", "LocalMultiModalEmbeddings", "MultimodalStoreRetriever", "hit_to_document"]


class LocalMultiModalEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings for texts and images from a local mmrag encoder.

    Texts and images share one vector space, so image vectors from
    :meth:`embed_image` can be searched with text vectors from
    :meth:`embed_query` and the other way round. Vectors are L2-normalised:
    use a cosine (or inner product) index.

    The model is loaded when the object is made, so the fields are frozen
    afterwards (make a new object to change them). Pass ``encoder=`` to reuse
    an encoder you already loaded (its settings then fill ``model``,
    ``device``, ``dtype`` and ``batch_size``).

    Example:
        >>> emb = LocalMultiModalEmbeddings(model="siglip2-base-224", batch_size=64)
        >>> emb.embed_query("a red circle")[:3]  # doctest: +SKIP
        >>> emb.embed_image(uris=["photo.jpg", "https://example.com/cat.png"])  # doctest: +SKIP
        >>> await emb.aembed_documents(["a", "b"])  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), use_attribute_docstrings=True)

    model: str = DEFAULT_MODEL
    """Preset alias (``mmrag.list_models()``), hub id, or local ``save_pretrained`` directory."""

    device: str | None = None
    """``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``; ``None`` picks CUDA, then MPS, then CPU."""

    dtype: str | None = None
    """``"float32"``, ``"float16"`` or ``"bfloat16"``; ``None`` picks per device (float32 on CPU)."""

    batch_size: int = Field(default=64, ge=1)
    """Most items per forward pass."""

    local_files_only: bool = False
    """Never use the network to load the model; fail unless it is local or cached."""

    batch_wait_ms: float = Field(default=2.0, ge=0.0)
    """How long the async batcher waits for concurrent calls to join a forward pass."""

    _encoder: Encoder | None = PrivateAttr(default=None)
    _batcher: EmbeddingBatcher | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, *, encoder: Encoder | None = None, **data: Any) -> None:
        """Load the model, or adopt ``encoder``.

        Args:
            encoder: An already loaded :class:`mmrag.Encoder` to reuse instead
                of loading ``model``. ``model``, ``device``, ``dtype`` and
                ``local_files_only`` cannot be passed with it; ``batch_size``
                may only repeat the encoder's own.
            **data: The fields (``model``, ``device``, ``dtype``,
                ``batch_size``, ``local_files_only``, ``batch_wait_ms``).

        Raises:
            ValueError: Both ``encoder`` and loading options were given, or a
                field is invalid.
            mmrag.ModelNotAvailableError: The model cannot be found or loaded.
            mmrag.UnsupportedModelError: The checkpoint's architecture has no family.
        """
        if encoder is not None:
            data = _fields_from_encoder(encoder, data)
        super().__init__(**data)
        self._encoder = encoder if encoder is not None else self._load()

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    # ------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder that computes the vectors (loaded on first use if needed)."""
        if self._encoder is None:  # e.g. made by model_validate, which skips __init__
            with self._lock:
                if self._encoder is None:
                    self._encoder = self._load()
        return self._encoder

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.encoder.dim

    # ------------------------------------------------------------------ sync
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts to store, in forward passes of at most ``batch_size``.

        Args:
            texts: The texts.

        Returns:
            One L2-normalised vector (list of floats) per text.

        Raises:
            TypeError: ``texts`` is a single string, or an item is not a string.
        """
        return self.encoder.embed_texts(_items(texts, "texts"), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            TypeError: ``text`` is not a string.
        """
        return self.encoder.embed_texts([_text(text)])[0].tolist()

    def embed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Embed images, in forward passes of at most ``batch_size``.

        The name and the ``uris`` keyword are what ``langchain_chroma.Chroma``
        calls in ``add_images`` and ``similarity_search_by_image``.

        Args:
            uris: Anything :func:`mmrag.resolve_image` accepts: paths, http(s)
                URLs, data URIs, base64 strings, bytes, file objects, PIL
                images or numpy arrays. The encoder's ``image_limits`` apply.

        Returns:
            One L2-normalised vector per image.

        Raises:
            TypeError: ``uris`` is a single item instead of a list.
            mmrag.ImageInputError: An image could not be resolved; the message
                names its index.
        """
        return self.encoder.embed_images(_items(uris, "uris"), batch_size=self.batch_size).tolist()

    # ----------------------------------------------------------------- async
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts without blocking the event loop; concurrent calls share forward passes.

        Args:
            texts: The texts.

        Returns:
            One L2-normalised vector per text.

        Raises:
            TypeError: ``texts`` is a single string, or an item is not a string.
            mmrag.QueueFullError: Too many items are already waiting.
        """
        return _to_lists(await self._get_batcher().aembed_texts(_items(texts, "texts")))

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query text without blocking the event loop.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            TypeError: ``text`` is not a string.
        """
        return _to_lists(await self._get_batcher().aembed_texts([_text(text)]))[0]

    async def aembed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Embed images without blocking the event loop; concurrent calls share forward passes.

        Images are fetched and decoded on the batcher's worker thread, never
        on the event loop.

        Args:
            uris: Image inputs, as for :meth:`embed_image`.

        Returns:
            One L2-normalised vector per image.

        Raises:
            TypeError: ``uris`` is a single item instead of a list.
            mmrag.ImageInputError: An image could not be resolved; the message
                names its index within this call.
        """
        return _to_lists(await self._get_batcher().aembed_images(_items(uris, "uris")))

    def close(self) -> None:
        """Stop the async batcher's worker thread (it restarts on the next async call).

        The encoder itself is left alone: it may be shared.
        """
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _load(self) -> Encoder:
        return load_encoder(
            self.model,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            local_files_only=self.local_files_only,
        )

    def _get_batcher(self) -> EmbeddingBatcher:
        batcher = self._batcher
        if batcher is None:
            encoder = self.encoder
            with self._lock:
                if self._batcher is None:
                    self._batcher = EmbeddingBatcher(
                        encoder, max_batch_items=self.batch_size, max_wait_ms=self.batch_wait_ms
                    )
                batcher = self._batcher
        return batcher


_UNSET: Any = object()


class MultimodalStoreRetriever(BaseRetriever):
    """A LangChain retriever over an :class:`mmrag.MultimodalStore`.

    Text queries come as the input (``retriever.invoke("a red circle")``); an
    image query comes as the ``image`` keyword (``retriever.invoke("",
    image="photo.png")``). ``k``, ``modality`` and ``where`` can be changed per
    call the same way, or bound in a chain with ``retriever.bind(modality="image")``.

    Each result is a :class:`~langchain_core.documents.Document` (see
    :func:`hit_to_document`): ``page_content`` is the text of a text record and
    the path or URL of an image record; ``metadata`` holds ``modality``,
    ``source``, ``score`` (cosine similarity), ``id`` and the stored metadata.

    Example:
        >>> retriever = MultimodalStoreRetriever(store=store, k=4)
        >>> docs = retriever.invoke("a red circle", modality="image")  # doctest: +SKIP
        >>> docs = retriever.invoke("", image="query.png")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", use_attribute_docstrings=True)

    store: MultimodalStore
    """The store to search."""

    k: int = Field(default=10, ge=1)
    """Most documents to return."""

    modality: Modality | None = None
    """``"image"`` or ``"text"`` to return one modality; ``None`` for both (rank-fused)."""

    where: dict[str, Any] | None = None
    """Chroma-style filter on the stored metadata, e.g. ``{"album": "2024"}``."""

    query_type: Literal["text", "auto"] = "text"
    """How the string input is read: ``"text"`` always as text; ``"auto"`` as an image
    when it is an http(s) URL, a data URI or an existing image file (the store's rule)."""

    fusion: Literal["rrf", "score"] = "rrf"
    """How two modalities are merged when ``modality`` is ``None`` (see ``MultimodalStore.search``)."""

    include_image_base64: bool = False
    """Also read each image hit's file or URL and put its bytes, base64-encoded, in
    ``metadata["image_base64"]`` (with ``metadata["image_mime_type"]``)."""

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        image: ImageInput | None = None,
        k: int | None = None,
        modality: Modality | None = _UNSET,
        where: dict[str, Any] | None = _UNSET,
    ) -> list[Document]:
        """Search the store.

        Args:
            query: The text query; leave empty (``""``) when ``image`` is given.
            run_manager: The callback manager for this run.
            image: An image query: anything :func:`mmrag.resolve_image` accepts.
            k: Most documents for this call (default: the retriever's ``k``).
            modality: ``"image"``, ``"text"`` or ``None`` (both) for this call.
            where: Metadata filter for this call (``None`` for none).

        Returns:
            Documents, best first.

        Raises:
            TypeError: ``query`` is not a string.
            ValueError: Neither or both of a text query and ``image`` were given,
                or ``k``/``modality`` is invalid.
            mmrag.ImageInputError: The image query could not be resolved.
        """
        return self._search(query, image=image, k=k, modality=modality, where=where)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        image: ImageInput | None = None,
        k: int | None = None,
        modality: Modality | None = _UNSET,
        where: dict[str, Any] | None = _UNSET,
    ) -> list[Document]:
        """Search the store on a worker thread, leaving the event loop free.

        Args:
            query: The text query; leave empty (``""``) when ``image`` is given.
            run_manager: The callback manager for this run.
            image: An image query.
            k: Most documents for this call.
            modality: ``"image"``, ``"text"`` or ``None`` (both) for this call.
            where: Metadata filter for this call.

        Returns:
            Documents, best first.
        """
        return await run_in_executor(None, self._search, query, image=image, k=k, modality=modality, where=where)

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = "mmrag"
        params["ls_embedding_provider"] = "mmrag"
        params["ls_embedding_model"] = self.store.encoder.model_id
        return params

    def _search(
        self,
        query: str,
        *,
        image: ImageInput | None,
        k: int | None,
        modality: Modality | None,
        where: dict[str, Any] | None,
    ) -> list[Document]:
        if not isinstance(query, str):
            raise TypeError(
                f"the retriever's input is a text query, got {type(query).__name__}; "
                "pass an image as invoke('', image=...)"
            )
        text = query.strip()
        if image is not None and text:
            raise ValueError("pass either a text query or image=..., not both (use invoke('', image=...))")
        if image is None and not text:
            raise ValueError("empty query: pass a text, or an image query as invoke('', image=...)")
        hits = self.store.search(
            image if image is not None else query,
            k=self.k if k is None else k,
            modality=self.modality if modality is _UNSET else modality,
            where=self.where if where is _UNSET else where,
            query_type="image" if image is not None else self.query_type,
            fusion=self.fusion,
        )
        limits = self.store.encoder.image_limits
        return [hit_to_document(hit, include_image_base64=self.include_image_base64, limits=limits) for hit in hits]


def hit_to_document(hit: Hit, *, include_image_base64: bool = False, limits: ImageLimits | None = None) -> Document:
    """Turn a store :class:`~mmrag.Hit` into a LangChain document.

    Args:
        hit: A search result.
        include_image_base64: For an image hit with a path or URL source, read
            the image and add ``metadata["image_base64"]`` (the file's bytes,
            base64) and ``metadata["image_mime_type"]``. If it cannot be read
            (file gone, URL down), ``metadata["image_error"]`` says why instead.
        limits: Limits for reading the image (default ``ImageLimits()``).

    Returns:
        A document with ``id`` set to the record id; ``page_content`` is the
        text of a text hit, the path or URL of an image hit (``""`` for images
        stored as pixels); ``metadata`` is the stored metadata plus
        ``modality``, ``source``, ``score`` and ``id``.
    """
    content = (hit.text if hit.text is not None else hit.source or "") if hit.modality == "text" else hit.source or ""
    metadata: dict[str, Any] = {
        **hit.metadata,
        "modality": hit.modality,
        "source": hit.source,
        "score": hit.score,
        "id": hit.id,
    }
    if include_image_base64 and hit.modality == "image" and hit.source:
        try:
            data = read_image_bytes(hit.source, limits=limits)
        except ImageInputError as exc:
            metadata["image_error"] = str(exc)
        else:
            if data is not None:
                metadata["image_base64"] = base64.b64encode(data).decode("ascii")
                metadata["image_mime_type"] = _mime_type(data, hit.source)
    return Document(page_content=content, metadata=metadata, id=hit.id)


# ------------------------------------------------------------------ reranking
ModelSpec = Union[RerankerSpec, Sequence[RerankerSpec], Mapping[str, RerankerSpec]]
"""What :func:`mmrag.load_reranker` takes: one model, a list, or a pair->model mapping."""


class CrossModalReranker(BaseDocumentCompressor):
    """Rerank retrieved text and image documents with an mmrag :class:`~mmrag.Reranker`.

    A LangChain document compressor: call :meth:`compress_documents`, or use it
    as the ``base_compressor`` of a ``ContextualCompressionRetriever``
    (``pip install langchain-classic``) over a :class:`MultimodalStoreRetriever`
    or any other retriever.

    * **Candidates**: a document whose ``metadata["modality"]`` is ``"image"``
      (what :class:`MultimodalStoreRetriever` returns) is scored as an image,
      read from ``metadata["image_base64"]`` if present, else
      ``metadata["source"]`` (path or URL), else ``page_content`` (a path, URL,
      data URI or base64). Every other document is the text ``page_content``.
    * **Query**: ``query`` is read by ``query_type``: ``"text"`` (default)
      always a text; ``"auto"`` an image when it is an http(s) URL, a data URI
      or an existing image file; ``"image"`` always an image. Or pass an image
      directly: ``compress_documents(docs, "", image=...)``.
    * **Output**: copies of the documents, best first, at most ``top_n``, with
      ``metadata["relevance_score"]``: the reranker's match probability in
      ``[0, 1]`` (see :mod:`mmrag.rerank`). Everything else in the metadata
      stays, including the first-stage ``score``.

    **Image queries through** ``ContextualCompressionRetriever``: it hands the
    compressor the query string only (an ``image=`` keyword reaches the base
    retriever but not the compressor). Give the image *as the query string*
    (a path, http(s) URL or data URI) and set ``query_type="auto"`` on both
    the :class:`MultimodalStoreRetriever` and this reranker:
    ``ContextualCompressionRetriever(base_compressor=CrossModalReranker(...,
    query_type="auto"), base_retriever=MultimodalStoreRetriever(...,
    query_type="auto")).invoke("photos/cat.png")``.

    All documents go to the reranker in **one** scoring call, texts and images
    mixed, batched per backend (``ceil(n / batch_size)`` model calls per
    modality); only when a text would be misread as an image (e.g. a text that
    is just an http URL) are the two modalities scored in two calls.

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever
        >>> reranker = CrossModalReranker(model=["blip-itm-base-coco", "bge-reranker-base"], top_n=3)
        >>> retriever = ContextualCompressionRetriever(
        ...     base_compressor=reranker, base_retriever=MultimodalStoreRetriever(store=store, k=20))  # doctest: +SKIP
        >>> docs = retriever.invoke("a dog on the beach")  # doctest: +SKIP
        >>> docs[0].metadata["relevance_score"], docs[0].metadata["score"]  # doctest: +SKIP
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        extra="forbid",
        protected_namespaces=(),
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    model: str | list[str] | dict[str, str] | None = None
    """What the reranker was loaded from (alias, hub id or path; a list or a pair->model mapping)."""

    device: str | None = None
    """Device the model was loaded on; ``None``: CUDA, then MPS, then CPU."""

    dtype: str | None = None
    """Weight dtype the model was loaded with; ``None``: float16 on a GPU, float32 on CPU."""

    batch_size: int = Field(default=32, ge=1)
    """Most (query, candidate) pairs per model call."""

    top_n: int | None = Field(default=None, ge=0)
    """Most documents to return; ``None`` keeps all, reordered."""

    query_type: Literal["text", "auto", "image"] = "text"
    """How the query string is read: always a text, by the image rule (``"auto"``), or always an image."""

    local_files_only: bool = False
    """Never use the network to load the model."""

    _reranker: Reranker | None = PrivateAttr(default=None)
    _owns_reranker: bool = PrivateAttr(default=False)

    def __init__(self, *, reranker: Reranker | None = None, model: ModelSpec | None = None, **data: Any) -> None:
        """Load the reranker, or adopt ``reranker``.

        Args:
            reranker: A loaded :class:`~mmrag.Reranker` (it may be shared).
                ``device``, ``dtype`` and ``local_files_only`` cannot be passed
                with it; ``batch_size`` defaults to its own.
            model: Instead of ``reranker``: what :func:`mmrag.load_reranker`
                takes, e.g. ``"blip-itm-base-coco"``, a list such as
                ``["blip-itm-base-coco", "bge-reranker-base"]``, or a local directory.
            **data: The other fields (``device``, ``dtype``, ``batch_size``,
                ``top_n``, ``query_type``, ``local_files_only``).

        Raises:
            ValueError: Neither or both of ``reranker`` and ``model``, loading
                options with ``reranker``, or an invalid field.
            mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.
        """
        if (reranker is None) == (model is None):
            raise ValueError("pass either reranker= (a loaded mmrag.Reranker) or model= (what load_reranker takes)")
        if reranker is not None:
            clashing = sorted(key for key in ("device", "dtype", "local_files_only") if key in data)
            if clashing:
                raise ValueError(
                    f"pass either reranker= or loading options, not both (got reranker and {', '.join(clashing)}); "
                    "pass them to mmrag.load_reranker instead"
                )
            data.setdefault("batch_size", reranker.batch_size)
            super().__init__(model={pair: b.model_id for pair, b in reranker.routes.items()}, **data)
            self._reranker, self._owns_reranker = reranker, False
        else:
            super().__init__(model=describe_reranker_spec(model), **data)  # validates the fields before loading
            self._reranker = load_reranker(
                model,  # type: ignore[arg-type]
                device=self.device,
                dtype=self.dtype,
                batch_size=self.batch_size,
                local_files_only=self.local_files_only,
            )
            self._owns_reranker = True

    @property
    def reranker(self) -> Reranker:
        """The mmrag reranker doing the scoring."""
        if self._reranker is None:  # made by model_validate, which skips __init__
            raise ValueError("this CrossModalReranker has no reranker: build it with reranker= or model=")
        return self._reranker

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        image: ImageInput | None = None,
    ) -> list[Document]:
        """Rerank documents for a text or image query.

        Args:
            documents: Retrieved documents, texts and images mixed.
            query: The query text (read by ``query_type``); ``""`` when ``image`` is given.
            callbacks: Accepted for the LangChain interface; not used.
            image: An image query: anything :func:`mmrag.resolve_image` accepts.

        Returns:
            Copies of the best documents, best first, with ``metadata["relevance_score"]``.

        Raises:
            TypeError: ``query`` is not a string.
            ValueError: Neither or both of a text query and ``image``; an image
                document with nothing to read (e.g. stored as pixels).
            mmrag.UnsupportedPairError: No backend serves a needed modality pair.
            mmrag.ImageInputError: The query or a document image could not be read.
        """
        docs = list(documents)
        rerank_query, query_type = self._query(query, image)
        if not docs:
            return []
        candidates = [_document_candidate(doc, i) for i, doc in enumerate(docs)]
        ranked = rerank_known_modalities(
            self.reranker,
            rerank_query,
            query_type,
            [item for item, _ in candidates],
            [modality for _, modality in candidates],
            self.top_n,
            self.batch_size,
        )
        return [
            docs[item.index].model_copy(
                update={"metadata": {**docs[item.index].metadata, "relevance_score": item.score}}
            )
            for item in ranked
        ]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        image: ImageInput | None = None,
    ) -> list[Document]:
        """:meth:`compress_documents` on a worker thread, leaving the event loop free.

        Args:
            documents: Retrieved documents.
            query: The query text; ``""`` when ``image`` is given.
            callbacks: Accepted for the LangChain interface; not used.
            image: An image query.

        Returns:
            Copies of the best documents, best first, with ``metadata["relevance_score"]``.
        """
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks, image=image)

    def close(self) -> None:
        """Stop the reranker's prefetch threads, if this object loaded it (it stays usable)."""
        if self._owns_reranker and self._reranker is not None:
            self._reranker.close()

    def _query(self, query: Any, image: ImageInput | None) -> tuple[Any, InputType]:
        if not isinstance(query, str):
            raise TypeError(f"the query must be a string, got {type(query).__name__}; pass an image as image=...")
        if image is not None:
            if query.strip():
                raise ValueError("pass either a text query or image=..., not both")
            return image, "image"
        if not query.strip():
            raise ValueError(
                "empty query: pass a text, or an image as compress_documents(docs, '', image=...). Inside "
                "ContextualCompressionRetriever, which hands the compressor only the query string, pass the "
                "image's path or URL as the query and set query_type='auto' on the retriever and the reranker"
            )
        return query, self.query_type


def _document_candidate(doc: Document, index: int) -> tuple[Any, Modality]:
    """What the reranker scores for a document, and as which modality.

    Images are returned as non-strings (``Path``, ``bytes``) or http(s)/data URLs
    where possible, so the reranker's ``"auto"`` rule reads them as images.
    """
    metadata = doc.metadata or {}
    if metadata.get("modality") != "image":
        return doc.page_content, "text"
    encoded = metadata.get("image_base64")
    if isinstance(encoded, str) and encoded:
        try:
            return base64.b64decode(encoded, validate=True), "image"
        except (binascii.Error, ValueError):
            pass
    source = metadata.get("source")
    if isinstance(source, str) and source.strip():
        return _image_string(source, may_be_base64=False), "image"
    if isinstance(source, os.PathLike):
        return source, "image"
    if doc.page_content.strip():
        return _image_string(doc.page_content, may_be_base64=True), "image"
    name = f" (id {doc.id!r})" if doc.id else ""
    raise ValueError(
        f"document {index}{name} is an image with no image_base64, source or page_content to read it from "
        "(images stored as pixels cannot be reranked: store them by path or URL)"
    )


def _image_string(text: str, *, may_be_base64: bool) -> Any:
    """An image reference as the reranker should get it.

    http(s) URLs and data URIs stay strings; base64 (where allowed) becomes
    bytes; anything else is a path, passed as ``Path`` (always read as an image).
    """
    stripped = text.strip()
    if is_url(stripped) or stripped[:5].lower() == "data:":
        return stripped
    if may_be_base64 and not is_image_query(stripped):
        try:
            return base64.b64decode("".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    return Path(stripped)


# --------------------------------------------------------------------- helpers
def _fields_from_encoder(encoder: Encoder, data: dict[str, Any]) -> dict[str, Any]:
    clashing = sorted(key for key in ("model", "device", "dtype", "local_files_only") if key in data)
    if clashing:
        raise ValueError(
            f"pass either encoder= or loading options, not both (got encoder and {', '.join(clashing)}); "
            "the encoder is already loaded"
        )
    if "batch_size" in data and data["batch_size"] != encoder.batch_size:
        raise ValueError(
            f"batch_size={data['batch_size']} differs from the encoder's batch_size={encoder.batch_size}; "
            "load the encoder with the batch size you want, or leave batch_size out"
        )
    return {
        **data,
        "model": encoder.model_id,
        "device": str(encoder.device),
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "batch_size": encoder.batch_size,
    }


def _items(items: Any, name: str) -> list[Any]:
    """``items`` as a list, refusing a single item (which ``list()`` would split up)."""
    single = isinstance(items, (str, bytes, bytearray, memoryview, os.PathLike))
    single = single or (type(items).__module__ == "numpy" and getattr(items, "ndim", 0) < 4)
    if single or type(items).__module__.startswith("PIL.") or not hasattr(items, "__iter__"):
        raise TypeError(f"{name} must be a list, not a single {type(items).__name__}; wrap it in a list")
    return list(items)


def _text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return text


def _to_lists(vectors: np.ndarray) -> list[list[float]]:
    return vectors.tolist()


def _mime_type(data: bytes, source: str) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            mime = Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError):
        mime = None
    return mime or mimetypes.guess_type(source)[0] or "application/octet-stream"
