"""The embedding as a LlamaIndex transformation: image nodes to the image tower, text nodes to the text tower.

``BaseEmbedding.__call__`` (what ``IngestionPipeline`` and
``from_documents(transformations=[...])`` run) embeds every node's text, an
``ImageNode`` included: its vector would then be a text vector of its
metadata, far from its image. These functions route each node by what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import BaseNode, MetadataMode

from mmrag.inputs import ImageInput
from mmrag.llama_index._nodes import node_image

__all__ = ["FILE_PATH", "aembed_nodes", "embed_nodes", "without_file_path"]

FILE_PATH = "file_path"
"""The metadata key ``SimpleDirectoryReader`` leaves in the embedded text of every node."""

_Node = TypeVar("_Node", bound=BaseNode)


def without_file_path(node: _Node) -> _Node:
    """``node``, or a copy whose embedded text leaves out its ``file_path`` metadata.

    Args:
        node: A node or document; image nodes come back unchanged (their image is embedded).

    Returns:
        The node itself when there is nothing to leave out, else a shallow copy
        with ``file_path`` added to ``excluded_embed_metadata_keys``.
    """
    excluded = node.excluded_embed_metadata_keys
    if node_image(node) is not None or FILE_PATH not in node.metadata or FILE_PATH in excluded:
        return node
    return node.model_copy(update={"excluded_embed_metadata_keys": [*excluded, FILE_PATH]})


def embed_nodes(
    embedding: MultiModalEmbedding, nodes: Sequence[BaseNode], *, embed_file_path: bool, show_progress: bool = False
) -> Sequence[BaseNode]:
    """Set ``node.embedding`` on every node: image nodes from their image, others from their text.

    Args:
        embedding: The model.
        nodes: The nodes; changed in place.
        embed_file_path: Keep ``file_path`` metadata in the embedded text of text nodes.
        show_progress: Show LlamaIndex's progress bars.

    Returns:
        ``nodes``.
    """
    images, texts = _split(nodes, embed_file_path)
    if texts:
        vectors = embedding.get_text_embedding_batch([text for _, text in texts], show_progress=show_progress)
        _assign(nodes, [index for index, _ in texts], vectors)
    if images:
        inputs: list[Any] = [image for _, image in images]  # Any: LlamaIndex types them str | BytesIO
        vectors = embedding.get_image_embedding_batch(inputs, show_progress=show_progress)
        _assign(nodes, [index for index, _ in images], vectors)
    return nodes


async def aembed_nodes(
    embedding: MultiModalEmbedding, nodes: Sequence[BaseNode], *, embed_file_path: bool, show_progress: bool = False
) -> Sequence[BaseNode]:
    """Async form of :func:`embed_nodes`.

    Args:
        embedding: The model.
        nodes: The nodes; changed in place.
        embed_file_path: Keep ``file_path`` metadata in the embedded text of text nodes.
        show_progress: Show LlamaIndex's progress bars.

    Returns:
        ``nodes``.
    """
    images, texts = _split(nodes, embed_file_path)
    if texts:
        vectors = await embedding.aget_text_embedding_batch([text for _, text in texts], show_progress=show_progress)
        _assign(nodes, [index for index, _ in texts], vectors)
    if images:
        inputs: list[Any] = [image for _, image in images]  # Any: LlamaIndex types them str | BytesIO
        vectors = await embedding.aget_image_embedding_batch(inputs, show_progress=show_progress)
        _assign(nodes, [index for index, _ in images], vectors)
    return nodes


def _split(
    nodes: Sequence[BaseNode], embed_file_path: bool
) -> tuple[list[tuple[int, ImageInput]], list[tuple[int, str]]]:
    images: list[tuple[int, ImageInput]] = []
    texts: list[tuple[int, str]] = []
    for index, node in enumerate(nodes):
        image = node_image(node)
        if image is not None:
            images.append((index, image))
        else:
            embedded = node if embed_file_path else without_file_path(node)
            texts.append((index, embedded.get_content(metadata_mode=MetadataMode.EMBED)))
    return images, texts


def _assign(nodes: Sequence[BaseNode], indices: list[int], vectors: list[list[float]]) -> None:
    for index, vector in zip(indices, vectors, strict=True):
        nodes[index].embedding = vector
