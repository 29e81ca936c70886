"""``CacheBackedMultiModalEmbeddings``: LangChain's ``CacheBackedEmbeddings`` that caches images too.

LangChain's ``CacheBackedEmbeddings`` has no ``embed_image``, so
``langchain_chroma.Chroma.add_images`` (which looks for it) finds none and falls
back to Chroma's default embedding function: another model, downloaded over the
network. This subclass keeps ``embed_image`` (and ``aembed_image``) and caches
image vectors next to the text ones.

Needs ``langchain-classic`` (part of ``pip install "mmrag[langchain]"``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.stores import BaseStore, ByteStore
from langchain_core.utils.iter import batch_iterate
from PIL import Image

from mmrag.errors import InvalidInputError, MissingDependencyError
from mmrag.inputs import ImageInput, ImageLimits, as_items, is_url, read_image_bytes

try:
    from langchain_classic.embeddings.cache import CacheBackedEmbeddings
    from langchain_classic.storage.encoder_backed import EncoderBackedStore
except ImportError as exc:
    raise MissingDependencyError.for_extra(
        "langchain", "mmrag.langchain.CacheBackedMultiModalEmbeddings", exc.name or "langchain_classic"
    ) from exc

__all__ = ["CacheBackedMultiModalEmbeddings", "image_cache_key"]


def image_cache_key(image: ImageInput, *, limits: ImageLimits | None = None) -> str:
    """The cache key of an image: a digest of its content, or its URL.

    Args:
        image: Anything :func:`mmrag.resolve_image` takes. Paths, data URIs,
            base64, bytes and file objects are read (a file object is read from
            where it stands and put back there); PIL images and arrays are
            hashed by their pixels. An http(s) URL is its own key, not fetched:
            the cache assumes the image behind a URL does not change.
        limits: Limits for reading it (default ``ImageLimits()``).

    Returns:
        ``"image-url:<url>"`` or ``"image-sha256:<hex digest>"``.

    Raises:
        mmrag.ImageInputError: The image cannot be read.
    """
    if isinstance(image, str) and is_url(image):
        return f"image-url:{image.strip()}"
    digest = hashlib.sha256()
    if isinstance(image, Image.Image):
        digest.update(f"pil:{image.mode}:{image.size}:".encode())
        digest.update(image.tobytes())
    elif isinstance(image, np.ndarray):
        digest.update(f"array:{image.dtype}:{image.shape}:".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    elif isinstance(image, io.IOBase) and image.seekable():
        start = image.tell()
        try:
            digest.update(read_image_bytes(image, limits=limits) or b"")
        finally:
            image.seek(start)
    else:
        digest.update(read_image_bytes(image, limits=limits) or b"")
    return f"image-sha256:{digest.hexdigest()}"


class CacheBackedMultiModalEmbeddings(CacheBackedEmbeddings):
    """LangChain's ``CacheBackedEmbeddings`` with ``embed_image``: image vectors are cached too.

    A drop-in for ``CacheBackedEmbeddings`` around an embedding with
    ``embed_image`` (:class:`LocalMultiModalEmbeddings`, or any other), so
    ``Chroma.add_images`` and ``similarity_search_by_image`` use it. An image's
    key is a digest of its content (see :func:`image_cache_key`), so the same
    picture under another path is a cache hit and a changed file is not.

    Args:
        underlying_embeddings: The embeddings to cache; must have ``embed_image``.
        document_embedding_store: Where document (and, by default, image) vectors are cached.
        batch_size: Documents or images embedded between cache updates (default: all at once).
        query_embedding_store: Where query vectors are cached; ``None``: not cached.
        image_embedding_store: Where image vectors are cached; default: ``document_embedding_store``.

    Raises:
        mmrag.InvalidInputError: ``underlying_embeddings`` has no ``embed_image``.

    Example:
        >>> from langchain_core.stores import InMemoryByteStore
        >>> emb = LocalMultiModalEmbeddings(model="demo")
        >>> cached = CacheBackedMultiModalEmbeddings.from_bytes_store(
        ...     emb, InMemoryByteStore(), namespace=emb.model_name, key_encoder="sha256"
        ... )
        >>> Chroma("photos", cached).add_images(uris=["a.png"])  # doctest: +SKIP
    """

    def __init__(
        self,
        underlying_embeddings: Embeddings,
        document_embedding_store: BaseStore[str, list[float]],
        *,
        batch_size: int | None = None,
        query_embedding_store: BaseStore[str, list[float]] | None = None,
        image_embedding_store: BaseStore[str, list[float]] | None = None,
    ) -> None:
        if not callable(getattr(underlying_embeddings, "embed_image", None)):
            raise InvalidInputError(
                f"{type(underlying_embeddings).__name__} has no embed_image, so there are no image vectors to cache; "
                "use langchain's CacheBackedEmbeddings for a text-only embedding"
            )
        super().__init__(
            underlying_embeddings,
            document_embedding_store,
            batch_size=batch_size,
            query_embedding_store=query_embedding_store,
        )
        self.image_embedding_store = (
            document_embedding_store if image_embedding_store is None else image_embedding_store
        )

    @classmethod
    def from_bytes_store(
        cls,
        underlying_embeddings: Embeddings,
        document_embedding_cache: ByteStore,
        *,
        namespace: str = "",
        batch_size: int | None = None,
        query_embedding_cache: bool | ByteStore = False,
        key_encoder: Callable[[str], str] | Literal["sha1", "blake2b", "sha256", "sha512"] = "sha1",
        image_embedding_cache: ByteStore | None = None,
    ) -> CacheBackedMultiModalEmbeddings:
        """Cache in byte stores (e.g. ``LocalFileStore``), like ``CacheBackedEmbeddings.from_bytes_store``.

        Args:
            underlying_embeddings: The embeddings to cache; must have ``embed_image``.
            document_embedding_cache: The byte store for document vectors (and image ones, by default).
            namespace: Prefix of every key, e.g. the model's name, so two models never share vectors.
            batch_size: Documents or images embedded between cache updates.
            query_embedding_cache: ``True`` to cache queries in ``document_embedding_cache``,
                a byte store to cache them there, ``False`` not to.
            key_encoder: How keys are hashed (``"sha256"`` recommended; ``"sha1"``
                is LangChain's default and warns), or your own function.
            image_embedding_cache: A byte store for image vectors; default: ``document_embedding_cache``.

        Returns:
            The caching embeddings.
        """
        cached = super().from_bytes_store(
            underlying_embeddings,
            document_embedding_cache,
            namespace=namespace,
            batch_size=batch_size,
            query_embedding_cache=query_embedding_cache,
            key_encoder=key_encoder,
        )
        assert isinstance(cached, CacheBackedMultiModalEmbeddings)  # super() builds cls
        if image_embedding_cache is not None:
            documents = cached.document_embedding_store
            assert isinstance(documents, EncoderBackedStore)  # what from_bytes_store makes
            cached.image_embedding_store = EncoderBackedStore(
                image_embedding_cache, documents.key_encoder, documents.value_serializer, documents.value_deserializer
            )
        return cached

    def embed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Embed images, reading cached vectors and caching the missing ones.

        Args:
            uris: Image inputs (what ``Chroma.add_images`` passes: file paths;
                anything the underlying ``embed_image`` takes).

        Returns:
            One vector per image, in order.

        Raises:
            mmrag.NotASequenceError: ``uris`` is a single item.
            mmrag.ImageInputError: An image cannot be read.
        """
        items, keys = self._keyed(uris)
        vectors: list[list[float] | None] = list(self.image_embedding_store.mget(keys))
        for batch in batch_iterate(self.batch_size, self._missing(keys, vectors)):
            embedded = self._underlying("embed_image")(uris=[items[i] for i in batch])
            self._fill(keys, vectors, batch, embedded)
            self.image_embedding_store.mset([(keys[i], vector) for i, vector in zip(batch, embedded, strict=True)])
        return _all_filled(vectors)

    async def aembed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Async form of :meth:`embed_image` (the underlying ``aembed_image`` when it has one).

        Args:
            uris: Image inputs.

        Returns:
            One vector per image, in order.
        """
        items, keys = await run_in_executor(None, self._keyed, uris)  # reading files is blocking work
        vectors: list[list[float] | None] = list(await self.image_embedding_store.amget(keys))
        has_async = callable(getattr(self.underlying_embeddings, "aembed_image", None))
        for batch in batch_iterate(self.batch_size, self._missing(keys, vectors)):
            chunk = [items[i] for i in batch]
            if has_async:
                embedded = await self._underlying("aembed_image")(uris=chunk)
            else:
                embedded = await run_in_executor(None, self._underlying("embed_image"), uris=chunk)
            self._fill(keys, vectors, batch, embedded)
            await self.image_embedding_store.amset([(keys[i], v) for i, v in zip(batch, embedded, strict=True)])
        return _all_filled(vectors)

    def _underlying(self, method: str) -> Callable[..., Any]:
        """The underlying embeddings' ``embed_image`` / ``aembed_image`` (the first checked in ``__init__``)."""
        found: Callable[..., Any] = getattr(self.underlying_embeddings, method)
        return found

    def _keyed(self, uris: Sequence[ImageInput]) -> tuple[list[ImageInput], list[str]]:
        items = as_items(uris, "uris")
        encoder = getattr(self.underlying_embeddings, "encoder", None)
        limits = getattr(encoder, "image_limits", None)
        return items, [image_cache_key(item, limits=limits) for item in items]

    @staticmethod
    def _missing(keys: list[str], vectors: list[list[float] | None]) -> list[int]:
        """The first index of every key without a cached vector (a repeated image is embedded once)."""
        first: dict[str, int] = {}
        for index, (key, vector) in enumerate(zip(keys, vectors, strict=True)):
            if vector is None:
                first.setdefault(key, index)
        return list(first.values())

    @staticmethod
    def _fill(
        keys: list[str], vectors: list[list[float] | None], batch: Sequence[int], embedded: list[list[float]]
    ) -> None:
        by_key = {keys[i]: vector for i, vector in zip(batch, embedded, strict=True)}
        for index, key in enumerate(keys):
            if vectors[index] is None and key in by_key:
                vectors[index] = by_key[key]


def _all_filled(vectors: list[list[float] | None]) -> list[list[float]]:
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    if missing:  # the underlying embeddings returned fewer vectors than images
        raise InvalidInputError(f"no vector for the images at {missing}: the underlying embed_image returned too few")
    return [vector for vector in vectors if vector is not None]
