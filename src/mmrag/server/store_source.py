"""Where the service's store lives (an embedded ``--db`` folder or a Chroma server, ``--chroma-url``) and its cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.server.settings import ServerSettings

if TYPE_CHECKING:
    from mmrag.cache import EmbeddingCache
    from mmrag.server.recorded import RecordedModel

__all__ = ["chroma_client", "embedding_cache", "recorded_model"]


def chroma_client(settings: ServerSettings) -> Any:
    """A client of the ``--chroma-url`` server, or ``None`` for an embedded store."""
    if settings.chroma_url is None:
        return None
    from mmrag.ray.server import ChromaServer  # the server's address only: Ray is not imported

    return ChromaServer.from_url(settings.chroma_url).connect()


def recorded_model(settings: ServerSettings) -> RecordedModel:
    """What the configured store recorded about its model (empty: no store, or an empty one)."""
    from mmrag.server.recorded import RecordedModel, recorded_model

    if settings.chroma_url is not None:
        return recorded_model(client=chroma_client(settings), collection=settings.collection)
    if settings.db is None:
        return RecordedModel()
    return recorded_model(db=settings.db, collection=settings.collection)


def embedding_cache(settings: ServerSettings) -> EmbeddingCache | None:
    """The embedding cache the settings ask for (``":memory:"``: in memory only), or ``None``."""
    from mmrag.cache import EmbeddingCache

    if settings.cache_path is None:
        return None
    path = None if settings.cache_path == ":memory:" else settings.cache_path
    return EmbeddingCache(path, max_entries=settings.cache_max_entries)
