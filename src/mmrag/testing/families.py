"""The dual-encoder families: their names, text lengths, text recipe and how each one is described.

Each family module (:mod:`~mmrag.testing.clip`, :mod:`~mmrag.testing.siglip`,
:mod:`~mmrag.testing.chinese_clip`) describes its families with a :class:`FamilyRecipe`;
:mod:`~mmrag.testing.dual_encoders` builds any of them from an :class:`ArchSpec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = [
    "FAMILIES",
    "MAX_TEXT_LENGTH",
    "ArchSpec",
    "FamilyRecipe",
    "text_kwargs",
    "tower_configs",
]

FAMILIES: tuple[str, ...] = ("clip", "siglip", "siglip2", "chinese_clip")
"""Model families that :func:`~mmrag.testing.build_tiny_model` can build."""

MAX_TEXT_LENGTH: dict[str, int] = {"clip": 77, "siglip": 64, "siglip2": 64, "chinese_clip": 52}
"""Tokenizer ``model_max_length`` (and text position budget) per family."""


def text_kwargs(family: str) -> dict[str, Any]:
    """Processor/tokenizer kwargs used to embed text with ``family`` (the parity recipe).

    SigLIP families were trained on text padded to 64 tokens, so they need
    ``padding="max_length", max_length=64``; the CLIP families use dynamic padding.

    Args:
        family: One of :data:`FAMILIES`.

    Returns:
        A dict such as ``{"padding": "max_length", "max_length": 64, "truncation": True}``.
    """
    if family in ("siglip", "siglip2"):
        return {"padding": "max_length", "max_length": MAX_TEXT_LENGTH[family], "truncation": True}
    return {"padding": True, "truncation": True, "max_length": MAX_TEXT_LENGTH[family]}


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A dual-encoder architecture: tiny for tests, real sizes for benchmarks.

    Attributes:
        family: One of :data:`FAMILIES` (which model/processor classes are used).
        text: Text-tower config kwargs (including the real ``vocab_size``).
        vision: Vision-tower config kwargs.
        projection_dim: Joint embedding dim (``None`` for SigLIP, whose embedding dim is the
            hidden size).
        image_processor: Image-processor kwargs.
        reference: The hub checkpoint whose sizes are mirrored (never downloaded).
    """

    family: str
    text: Mapping[str, Any]
    vision: Mapping[str, Any]
    projection_dim: int | None
    image_processor: Mapping[str, Any]
    reference: str = ""


@dataclasses.dataclass(frozen=True)
class FamilyRecipe:
    """How to build one dual-encoder family with transformers.

    Attributes:
        family: One of :data:`FAMILIES`.
        model_class: The transformers model class name, e.g. ``"CLIPModel"``.
        processor_class: The processor class name, e.g. ``"CLIPProcessor"``.
        image_processor_class: The image processor class name (its ``...Pil`` variant is used
            when torchvision is missing, as ``AutoImageProcessor`` does).
        tiny_spec: ``projection_dim -> ArchSpec`` of the tiny test model.
        make_config: ``(spec, tokenizer, tiny) -> config``; ``tiny`` enlarges the init scale.
        condition_tiny_weights: Re-draws some weights of a freshly drawn tiny model (in place,
            with the seeded global torch RNG) so that inputs give clearly different vectors.
    """

    family: str
    model_class: str
    processor_class: str
    image_processor_class: str
    tiny_spec: Callable[[int], ArchSpec]
    make_config: Callable[[ArchSpec, PreTrainedTokenizerBase, bool], PretrainedConfig]
    condition_tiny_weights: Callable[[Any], None] | None = None


def tower_configs(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh ``(text, vision)`` config kwargs of ``spec``, the text ``vocab_size`` defaulting to the tokenizer's.

    Args:
        spec: The architecture.
        tokenizer: The tokenizer the model is saved with.

    Returns:
        Two new dicts (safe to update).

    Raises:
        ValueError: ``spec`` has a text ``vocab_size`` smaller than the tokenizer.
    """
    text = dict(spec.text)
    vision = dict(spec.vision)
    text.setdefault("vocab_size", len(tokenizer))
    if text["vocab_size"] < len(tokenizer):
        raise ValueError("text vocab_size smaller than the tokenizer")
    return text, vision
