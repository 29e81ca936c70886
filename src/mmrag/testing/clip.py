"""The CLIP family: ``CLIPModel`` + ``CLIPProcessor`` (``CLIPImageProcessor`` + byte-level BPE ``CLIPTokenizer``).

Tiny test model: both towers hidden 32, 2 layers, 4 heads; 32 px images, patch 8; 77 text
positions; a larger init scale so that a tiny random model gives clearly different vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.testing.building import TINY_TOWER
from mmrag.testing.families import MAX_TEXT_LENGTH, ArchSpec, FamilyRecipe, tower_configs

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = ["CLIP", "TINY_INIT_FACTOR"]

TINY_INIT_FACTOR = 4.0
"""``initializer_factor`` of tiny CLIP-style models (the default 1.0 gives near-identical vectors)."""


def _tiny_spec(projection_dim: int) -> ArchSpec:
    return ArchSpec(
        "clip",
        {**TINY_TOWER, "max_position_embeddings": MAX_TEXT_LENGTH["clip"]},
        {**TINY_TOWER, "image_size": 32, "patch_size": 8},
        projection_dim,
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
    )


def _config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, tiny: bool) -> PretrainedConfig:
    import transformers

    text, vision = tower_configs(spec, tokenizer)
    text.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    kw: dict[str, Any] = {}
    if tiny:
        kw["initializer_factor"] = text["initializer_factor"] = vision["initializer_factor"] = TINY_INIT_FACTOR
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec.projection_dim, **kw)


CLIP = FamilyRecipe("clip", "CLIPModel", "CLIPProcessor", "CLIPImageProcessor", _tiny_spec, _config)
"""How to build a CLIP model."""
