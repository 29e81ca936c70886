"""Real-size random-weight models, for benchmarks: speed and memory do not depend on weight values.

The presets mirror the sizes of real hub checkpoints (never downloaded): the text embedding keeps
the real ``vocab_size`` (so parameter count, memory and load time are realistic) while the
tokenizer is the small locally trained one. Files are large (hundreds of MB to GB).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

from mmrag.testing.building import tower
from mmrag.testing.dual_encoders import build_dual_encoder, dual_config
from mmrag.testing.families import ArchSpec
from mmrag.testing.rerankers import RerankerArchSpec, build_reranker
from mmrag.testing.tokenizers import family_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = ["ARCHS", "RERANKER_ARCHS", "arch_config", "build_random_model", "build_random_reranker"]

# --------------------------------------------------------------------------------------------
# Dual encoders
# --------------------------------------------------------------------------------------------

_CLIP_TEXT_B = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
_VIT_B = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
}
_SIGLIP_TOWER_B = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
_CLIP_IP_224 = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}

ARCHS: dict[str, ArchSpec] = {
    "clip-b-32": ArchSpec(
        "clip",
        _CLIP_TEXT_B,
        {**_VIT_B, "patch_size": 32, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "openai/clip-vit-base-patch32",
    ),
    "clip-b-16": ArchSpec(
        "clip",
        _CLIP_TEXT_B,
        {**_VIT_B, "patch_size": 16, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "openai/clip-vit-base-patch16",
    ),
    "clip-l-14": ArchSpec(
        "clip",
        {**_CLIP_TEXT_B, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
        {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
            "hidden_act": "quick_gelu",
        },
        768,
        _CLIP_IP_224,
        "openai/clip-vit-large-patch14",
    ),
    "siglip2-b-16-512": ArchSpec(
        "siglip",
        {**_SIGLIP_TOWER_B, "vocab_size": 256000, "max_position_embeddings": 64},
        {**_SIGLIP_TOWER_B, "image_size": 512, "patch_size": 16},
        None,
        {"size": {"height": 512, "width": 512}},
        "google/siglip2-base-patch16-512",
    ),
    "siglip-b-16-224": ArchSpec(
        "siglip",
        {**_SIGLIP_TOWER_B, "vocab_size": 32000, "max_position_embeddings": 64},
        {**_SIGLIP_TOWER_B, "image_size": 224, "patch_size": 16},
        None,
        {"size": {"height": 224, "width": 224}},
        "google/siglip-base-patch16-224",
    ),
    "chinese-clip-b-16": ArchSpec(
        "chinese_clip",
        {
            "vocab_size": 21128,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
        },
        {**_VIT_B, "patch_size": 16, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "OFA-Sys/chinese-clip-vit-base-patch16",
    ),
}
"""Real-size architecture presets for :func:`build_random_model` (random weights)."""


def arch_config(arch: str) -> PretrainedConfig:
    """Return the transformers config :func:`build_random_model` would save for ``arch``.

    Cheap: builds only the (small, cached) tokenizer and the config object, no weights.

    Args:
        arch: A key of :data:`ARCHS`.

    Returns:
        A ``CLIPConfig`` / ``SiglipConfig`` / ``ChineseCLIPConfig`` with the real sizes.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    spec = ARCHS[arch]
    return dual_config(spec, family_tokenizer(spec.family), tiny=False)


