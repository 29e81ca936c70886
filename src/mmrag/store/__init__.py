"""A Chroma-backed multimodal store: text and image vectors side by side.

Layout
    One logical store is two Chroma collections, ``<name>_images`` and
    ``<name>_texts``, in cosine space. A modality-restricted search touches one
    collection, which keeps it as fast as an unfiltered query (a ``where``
    filter on a shared collection was ~20x slower at 50k vectors; see
    ``benchmarks/store.py``). A search over both modalities queries both and
    merges the two ranked lists. Image-text pairs (``add_pairs``, one fused
    vector each) go in a third collection, ``<name>_pairs``, made by the first
    ``add_pairs``; a search over all modalities includes it where it exists.

Records
    Every record carries its ``modality``, its ``source`` (an image's path or
    URL, never pixels or base64; a text's own text, or its file's path) and
    the caller's metadata. Record ids are derived from the model, the
    modality, the content and the source, so adding the same thing again
    changes nothing.

Scores
    ``Hit.score`` is the cosine similarity between query and item vectors
    (higher is better, at most 1). Text-text and text-image similarities live
    on different scales (for CLIP roughly 0.8 against 0.3), so when both
    modalities are returned they are merged by reciprocal rank fusion: each
    modality's list is ranked on its own and items are ordered by
    ``1 / (60 + rank)``, ties broken by score. Neither modality crowds out the
    other merely by scale. Pass ``fusion="score"`` to order by raw cosine.

Modules
    :mod:`~mmrag.store.store` (``MultimodalStore``), :mod:`~mmrag.store.records`
    (records, hits, reports, checks, digests), :mod:`~mmrag.store.fusion`
    (``merge_ranked``), :mod:`~mmrag.store.upsert` (the add path),
    :mod:`~mmrag.store.folder` (``index_folder``),
    :mod:`~mmrag.store.pairs` (``add_pairs``, composed queries),
    :mod:`~mmrag.store.collection_pair` (the Chroma collections),
    :mod:`~mmrag.store.embedded` (an on-disk database: open, close, clear
    storage errors), :mod:`~mmrag.store.lock` (one process per embedded path),
    :mod:`~mmrag.store.walk` (which folder entries are indexed; the links
    policy), :mod:`~mmrag.store.names` (file names that are not UTF-8),
    :mod:`~mmrag.store.checks` (argument checks) and
    :mod:`~mmrag.store.filters` (``validate_where``).
"""

from __future__ import annotations

from mmrag.inputs import IMAGE_EXTENSIONS, Modality
from mmrag.store.filters import validate_where
from mmrag.store.fusion import merge_ranked
from mmrag.store.hits import HitList
from mmrag.store.records import Hit, IndexReport, Record, StoredModality
from mmrag.store.store import MultimodalStore
from mmrag.store.walk import TEXT_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "Hit",
    "HitList",
    "IndexReport",
    "Modality",
    "MultimodalStore",
    "Record",
    "StoredModality",
    "merge_ranked",
    "validate_where",
]
