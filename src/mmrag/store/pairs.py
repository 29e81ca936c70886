"""Composed (image + text) records and queries: ``MultimodalStore.add_pairs`` and the vector of a composed query.

A pair is one image with its text ("this shoe" + "in red", a product photo
with its caption) stored as ONE record of modality ``"pair"`` whose vector is
the encoder's fused vector, ``encoder.embed_fused(images, texts).fused``: for
the dual encoders (CLIP, SigLIP, ...) the normalised sum of the image and
text vectors; for Visualized-BGE its joint image+text encoding. Pairs live in
the store's third collection, ``<name>_pairs``, made on the first
``add_pairs``. A composed query (``store.search("in red", image="shoe.jpg")``)
is embedded the same way, so it finds pairs, images and texts alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput, QueryType, is_image_query
from mmrag.store.collection_pair import CollectionPair
from mmrag.store.records import IndexReport
from mmrag.store.upsert import pending_pairs, write_pending

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__: list[str] = []  # internal to mmrag.store (MultimodalStore.add_pairs is the public face)


def composed_vector(encoder: Encoder, text: object, image: ImageInput, query_type: QueryType = "auto") -> np.ndarray:
    """The query vector of a composed query: ``encoder.embed_fused([image], [text]).fused[0]``.

    Raises:
        mmrag.TextInputError: ``text`` is not a string.
        mmrag.InvalidInputError: ``text`` is blank, or ``query_type="image"``.
        mmrag.ImageInputError: ``image`` could not be resolved.
    """
    if not isinstance(text, str):
        raise TextInputError(f"a composed query's text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(
            "a composed query (image=...) needs a text too; to search with the image alone, pass it as the query"
        )
    if query_type == "image":
        raise InvalidInputError("query_type='image' with image=...: the query is then the text of a composed query")
    return np.asarray(encoder.embed_fused([image], [text]).fused[0])


class PairsMixin:
    """``add_pairs`` and ``embed_query`` (text, image or composed queries) of :class:`~mmrag.MultimodalStore`."""

    encoder: Encoder
    _collections: CollectionPair
    _model_key: str

    def add_pairs(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> IndexReport:
        """Embed and store image-text pairs, one record (modality ``"pair"``) per pair (upsert).

        Each record's vector is ``encoder.embed_fused(images, texts).fused``
        (for dual encoders the normalised sum of the two vectors), its
        ``source`` the image's path or URL and its ``text`` the text. Ids are
        derived from the model, the pixels, the text and the source, so adding
        a pair again changes nothing. Every image is decoded and every text
        and metadata checked before anything is written: one bad item raises
        an error naming its index, and the store is left as it was. Pairs go
        in the collection ``<name>_pairs``, made by the first call.

        Args:
            images: One image per pair (anything :func:`mmrag.resolve_image`
                accepts), in a list.
            texts: One text per pair, in a list.
            metadatas: One metadata mapping (or ``None``) per pair.

        Returns:
            An :class:`IndexReport`; ``report.ids`` holds the record ids.

        Raises:
            mmrag.NotASequenceError: ``images`` or ``texts`` is a single item, not a list.
            mmrag.ImageInputError: An image could not be resolved or decoded (the message names its index).
            mmrag.TextInputError: A text is not a valid string (the message names its index).
            mmrag.InvalidInputError: ``images`` and ``texts`` differ in length, or a metadata value or key is invalid.

        Example:
            >>> store.add_pairs(["shoe.jpg"], ["a running shoe, in red"])  # doctest: +SKIP
            >>> store.search("in red", image="shoe.jpg", modality="pair")  # doctest: +SKIP
        """
        pending = pending_pairs(images, texts, metadatas, self.encoder, self._model_key)
        return write_pending(self._collections, self.encoder, pending, explicit_ids=False)

    def embed_query(
        self, query: str | ImageInput, *, image: ImageInput | None = None, query_type: QueryType = "auto"
    ) -> np.ndarray:
        """The query vector :meth:`search` uses.

        Args:
            query: A text or an image input.
            image: An image composed with the text ``query`` (see :meth:`search`).
            query_type: ``"auto"``, ``"text"`` or ``"image"`` (see :meth:`search`).

        Returns:
            A float32 vector of length ``encoder.dim``.
        """
        if image is not None:
            return composed_vector(self.encoder, query, image, query_type)
        if is_image_query(query, query_type):
            vectors = self.encoder.embed_images([query])
        elif isinstance(query, str):
            vectors = self.encoder.embed_texts([query])
        else:
            raise TextInputError(f"a query must be a string or an image, got {type(query).__name__}")
        return np.asarray(vectors[0])
