"""``MultimodalStoreRetriever``: a LangChain retriever over an mmrag store, for text and image queries."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, field_validator

from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput
from mmrag.langchain._documents import hit_to_document
from mmrag.store import MultimodalStore, StoredModality

__all__ = ["MultimodalStoreRetriever"]

_UNSET: Any = object()


class MultimodalStoreRetriever(BaseRetriever):
    """A LangChain retriever over an :class:`mmrag.MultimodalStore`.

    Text queries come as the input (``retriever.invoke("a red circle")``); an
    image query comes as the ``image`` keyword (``retriever.invoke("",
    image="photo.png")``); both together are a composed query
    (``retriever.invoke("make it red", image="shoe.jpg")``: the encoder's
    fused vector of the two, see ``MultimodalStore.search``). ``k``, ``modality`` and ``where`` can be changed per
    call the same way, or bound in a chain with ``retriever.bind(modality="image")``.
    ``search_kwargs={"k": 4, "filter": {...}}`` works as on LangChain's own
    ``vectorstore.as_retriever(search_kwargs=...)``.

    Each result is a :class:`~langchain_core.documents.Document` (see
    :func:`hit_to_document`): ``page_content`` is the text of a text record and
    the path or URL of an image record; ``metadata`` holds ``modality``,
    ``source``, ``score`` (cosine similarity), ``id`` and the stored metadata.
    An image-text pair (``modality="pair"``) has its text as ``page_content``
    and its image's path or URL as ``source``.

    Example:
        >>> retriever = MultimodalStoreRetriever(store=store, k=4)
        >>> docs = retriever.invoke("a red circle", modality="image")  # doctest: +SKIP
        >>> docs = retriever.invoke("", image="query.png")  # doctest: +SKIP
        >>> docs = retriever.invoke("make it red", image="shoe.jpg")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", use_attribute_docstrings=True)

    store: MultimodalStore
    """The store to search."""

    k: int = Field(default=10, ge=1)
    """Most documents to return."""

    modality: StoredModality | None = None
    """``"image"``, ``"text"`` or ``"pair"`` to return one modality; ``None`` for all (rank-fused)."""

    where: dict[str, Any] | None = None
    """Chroma-style filter on the stored metadata, e.g. ``{"album": "2024"}``."""

    query_type: Literal["text", "auto"] = "text"
    """How the string input is read: ``"text"`` always as text; ``"auto"`` as an image
    when it is an http(s) URL, a data URI or an existing image file (the store's rule)."""

    fusion: Literal["rrf", "score"] = "rrf"
    """How two modalities are merged when ``modality`` is ``None`` (see ``MultimodalStore.search``)."""

    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Search arguments as LangChain's ``VectorStoreRetriever`` takes them: ``k``,
    ``filter`` (or ``where``) and ``modality``. They win over the fields of the same
    meaning; the arguments of one call win over both."""

    include_image_base64: bool = False
    """Also read each image hit's file or URL and put its bytes, base64-encoded, in
    ``metadata["image_base64"]`` (with ``metadata["image_mime_type"]``)."""

    @field_validator("search_kwargs")
    @classmethod
    def _known_search_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        _search_arguments(value)
        return value

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        image: ImageInput | None = None,
        k: int | None = None,
        modality: StoredModality | None = _UNSET,
        where: dict[str, Any] | None = _UNSET,
    ) -> list[Document]:
        """Search the store.

        Args:
            query: The text query; leave empty (``""``) for an ``image`` query
                alone, or give both for a composed query.
            run_manager: The callback manager for this run.
            image: An image query: anything :func:`mmrag.resolve_image` accepts.
            k: Most documents for this call (default: the retriever's ``k``).
            modality: ``"image"``, ``"text"``, ``"pair"`` or ``None`` (all) for this call.
            where: Metadata filter for this call (``None`` for none).

        Returns:
            Documents, best first.

        Raises:
            mmrag.TextInputError: ``query`` is not a string (also a ``TypeError``).
            mmrag.InvalidInputError: Neither a text query nor ``image`` was given,
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
        modality: StoredModality | None = _UNSET,
        where: dict[str, Any] | None = _UNSET,
    ) -> list[Document]:
        """Search the store on a worker thread, leaving the event loop free.

        Args:
            query: The text query (empty for an ``image`` query alone).
            run_manager: The callback manager for this run.
            image: An image query (composed with a non-empty ``query``).
            k: Most documents for this call.
            modality: ``"image"``, ``"text"``, ``"pair"`` or ``None`` (all) for this call.
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
        modality: StoredModality | None,
        where: dict[str, Any] | None,
    ) -> list[Document]:
        if not isinstance(query, str):
            raise TextInputError(
                f"the retriever's input is a text query, got {type(query).__name__}; "
                "pass an image as invoke('', image=...)"
            )
        text = query.strip()
        if image is None and not text:
            raise InvalidInputError("empty query: pass a text, or an image query as invoke('', image=...)")
        composed = image is not None and bool(text)  # "make it red" + image: one fused query vector
        given = _search_arguments(self.search_kwargs)
        hits = self.store.search(
            query if image is None or composed else image,
            image=image if composed else None,
            k=given.get("k", self.k) if k is None else k,
            modality=given.get("modality", self.modality) if modality is _UNSET else modality,
            where=given.get("where", self.where) if where is _UNSET else where,
            query_type="text" if composed else "image" if image is not None else self.query_type,
            fusion=self.fusion,
        )
        limits = self.store.encoder.image_limits
        return [hit_to_document(hit, include_image_base64=self.include_image_base64, limits=limits) for hit in hits]


def _search_arguments(search_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``search_kwargs`` checked, with ``filter`` under mmrag's name ``where``."""
    unknown = sorted(set(search_kwargs) - {"k", "filter", "where", "modality"})
    if unknown:
        raise InvalidInputError(
            f"search_kwargs takes k, filter (or where) and modality; got {', '.join(map(repr, unknown))}"
        )
    if "filter" in search_kwargs and "where" in search_kwargs:
        raise InvalidInputError("search_kwargs: pass filter or where (the same thing), not both")
    given = dict(search_kwargs)
    if "filter" in given:
        given["where"] = given.pop("filter")
    k = given.get("k")
    if "k" in given and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidInputError(f"search_kwargs: k must be an int of at least 1, got {k!r}")
    if given.get("modality") not in (None, "image", "text", "pair"):
        modality = given["modality"]
        raise InvalidInputError(f"search_kwargs: modality must be 'image', 'text', 'pair' or None, got {modality!r}")
    return given
