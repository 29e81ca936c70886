"""mmrag: local multimodal embeddings for RAG.

Load a CLIP-family encoder, embed texts and images into one vector space, and
search them side by side in a Chroma-backed store.

Example:
    >>> import mmrag
    >>> enc = mmrag.load_encoder("clip-vit-b-32")
    >>> enc.embed_texts(["a red circle"]).shape
    (1, 512)
"""

from __future__ import annotations

from mmrag._version import __version__
from mmrag.batching import EmbeddingBatcher, QueueFullError
from mmrag.cache import CacheStats, EmbeddingCache, embed_with_cache
from mmrag.encoders import (
    DEFAULT_MODEL,
    Encoder,
    FusedEmbeddings,
    ModelPreset,
    list_models,
    load_encoder,
    register_family,
)
from mmrag.errors import (
    ImageInputError,
    InvalidFilterError,
    InvalidInputError,
    MissingDependencyError,
    MmragError,
    ModelNotAvailableError,
    NotASequenceError,
    OverloadedError,
    StoreLockedError,
    StoreMismatchError,
    TextInputError,
    UnsupportedModelError,
    UnsupportedPairError,
)
from mmrag.inputs import ImageInput, ImageLimits, resolve_image, resolve_images
from mmrag.logs import log_to_stderr  # importing mmrag.logs also puts a NullHandler on the "mmrag" logger
from mmrag.options import LoadOptions
from mmrag.rerank import Calibration, RankedItem, Reranker, list_rerankers, load_reranker
from mmrag.store import Hit, HitList, IndexReport, MultimodalStore, Record

__all__ = [
    "DEFAULT_MODEL",
    "CacheStats",
    "Calibration",
    "EmbeddingBatcher",
    "EmbeddingCache",
    "Encoder",
    "FusedEmbeddings",
    "Hit",
    "HitList",
    "ImageInput",
    "ImageInputError",
    "ImageLimits",
    "IndexReport",
    "InvalidFilterError",
    "InvalidInputError",
    "LoadOptions",
    "MissingDependencyError",
    "MmragError",
    "ModelNotAvailableError",
    "ModelPreset",
    "MultimodalStore",
    "NotASequenceError",
    "OverloadedError",
    "QueueFullError",
    "RankedItem",
    "Record",
    "Reranker",
    "StoreLockedError",
    "StoreMismatchError",
    "TextInputError",
    "UnsupportedModelError",
    "UnsupportedPairError",
    "__version__",
    "embed_with_cache",
    "list_models",
    "list_rerankers",
    "load_encoder",
    "load_reranker",
    "log_to_stderr",
    "register_family",
    "resolve_image",
    "resolve_images",
]
