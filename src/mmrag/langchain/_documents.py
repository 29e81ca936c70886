"""Converters between mmrag values and LangChain ones: documents, vectors, query texts."""

from __future__ import annotations

import base64
import os
from typing import Any

import numpy as np
from langchain_core.documents import Document

from mmrag.errors import ImageInputError, InvalidInputError, TextInputError
from mmrag.inputs import ImageLimits, Modality, decode_base64_image, image_mime_type, image_reference, read_image_bytes
from mmrag.store import Hit

__all__ = ["hit_to_document"]


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
        text of a text hit or an image-text pair, the path or URL of an image
        hit (``""`` for images stored as pixels); ``metadata`` is the stored metadata plus
        ``modality``, ``source``, ``score`` and ``id``.
    """
    has_text = hit.modality == "text" or (hit.modality == "pair" and hit.text is not None)
    content = (hit.text if hit.text is not None else hit.source or "") if has_text else hit.source or ""
    metadata: dict[str, Any] = {
        **hit.metadata,
        "modality": hit.modality,
        "source": hit.source,
        "score": hit.score,
        "id": hit.id,
    }
    if include_image_base64 and hit.modality in ("image", "pair") and hit.source:
        try:
            data = read_image_bytes(hit.source, limits=limits)
        except ImageInputError as exc:
            metadata["image_error"] = str(exc)
        else:
            if data is not None:
                metadata["image_base64"] = base64.b64encode(data).decode("ascii")
                metadata["image_mime_type"] = image_mime_type(data, hit.source)
    return Document(page_content=content, metadata=metadata, id=hit.id)


def document_candidate(doc: Document, index: int) -> tuple[Any, Modality]:
    """What the reranker scores for a document, and as which modality.

    Images are returned as non-strings (``Path``, ``bytes``) or http(s)/data URLs
    where possible, so the reranker's ``"auto"`` rule reads them as images.
    """
    metadata = doc.metadata or {}
    if metadata.get("modality") != "image":
        return doc.page_content, "text"
    encoded = metadata.get("image_base64")
    if isinstance(encoded, str) and encoded:
        decoded = decode_base64_image(encoded)
        if isinstance(decoded, bytes):
            return decoded, "image"
    source = metadata.get("source")
    if isinstance(source, str) and source.strip():
        return image_reference(source, may_be_base64=False), "image"
    if isinstance(source, os.PathLike):
        return source, "image"
    if doc.page_content.strip():
        return image_reference(doc.page_content, may_be_base64=True), "image"
    name = f" (id {doc.id!r})" if doc.id else ""
    raise InvalidInputError(
        f"document {index}{name} is an image with no image_base64, source or page_content to read it from "
        "(images stored as pixels cannot be reranked: store them by path or URL)"
    )


def query_text(text: object) -> str:
    """A query text, refusing anything that is not a string (``TextInputError``, also a ``TypeError``)."""
    if not isinstance(text, str):
        raise TextInputError(f"must be a string, got {type(text).__name__}")
    return text


def vector_lists(vectors: np.ndarray) -> list[list[float]]:
    """Vectors as LangChain wants them: lists of Python floats."""
    lists: list[list[float]] = vectors.tolist()
    return lists
