"""Visualized-BGE (BAAI, FlagEmbedding ``research/visual_bge``): BGE text vectors that also read images.

Load it with :func:`mmrag.load_encoder`: a preset (``"bge-visualized-base-en"``,
``"bge-visualized-m3"``) or a local ``.pth`` with its text model,
``load_encoder("Visualized_base_en_v1.5.pth", text_model="BAAI/bge-base-en-v1.5")``.
"""

from __future__ import annotations

from mmrag.encoders.visualized_bge.loading import FAMILY, is_visualized_bge_source, load_visualized_bge

__all__ = ["FAMILY", "VisualizedBgeEncoder", "is_visualized_bge_source", "load_visualized_bge"]


def __getattr__(name: str) -> object:
    if name == "VisualizedBgeEncoder":  # imports torch: only on demand
        from mmrag.encoders.visualized_bge.encoder import VisualizedBgeEncoder

        return VisualizedBgeEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
