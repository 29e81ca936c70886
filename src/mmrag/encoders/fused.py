"""Fused image+text vectors: :class:`FusedEmbeddings` and :func:`l2_normalize`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mmrag.inputs import ImageInput, as_items, as_texts

__all__ = ["FusedEmbeddings", "checked_pairs", "l2_normalize"]


@dataclass(frozen=True)
class FusedEmbeddings:
    """Image, text and fused vectors for paired images and texts.

    All three arrays have shape ``(n, dim)``, dtype float32 and L2-normalised
    rows. ``fused[i]`` is ``normalize(image[i] + text[i])``: one vector that
    stands for the pair, e.g. a product photo with its caption.

    Attributes:
        image: Image vectors.
        text: Text vectors.
        fused: Normalised sums of the image and text vectors.
    """

    image: np.ndarray
    text: np.ndarray
    fused: np.ndarray

    @classmethod
    def from_stacked(cls, stacked: np.ndarray) -> FusedEmbeddings:
        """The three arrays of an ``(n, 3, dim)`` array of image, text and fused rows (see :meth:`stacked`).

        Raises:
            ValueError: ``stacked`` is not of shape ``(n, 3, dim)``.
        """
        if stacked.ndim != 3 or stacked.shape[1] != 3:
            raise ValueError(f"expected an (n, 3, dim) array of image, text and fused rows, got shape {stacked.shape}")
        image, text, fused = (np.ascontiguousarray(stacked[:, part]) for part in range(3))
        return cls(image=image, text=text, fused=fused)

    def stacked(self) -> np.ndarray:
        """One ``(n, 3, dim)`` array: row ``i`` holds pair ``i``'s image, text and fused vectors, in that order."""
        return np.stack([self.image, self.text, self.fused], axis=1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` as float32 with unit-length rows (zero rows stay zero).

    Args:
        vectors: A 2-D array.

    Returns:
        A new float32 array of the same shape.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    normalized: np.ndarray = vectors / np.maximum(norms, np.float32(1e-12))
    return normalized


def checked_pairs(images: Iterable[ImageInput], texts: Iterable[str]) -> tuple[list[ImageInput], list[str]]:
    """The items of an ``embed_fused`` call: both lists checked, one text per image (else ``ValueError``)."""
    image_items, text_items = as_items(images, "images"), as_texts(texts)
    if len(image_items) != len(text_items):
        raise ValueError(
            f"embed_fused needs one text per image: got {len(image_items)} images and {len(text_items)} texts"
        )
    return image_items, text_items
