"""LangChain adapter: mmrag encoders as LangChain embeddings, a retriever over a store, and a reranker.

Needs ``langchain-core`` (``pip install "mmrag[langchain]"``); importing this
package without it raises :class:`mmrag.MissingDependencyError`.

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
  and image queries (``invoke("", image="photo.png")``); results are
  documents made by :func:`hit_to_document`.
* :class:`CacheBackedMultiModalEmbeddings`: LangChain's
  ``CacheBackedEmbeddings`` (package ``langchain-classic``) with
  ``embed_image``, so ``Chroma.add_images`` keeps using the cached model and
  image vectors are cached too (imported on first use).
* :class:`CrossModalReranker`: a LangChain
  :class:`~langchain_core.documents.BaseDocumentCompressor` that reranks
  retrieved text and image documents with an mmrag :class:`~mmrag.Reranker`,
  e.g. as the ``base_compressor`` of a ``ContextualCompressionRetriever``
  (package ``langchain-classic``).

The classes that load a model take ``options=`` (a :class:`mmrag.LoadOptions`)
and any of its fields as keywords (``device="cpu"``, ``local_files_only=True``...).

Example:
    >>> from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever
    >>> emb = LocalMultiModalEmbeddings(model="demo")
    >>> emb.embed_image(uris=["photo.png"])  # doctest: +SKIP
    >>> retriever = MultimodalStoreRetriever(store=store, k=4, modality="image")  # doctest: +SKIP
    >>> retriever.invoke("a red circle")  # doctest: +SKIP
"""

from __future__ import annotations

from mmrag.errors import MissingDependencyError

try:
    import langchain_core  # noqa: F401 - imported first, to name the extra when it is missing
except ImportError as exc:
    raise MissingDependencyError.for_extra("langchain", "mmrag.langchain", exc.name or "langchain_core") from exc

from typing import TYPE_CHECKING, Any

from mmrag.langchain._documents import hit_to_document
from mmrag.langchain.embeddings import LocalMultiModalEmbeddings
from mmrag.langchain.reranker import CrossModalReranker
from mmrag.langchain.retriever import MultimodalStoreRetriever

if TYPE_CHECKING:
    from mmrag.langchain.cache import CacheBackedMultiModalEmbeddings

__all__ = [
    "CacheBackedMultiModalEmbeddings",
    "CrossModalReranker",
    "LocalMultiModalEmbeddings",
    "MultimodalStoreRetriever",
    "hit_to_document",
]


def __getattr__(name: str) -> Any:
    """``CacheBackedMultiModalEmbeddings`` is imported on first use: it needs ``langchain-classic`` too."""
    if name == "CacheBackedMultiModalEmbeddings":
        from mmrag.langchain.cache import CacheBackedMultiModalEmbeddings

        return CacheBackedMultiModalEmbeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
