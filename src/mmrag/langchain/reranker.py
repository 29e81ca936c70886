"""``CrossModalReranker``: a LangChain document compressor that reranks text and image documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from mmrag.components import recorded_options, reranker_from, reranker_label
from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput
from mmrag.langchain._documents import document_candidate
from mmrag.options import LoadOptions
from mmrag.rerank import InputType, Reranker, RerankerModels, rerank_known_modalities

__all__ = ["CrossModalReranker"]


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

    def __init__(
        self,
        *,
        reranker: Reranker | None = None,
        model: RerankerModels | None = None,
        options: LoadOptions | None = None,
        **data: Any,
    ) -> None:
        """Load the reranker, or adopt ``reranker``.

        Args:
            reranker: A loaded :class:`~mmrag.Reranker` (it may be shared).
                ``options`` and loading options cannot be passed with it;
                ``batch_size`` defaults to its own.
            model: Instead of ``reranker``: what :func:`mmrag.load_reranker`
                takes, e.g. ``"blip-itm-base-coco"``, a list such as
                ``["blip-itm-base-coco", "bge-reranker-base"]``, or a local directory.
            options: How to load ``model`` (:class:`mmrag.LoadOptions`).
            **data: The other fields (``batch_size``, ``top_n``,
                ``query_type``) and, with ``model``, any
                :class:`mmrag.LoadOptions` field (``device``, ``dtype``,
                ``local_files_only``...), applied on top of ``options``.

        Raises:
            mmrag.InvalidInputError: Neither or both of ``reranker`` and
                ``model``, or loading options with ``reranker``.
            pydantic.ValidationError: A field is invalid or unknown.
            mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.
        """
        batch_size = data.pop("batch_size", None)  # a field and an option: pairs per model call
        loaded, opts = reranker_from(reranker, model, options, data, batch_size=batch_size)
        super().__init__(
            model=reranker_label(loaded, model),
            batch_size=loaded.batch_size if batch_size is None else batch_size,
            **(recorded_options(opts) if opts is not None else {}),
            **data,
        )
        self._reranker, self._owns_reranker = loaded, opts is not None

    @property
    def reranker(self) -> Reranker:
        """The mmrag reranker doing the scoring."""
        if self._reranker is None:  # made by model_validate, which skips __init__
            raise InvalidInputError("this CrossModalReranker has no reranker: build it with reranker= or model=")
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
            mmrag.TextInputError: ``query`` is not a string (also a ``TypeError``).
            mmrag.InvalidInputError: Neither or both of a text query and ``image``; an image
                document with nothing to read (e.g. stored as pixels).
            mmrag.UnsupportedPairError: No backend serves a needed modality pair.
            mmrag.ImageInputError: The query or a document image could not be read.
        """
        docs = list(documents)
        rerank_query, query_type = self._query(query, image)
        if not docs:
            return []
        candidates = [document_candidate(doc, i) for i, doc in enumerate(docs)]
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
            raise TextInputError(f"the query must be a string, got {type(query).__name__}; pass an image as image=...")
        if image is not None:
            if query.strip():
                raise InvalidInputError("pass either a text query or image=..., not both")
            return image, "image"
        if not query.strip():
            raise InvalidInputError(
                "empty query: pass a text, or an image as compress_documents(docs, '', image=...). Inside "
                "ContextualCompressionRetriever, which hands the compressor only the query string, pass the "
                "image's path or URL as the query and set query_type='auto' on the retriever and the reranker"
            )
        return query, self.query_type
