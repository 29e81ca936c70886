""":func:`embed_with_cache`: look up, embed only the misses in one batched call, store them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

import numpy as np

from mmrag.cache.embedding_cache import EmbeddingCache
from mmrag.cache.keys import image_key, text_key
from mmrag.errors import ImageInputError, InvalidInputError
from mmrag.inputs import ImageInput, ImageLimits, as_items, as_texts, describe_image_input
from mmrag.logs import logger

__all__ = ["CacheableEncoder", "EmbedKind", "embed_with_cache"]

_log = logger("cache")

EmbedKind = Literal["text", "image"]
"""What the items are."""


class CacheableEncoder(Protocol):
    """What :func:`embed_with_cache` needs of an encoder (every :class:`~mmrag.Encoder` has it)."""

    dim: int
    image_limits: ImageLimits

    @property
    def signature(self) -> Mapping[str, str | int]:
        """The facts of the vector space (see :attr:`mmrag.Encoder.signature`)."""

    def embed_texts(self, texts: Iterable[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed texts."""

    def embed_images(
        self, images: Iterable[ImageInput], *, batch_size: int | None = None, limits: ImageLimits | None = None
    ) -> np.ndarray:
        """Embed images."""


def embed_with_cache(
    cache: EmbeddingCache,
    encoder: CacheableEncoder,
    items: Iterable[Any],
    kind: EmbedKind,
    *,
    batch_size: int | None = None,
    limits: ImageLimits | None = None,
    embed: Callable[[list[Any]], np.ndarray] | None = None,
) -> np.ndarray:
    """Embed texts or images, computing only what ``cache`` does not hold yet.

    Every item is keyed (texts by their UTF-8 bytes; images by their encoded
    bytes, read once, or by their pixels), looked up, and the misses, each
    distinct one once, are embedded in one batched call and stored. The rows
    come back in input order, exactly as the encoder would return them.

    Args:
        cache: Where vectors are kept.
        encoder: The encoder whose vector space is cached.
        items: Texts (``kind="text"``) or image inputs (``kind="image"``), as
            a list; a single item is refused as by the encoder.
        kind: ``"text"`` or ``"image"``.
        batch_size: Passed to the encoder for the misses.
        limits: Image limits for reading and embedding; the encoder's
            ``image_limits`` when omitted.
        embed: What embeds the misses (a list of texts, or of bytes and
            resolved images) into an ``(n, dim)`` array; default the
            encoder's ``embed_texts``/``embed_images``. An encoder that
            consults the cache itself passes its uncached path here.

    Returns:
        Float32 array of shape ``(len(items), encoder.dim)``.

    Raises:
        mmrag.NotASequenceError: ``items`` is a single item, a set or a mapping.
        mmrag.TextInputError: A text is not a string or not valid Unicode.
        mmrag.ImageInputError: An image cannot be read, fetched or decoded.
        mmrag.InvalidInputError: ``kind`` is neither ``"text"`` nor
            ``"image"``, or the embedder returned the wrong shape.

    Example:
        >>> cache = EmbeddingCache()
        >>> first = embed_with_cache(cache, enc, ["a red circle", "a blue square"], "text")
        >>> again = embed_with_cache(cache, enc, ["a blue square"], "text")  # no forward pass
    """
    active = limits or encoder.image_limits
    keys: list[str]
    payloads: list[Any]
    originals: list[Any]
    if kind == "text":
        originals = texts = as_texts(items)
        keys, payloads = [text_key(text) for text in texts], list(texts)
    elif kind == "image":
        originals = as_items(items, "images")
        pairs = [image_key(item, limits=active, index=i) for i, item in enumerate(originals)]
        keys, payloads = [key for key, _ in pairs], [payload for _, payload in pairs]
    else:
        raise InvalidInputError(f"kind must be 'text' or 'image', got {kind!r}")
    identity = cache.identity(encoder)
    found = cache.get_many(identity, keys)
    todo: dict[str, int] = {}  # key -> row in ``fresh``
    todo_payloads: list[Any] = []
    todo_rows: list[int] = []  # the input index of each miss, for error messages
    for row, (key, vector, payload) in enumerate(zip(keys, found, payloads)):
        if vector is None and key not in todo:
            todo[key] = len(todo_payloads)
            todo_payloads.append(payload)
            todo_rows.append(row)
    _log.debug("%d %ss: %d cached, %d to embed", len(keys), kind, len(keys) - len(todo_payloads), len(todo_payloads))
    out = np.empty((len(keys), encoder.dim), dtype=np.float32)
    fresh = out[:0]
    if todo_payloads:
        try:
            fresh = _embed_misses(encoder, todo_payloads, kind, batch_size, active, embed)
        except ImageInputError as exc:  # name the item as the caller gave it, not its position among the misses
            if exc.index is None or not 0 <= exc.index < len(todo_rows):
                raise
            row = todo_rows[exc.index]
            raise ImageInputError(exc.reason, index=row, item=describe_image_input(originals[row])) from exc
        cache.put_many(identity, list(todo), fresh)
    for row, (key, vector) in enumerate(zip(keys, found)):
        out[row] = vector if vector is not None else fresh[todo[key]]
    return out


def _embed_misses(
    encoder: CacheableEncoder,
    payloads: list[Any],
    kind: EmbedKind,
    batch_size: int | None,
    limits: ImageLimits,
    embed: Callable[[list[Any]], np.ndarray] | None,
) -> np.ndarray:
    if embed is not None:
        vectors = embed(payloads)
    elif kind == "text":
        vectors = encoder.embed_texts(payloads, batch_size=batch_size)
    else:
        vectors = encoder.embed_images(payloads, batch_size=batch_size, limits=limits)
    array = np.asarray(vectors, dtype=np.float32)
    if array.shape != (len(payloads), encoder.dim):
        raise InvalidInputError(
            f"the encoder returned shape {array.shape} for {len(payloads)} {kind}s; expected "
            f"({len(payloads)}, {encoder.dim})"
        )
    return array
