"""``multimodal_index``: a ``MultiModalVectorStoreIndex`` with one mmrag model for texts and images, in one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import Document, TransformComponent
from llama_index.core.storage.storage_context import StorageContext

from mmrag.errors import InvalidInputError
from mmrag.llama_index._transform import without_file_path
from mmrag.llama_index.embeddings import LocalMultiModalEmbedding
from mmrag.options import LoadOptions

__all__ = ["multimodal_index"]


def multimodal_index(
    documents: Sequence[Document],
    *,
    model: str | os.PathLike[str] | None = None,
    embed_model: MultiModalEmbedding | None = None,
    storage_context: StorageContext | None = None,
    options: LoadOptions | None = None,
    embed_file_path: bool = False,
    show_progress: bool = False,
    callback_manager: CallbackManager | None = None,
    transformations: list[TransformComponent] | None = None,
    **kwargs: Any,
) -> MultiModalVectorStoreIndex:
    """Build a ``MultiModalVectorStoreIndex`` whose texts and images are embedded by one mmrag model.

    ``MultiModalVectorStoreIndex.from_documents(documents)`` alone embeds images
    with ``image_embed_model="clip:ViT-B/32"``, which needs the
    ``llama-index-embeddings-clip`` package (and OpenAI's ``clip``) and fails
    without it; and it embeds texts with another model than images, so
    text-to-image search compares two vector spaces. This helper passes the same
    model as ``embed_model`` and ``image_embed_model``, and by default keeps
    ``file_path`` metadata out of the embedded text of text documents (a path
    would fill most of the text window: all 32 tokens of the ``demo`` model).

    Args:
        documents: Documents, e.g. from ``SimpleDirectoryReader(folder).load_data()``
            (``ImageDocument`` for images, ``Document`` for texts). They are not
            changed: a text document that needs it is copied.
        model: What :class:`LocalMultiModalEmbedding` loads (a preset alias, hub
            id or local directory); default ``"siglip2-base-224"``. Not with ``embed_model``.
        embed_model: A multimodal embedding already made (e.g. a
            :class:`LocalMultiModalEmbedding` shared with retrievers); not with ``model``.
        storage_context: Where the index lives (e.g. with Chroma ``vector_store``
            and ``image_store``); default: in memory.
        options: How to load ``model`` (:class:`mmrag.LoadOptions`); only with ``model``.
        embed_file_path: Keep ``file_path`` in the embedded text of text documents.
        show_progress: Show LlamaIndex's progress bars.
        callback_manager: LlamaIndex callback manager.
        transformations: Node parsers to run before embedding (default: LlamaIndex's ``Settings.transformations``).
        **kwargs: Other arguments of ``MultiModalVectorStoreIndex.from_documents``
            (``use_async``, ``store_nodes_override``, ``is_image_to_text``...).

    Returns:
        The index; ``index.as_retriever(similarity_top_k=..., image_similarity_top_k=...)``
        searches both ways.

    Raises:
        mmrag.InvalidInputError: Both ``model`` and ``embed_model``, ``options``
            with ``embed_model``, or ``image_embed_model`` in ``kwargs``.

    Example:
        >>> from llama_index.core import SimpleDirectoryReader
        >>> from mmrag.llama_index import multimodal_index
        >>> index = multimodal_index(SimpleDirectoryReader("photos/").load_data(), model="demo")  # doctest: +SKIP
        >>> index.as_retriever(image_similarity_top_k=3).text_to_image_retrieve("a red circle")  # doctest: +SKIP
    """
    if "image_embed_model" in kwargs:
        raise InvalidInputError(
            "multimodal_index embeds texts and images with one model: pass it as model= or embed_model=, "
            "not image_embed_model= (for two models call MultiModalVectorStoreIndex.from_documents)"
        )
    if embed_model is not None and (model is not None or options is not None):
        given = "model" if model is not None else "options"
        raise InvalidInputError(f"pass either embed_model= or {given}=, not both: embed_model is already loaded")
    if embed_model is None:
        embed_model = LocalMultiModalEmbedding(model, options=options)
    if not embed_file_path:
        documents = [without_file_path(doc) for doc in documents]
    return MultiModalVectorStoreIndex.from_documents(
        documents,
        storage_context=storage_context,
        show_progress=show_progress,
        callback_manager=callback_manager,
        transformations=transformations,
        embed_model=embed_model,
        image_embed_model=embed_model,
        **kwargs,
    )
