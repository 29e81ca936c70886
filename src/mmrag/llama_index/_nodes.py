"""Converters between mmrag values and LlamaIndex nodes and query bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    QueryType,
    TextNode,
)

from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput, Modality, decode_base64_image, is_url
from mmrag.rerank import InputType
from mmrag.store import Hit

__all__ = ["hit_to_node"]


def hit_to_node(hit: Hit) -> NodeWithScore:
    """Turn a store hit into a LlamaIndex ``NodeWithScore``.

    Args:
        hit: A :class:`mmrag.Hit`.

    Returns:
        A ``NodeWithScore`` whose node id is ``hit.id`` and score ``hit.score``:
        an ``ImageNode`` (``image_path`` for files, ``image_url`` for URLs; no
        pixels) for images, and for image-text pairs with the pair's text as
        its text; a ``TextNode`` for texts. The metadata holds
        ``modality``, ``source`` and ``hit.metadata``; ``modality`` (and a
        ``source`` that merely repeats the text) is hidden from the LLM and
        from embedding.
    """
    metadata: dict[str, Any] = {
        **hit.metadata,
        "modality": hit.modality,
        "source": hit.source,
    }
    hidden = ["modality"]
    if hit.modality in ("image", "pair"):
        url = hit.source if hit.source and is_url(hit.source) else None
        path = hit.source if hit.source and url is None else None
        node: TextNode = ImageNode(
            id_=hit.id,
            text=(hit.text or "") if hit.modality == "pair" else "",
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


# ------------------------------------------------------------------ queries
def text_of(query: QueryType | ImageInput) -> str:
    """The text of a text query (a string, or a bundle's ``query_str``); anything else is refused."""
    if isinstance(query, QueryBundle):
        return query.query_str
    if not isinstance(query, str):
        raise TextInputError(f"a text query must be a str or QueryBundle, got {type(query).__name__}")
    return query


def image_of(query: QueryType | ImageInput) -> ImageInput:
    """The image of an image query: a bundle's ``image_path`` (else its text), or the input itself."""
    if isinstance(query, QueryBundle):
        if query.image_path:
            return query.image_path
        if query.query_str:
            return query.query_str
        raise InvalidInputError("an image query needs a QueryBundle with image_path (or an image path or URL)")
    return query


def query_of(bundle: QueryBundle) -> tuple[str | ImageInput, Modality]:
    """A bundle with ``image_path`` is an image query; any other bundle a text query."""
    if bundle.image_path:
        return bundle.image_path, "image"
    return bundle.query_str, "text"


def composed_of(bundle: QueryBundle) -> tuple[str, ImageInput] | None:
    """``(text, image)`` of a composed query: a bundle with both ``image_path`` and a non-blank ``query_str``."""
    if bundle.image_path and isinstance(bundle.query_str, str) and bundle.query_str.strip():
        return bundle.query_str, bundle.image_path
    return None


def rerank_query(bundle: QueryBundle | None) -> tuple[str, InputType]:
    """The query the reranker scores against: the bundle's image if it has one, else its (non-empty) text."""
    if bundle is None:
        raise InvalidInputError("CrossModalReranker needs a query: pass query_str=... or a QueryBundle")
    query, kind = query_of(bundle)
    if kind == "text" and (not isinstance(query, str) or not query.strip()):
        raise InvalidInputError("empty query: rerank for a text (query_str) or an image (QueryBundle(image_path=...))")
    return str(query), kind


# --------------------------------------------------------------- candidates
def node_image(node: BaseNode) -> ImageInput | None:
    """The image a node carries, as an input the encoder and the reranker read; ``None`` for a text node.

    An ``ImageNode``'s base64 ``image`` comes back as bytes, its ``image_path`` as
    a ``Path``, its ``image_url`` as the URL; a ``Node``'s ``image_resource`` the
    same way. An ``ImageNode`` with none of them counts as a text node.
    """
    if isinstance(node, ImageNode):
        if node.image:
            return decode_base64_image(node.image)
        if node.image_path:
            return Path(node.image_path)
        if node.image_url:
            return node.image_url
        return None
    resource = getattr(node, "image_resource", None)  # llama_index.core.schema.Node
    if resource is not None and (resource.data or resource.path or resource.url):
        if resource.data:
            return decode_base64_image(resource.data)
        if resource.path:
            return Path(resource.path)
        return str(resource.url)
    return None


def node_candidate(node: BaseNode, metadata_mode: MetadataMode) -> tuple[Any, Modality]:
    """What the reranker scores for a node, and as which modality.

    Images are returned as non-strings (``Path``, ``bytes``) or http(s)/data URLs,
    so the reranker's ``"auto"`` rule reads every one of them as an image.
    """
    image = node_image(node)
    if image is not None:
        return image, "image"
    if isinstance(node, ImageNode):
        raise InvalidInputError(
            f"ImageNode {node.node_id!r} has no image, image_path or image_url: there is nothing to rerank"
        )
    return node.get_content(metadata_mode=metadata_mode), "text"


def rescored(result: NodeWithScore, score: float, score_key: str) -> NodeWithScore:
    """A copy of ``result`` with the new score; the old one kept in the node's metadata under ``score_key``."""
    node = result.node
    if result.score is None:
        copy = node.model_copy(update={"metadata": dict(node.metadata)})
    else:
        copy = node.model_copy(
            update={
                "metadata": {**node.metadata, score_key: result.score},
                "excluded_llm_metadata_keys": _with_key(node.excluded_llm_metadata_keys, score_key),
                "excluded_embed_metadata_keys": _with_key(node.excluded_embed_metadata_keys, score_key),
            }
        )
    return NodeWithScore(node=copy, score=score)


def _with_key(keys: list[str], key: str) -> list[str]:
    return list(keys) if key in keys else [*keys, key]
