"""Merging per-modality result lists: reciprocal rank fusion, or raw cosine.

Text-text and text-image similarities live on different scales (for CLIP
roughly 0.8 against 0.3), so when both modalities are returned they are merged
by reciprocal rank fusion: each modality's list is ranked on its own and items
are ordered by ``1 / (60 + rank)``, ties broken by score. Neither modality
crowds out the other merely by scale. ``fusion="score"`` orders by raw cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from mmrag.store.records import Hit

__all__ = ["merge_ranked"]

RRF_K = 60
"""The rank offset of reciprocal rank fusion: an item at rank ``r`` scores ``1 / (RRF_K + r)``."""


def merge_ranked(lists: Sequence[Sequence[Hit]], k: int, *, fusion: Literal["rrf", "score"] = "rrf") -> list[Hit]:
    """Merge per-modality result lists (each best first) into one list of ``k``.

    Args:
        lists: Ranked hit lists, one per modality.
        k: Most hits to return.
        fusion: ``"rrf"`` orders by ``sum(1 / (60 + rank))`` (ties by score);
            ``"score"`` orders by raw cosine.

    Returns:
        The merged hits, best first.

    Raises:
        ValueError: An unknown ``fusion``.
    """
    if fusion == "score":
        merged = [hit for hits in lists for hit in hits]
        return sorted(merged, key=lambda hit: -hit.score)[:k]
    if fusion != "rrf":
        raise ValueError(f"fusion must be 'rrf' or 'score', got {fusion!r}")
    fused: dict[str, tuple[float, Hit]] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            previous = fused.get(hit.id, (0.0, hit))[0]
            fused[hit.id] = (previous + 1.0 / (RRF_K + rank), hit)
    ordered = sorted(fused.values(), key=lambda pair: (-pair[0], -pair[1].score))
    return [hit for _, hit in ordered[:k]]
