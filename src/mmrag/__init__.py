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

from mmrag.batching import EmbeddingBatcher, QueueFullError
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
    MmragError,
    ModelNotAvailableError,
    StoreLockedError,
    StoreMismatchError,
    UnsupportedModelError,
    UnsupportedPairError,
)
from mmrag.inputs import ImageInput, ImageLimits, resolve_image, resolve_images
from mmrag.rerank import Calibration, RankedItem, Reranker, list_rerankers, load_reranker
from mmrag.store import Hit, IndexReport, MultimodalStore, Record

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingBatcher",
    "Encoder",
    "FusedEmbeddings",
    "Hit",
    "ImageInput",
    "ImageInputError",
    "ImageLimits",
    "IndexReport",
    "MmragError",
    "ModelNotAvailableError",
    "ModelPreset",
    "MultimodalStore",
    "QueueFullError",
    "Record",
    "StoreLockedError",
    "StoreMismatchError",
    "UnsupportedModelError",
    "Calibration",
    "RankedItem",
    "Reranker",
    "UnsupportedPairError",
    "__version__",
    "list_models",
    "list_rerankers",
    "load_reranker",
    "load_encoder",
    "register_family",
    "resolve_image",
    "resolve_images",
]