def build_random_model(arch: str, path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a real-size architecture (see :data:`ARCHS`) with random weights, for benchmarks.

    The text embedding keeps the real ``vocab_size`` (so parameter count, memory and load time
    are realistic) but the tokenizer is the small locally trained one, so ids stay small.
    Note the files are large (e.g. ~600 MB for ``clip-b-32``, ~1.5 GB for ``siglip2-b-16-512``
    because of its 256k-token embedding).

    Args:
        arch: A key of :data:`ARCHS`.
        path: Output directory.
        seed: Seed for the random weights.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    return build_dual_encoder(ARCHS[arch], path, seed=seed, tiny=False)


# --------------------------------------------------------------------------------------------
# Rerankers
# --------------------------------------------------------------------------------------------

_VIT_B_384 = {**tower(768, 12, 12, 3072), "image_size": 384, "patch_size": 16}
_BERT_B = {**tower(768, 12, 12, 3072), "max_position_embeddings": 512}
_QFORMER_B = {**_BERT_B, "cross_attention_frequency": 2, "use_qformer_text_input": True}
_XLMR_B = {**tower(768, 12, 12, 3072), "max_position_embeddings": 514, "type_vocab_size": 1,
           "vocab_size": 250002}  # fmt: skip  # aligned by hand
_XLMR_L = {**_XLMR_B, **tower(1024, 24, 16, 4096)}

RERANKER_ARCHS: dict[str, RerankerArchSpec] = {
    "blip-itm-base": RerankerArchSpec(
        "blip_itm",
        {"vision_config": _VIT_B_384, "text_config": {**_BERT_B, "vocab_size": 30524}, "image_text_hidden_size": 256},
        384, reference="Salesforce/blip-itm-base-coco",
    ),
    "blip-itm-large": RerankerArchSpec(
        "blip_itm",
        {"vision_config": {**_VIT_B_384, **tower(1024, 24, 16, 4096)},
         "text_config": {**_BERT_B, "vocab_size": 30524}, "image_text_hidden_size": 256},
        384, reference="Salesforce/blip-itm-large-coco",
    ),
    "blip2-itm-vit-g": RerankerArchSpec(
        "blip2_itm",
        {"vision_config": {**tower(1408, 39, 16, 6144), "image_size": 224, "patch_size": 14},
         "qformer_config": {**_QFORMER_B, "vocab_size": 30523, "encoder_hidden_size": 1408},
         "num_query_tokens": 32, "image_text_hidden_size": 256},
        224, reference="Salesforce/blip2-itm-vit-g",
    ),
    "blip2-itm-vit-b": RerankerArchSpec(
        "blip2_itm",
        {"vision_config": {**tower(768, 12, 12, 3072), "image_size": 224, "patch_size": 16},
         "qformer_config": {**_QFORMER_B, "vocab_size": 30523, "encoder_hidden_size": 768},
         "num_query_tokens": 32, "image_text_hidden_size": 256},
        224, reference="Salesforce/blip2-itm-vit-g with a ViT-B/16 vision tower (CPU-sized)",
    ),
    "bge-reranker-base": RerankerArchSpec(
        "cross_encoder", {**_XLMR_B, "num_labels": 1}, model_type="xlm-roberta", reference="BAAI/bge-reranker-base"
    ),
    "bge-reranker-large": RerankerArchSpec(
        "cross_encoder", {**_XLMR_L, "num_labels": 1}, model_type="xlm-roberta", reference="BAAI/bge-reranker-large"
    ),
    "bge-reranker-v2-m3": RerankerArchSpec(
        "cross_encoder", {**_XLMR_L, "max_position_embeddings": 8194, "num_labels": 1}, model_type="xlm-roberta",
        reference="BAAI/bge-reranker-v2-m3",
    ),
}  # fmt: skip  # aligned by hand
"""Real-size reranker architectures for :func:`build_random_reranker` (random weights, benchmarks)."""


def build_random_reranker(arch: str, path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a real-size reranker architecture (see :data:`RERANKER_ARCHS`) with random weights.

    For benchmarks: speed does not depend on weight values. Vocabulary sizes are real (so memory
    and load time are), the tokenizer is the small WordPiece one. Files are large (~0.9 GB for
    ``blip-itm-base``, ~1.1 GB for ``bge-reranker-base``, ~4.6 GB for ``blip2-itm-vit-g``).

    Args:
        arch: A key of :data:`RERANKER_ARCHS`.
        path: Output directory.
        seed: Seed for the random weights.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    if arch not in RERANKER_ARCHS:
        raise KeyError(f"unknown reranker arch {arch!r}; expected one of {sorted(RERANKER_ARCHS)}")
    return build_reranker(RERANKER_ARCHS[arch], path, seed=seed, tiny=False)
