"""Route a Chroma input list to the encoder: documents to the text tower, images to the image tower.

Chroma hands an embedding function one kind of item per call: the strings of
``documents=`` / ``query_texts=``, the arrays of ``images=`` /
``query_images=``, or whatever the collection's data loader made of ``uris=``
/ ``query_uris=`` (numpy arrays for ``chromadb.utils.data_loaders.ImageLoader``).
Called directly, a mixed list works too: each kind goes through the encoder in
one batched call and the vectors come back in input order.

The rule is Chroma's own: a ``str`` is always a document (even one that names
an image file; use ``uris=`` for those). Images are numpy arrays, PIL images,
encoded bytes and :class:`os.PathLike` paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
from PIL import Image

from mmrag.encoders import Encoder
from mmrag.errors import ImageInputError, InvalidInputError, TextInputError
from mmrag.inputs import as_items

__all__ = ["IMAGE_TYPES", "embed_items", "split_by_modality"]

IMAGE_TYPES: tuple[type, ...] = (np.ndarray, Image.Image, bytes, bytearray, memoryview, os.PathLike)
"""Item types embedded as images."""


def split_by_modality(items: Sequence[Any]) -> tuple[list[int], list[int]]:
    """The positions of the documents and of the images among ``items``.

    Args:
        items: Documents (``str``) and images (:data:`IMAGE_TYPES`).

    Returns:
        ``(text_positions, image_positions)``, each in input order.

    Raises:
        mmrag.InvalidInputError: An item is neither; the message names its index.
    """
    texts: list[int] = []
    images: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            texts.append(index)
        elif isinstance(item, IMAGE_TYPES):
            images.append(index)
        else:
            raise InvalidInputError(
                f"input {index}: expected a document (str) or an image (numpy array, PIL image, encoded bytes "
                f"or pathlib.Path), got {type(item).__name__}"
            )
    return texts, images


def embed_items(encoder: Encoder, items: Sequence[Any]) -> np.ndarray:
    """Embed documents and images, one encoder call per kind, rows in input order.

    Args:
        encoder: The mmrag encoder.
        items: A non-empty list of documents and images.

    Returns:
        Float32 array of shape ``(len(items), encoder.dim)``, L2-normalised rows.

    Raises:
        mmrag.NotASequenceError: ``items`` is a single item, not a list.
        mmrag.InvalidInputError: ``items`` is empty, or an item is neither a
            document nor an image (the message names its index).
        mmrag.ImageInputError: An image cannot be decoded; its index is the
            item's position in ``items``.
    """
    batch = as_items(items, "input")
    if not batch:
        raise InvalidInputError("input is empty: pass at least one document or image")
    texts, images = split_by_modality(batch)
    vectors = np.empty((len(batch), encoder.dim), dtype=np.float32)
    if texts:
        try:
            vectors[texts] = encoder.embed_texts([batch[i] for i in texts])
        except TextInputError as exc:
            _raise_relocated(exc, texts)
    if images:
        try:
            vectors[images] = encoder.embed_images([batch[i] for i in images])
        except ImageInputError as exc:
            _raise_relocated(exc, images)
    return vectors


def _raise_relocated(error: ImageInputError | TextInputError, positions: list[int]) -> NoReturn:
    """Raise ``error`` again with its index counted in the caller's whole list, not the sub-batch."""
    if error.index is None or not 0 <= error.index < len(positions):
        raise error
    if isinstance(error, ImageInputError):
        raise ImageInputError(error.reason, index=positions[error.index], item=error.item) from error.__cause__
    raise TextInputError(error.reason, index=positions[error.index]) from error.__cause__
