"""LlamaIndex adapter: a local multimodal embedding model, a retriever over a store, and a reranker.

Needs ``llama-index-core`` (``pip install "mmrag[llama-index]"``); importing
this package without it raises :class:`mmrag.MissingDependencyError`.

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
  pixels), texts as ``TextNode`` (see :func:`hit_to_node`).
* :func:`multimodal_index` builds a ``MultiModalVectorStoreIndex`` with one
  :class:`LocalMultiModalEmbedding` for texts and images in one call (without
  ``image_embed_model=`` LlamaIndex wants ``llama-index-embeddings-clip``).
  :func:`filters_to_where` turns LlamaIndex ``MetadataFilters`` into a Chroma
  ``where`` (the retriever takes either).
* :class:`CrossModalReranker` is a ``BaseNodePostprocessor`` that rescores
  retrieved ``ImageNode`` and ``TextNode`` results with an mmrag
  :class:`~mmrag.Reranker` (BLIP / BLIP-2 ITM, bge cross-encoders, dual
  encoders), for a text or an image query, in one batched scoring call.

The classes that load a model take ``options=`` (a :class:`mmrag.LoadOptions`)
and any of its fields as keywords (``device="cpu"``, ``local_files_only=True``...).

Example:
    >>> from llama_index.core import SimpleDirectoryReader
    >>> from mmrag.llama_index import LocalMultiModalEmbedding, multimodal_index
    >>> embed = LocalMultiModalEmbedding(model="demo")  # or model_name=, as ClipEmbedding takes it
    >>> docs = SimpleDirectoryReader("photos/").load_data()  # doctest: +SKIP
    >>> index = multimodal_index(docs, embed_model=embed)  # embed_model and image_embed_model  # doctest: +SKIP
    >>> index.as_retriever().text_to_image_retrieve("a red circle")  # doctest: +SKIP
"""

from __future__ import annotations

from mmrag.errors import MissingDependencyError

try:
    import llama_index.core  # noqa: F401 - imported first, to name the extra when it is missing
except ImportError as exc:
    raise MissingDependencyError.for_extra("llama-index", "mmrag.llama_index", exc.name or "llama_index.core") from exc

from mmrag.llama_index._nodes import hit_to_node
from mmrag.llama_index.embeddings import LocalMultiModalEmbedding
from mmrag.llama_index.filters import filters_to_where
from mmrag.llama_index.index import multimodal_index
from mmrag.llama_index.reranker import RETRIEVAL_SCORE_KEY, CrossModalReranker
from mmrag.llama_index.retriever import MultimodalStoreRetriever

__all__ = [
    "RETRIEVAL_SCORE_KEY",
    "CrossModalReranker",
    "LocalMultiModalEmbedding",
    "MultimodalStoreRetriever",
    "filters_to_where",
    "hit_to_node",
    "multimodal_index",
]
