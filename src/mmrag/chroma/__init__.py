"""Chroma adapter: mmrag encoders as Chroma 1.x embedding functions for texts and images.

Importing this package registers :class:`MultimodalEmbeddingFunction` with
Chroma under the name ``"mmrag"`` (``chromadb.utils.embedding_functions.
register_embedding_function``), so a collection made with it can be reopened
with ``client.get_collection(name)`` alone in any process that has imported
``mmrag.chroma``. That registration is the only import side effect.

* :class:`MultimodalEmbeddingFunction`: the embedding function.
* :class:`ImageLoader`: a data loader for ``uris=`` that decodes with mmrag's
  image resolver (palette and CMYK images, EXIF orientation, size limits).
* :func:`clear_encoder_cache`: release models kept for reopened collections.

Example:
    >>> import chromadb
    >>> from mmrag.chroma import ImageLoader, MultimodalEmbeddingFunction
    >>> client = chromadb.PersistentClient(path="db")  # doctest: +SKIP
    >>> photos = client.create_collection(  # doctest: +SKIP
    ...     "photos", embedding_function=MultimodalEmbeddingFunction(model="demo"), data_loader=ImageLoader()
    ... )
    >>> photos.add(ids=["1", "2"], uris=["cat.png", "dog.png"])  # doctest: +SKIP
    >>> photos.query(query_texts=["a cat"], n_results=1)  # doctest: +SKIP
"""

from __future__ import annotations

from mmrag.chroma.data_loader import ImageLoader
from mmrag.chroma.embedding_function import MultimodalEmbeddingFunction
from mmrag.chroma.encoder_cache import clear_encoder_cache

__all__ = ["ImageLoader", "MultimodalEmbeddingFunction", "clear_encoder_cache"]
