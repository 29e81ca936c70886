"""An embedding cache: the same text or image is embedded once per model, in memory or on disk.

:class:`EmbeddingCache` holds vectors keyed by an encoder's *identity* (a
hash of its :attr:`~mmrag.Encoder.signature`: model id, family, dimension,
preprocessing) and a *content key* (a hash of a text's UTF-8 bytes, of an
image's encoded bytes, or of its pixels). :func:`embed_with_cache` does the
whole round trip: look up, embed only the misses in one batched call, store
them, return the rows in input order.

Example:
    >>> import mmrag
    >>> from mmrag.cache import EmbeddingCache, embed_with_cache
    >>> enc = mmrag.load_encoder("demo")
    >>> cache = EmbeddingCache(path="embeddings.sqlite")   # survives restarts; omit path for memory only
    >>> vectors = embed_with_cache(cache, enc, ["a red circle"], "text")
    >>> vectors = embed_with_cache(cache, enc, ["a red circle"], "text")   # answered by the cache
    >>> cache.hits, cache.misses
    (1, 1)

Modules: :mod:`~mmrag.cache.keys` (identities and content keys),
:mod:`~mmrag.cache.embedding_cache` (:class:`EmbeddingCache`, the memory LRU),
:mod:`~mmrag.cache.disk` (the SQLite file) and :mod:`~mmrag.cache.embed`
(:func:`embed_with_cache`).
"""

from __future__ import annotations

from mmrag.cache.embed import CacheableEncoder, EmbedKind, embed_with_cache
from mmrag.cache.embedding_cache import CacheStats, EmbeddingCache
from mmrag.cache.keys import encoder_identity, image_key, text_key

__all__ = [
    "CacheStats",
    "CacheableEncoder",
    "EmbedKind",
    "EmbeddingCache",
    "embed_with_cache",
    "encoder_identity",
    "image_key",
    "text_key",
]
