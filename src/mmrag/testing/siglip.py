"""The SigLIP families, which have no projection (the embedding dim is the hidden size).

* ``"siglip"``: ``SiglipModel`` + ``SiglipProcessor`` (``SiglipImageProcessor`` +
  ``GemmaTokenizer``, like the multilingual ``google/siglip2-*-patch16-224`` checkpoints, whose
  ``model_type`` is ``"siglip"``). Text must be padded to ``max_length`` 64.
* ``"siglip2"``: ``Siglip2Model`` + ``Siglip2Processor`` (NaFlex ``Siglip2ImageProcessor`` +
  lowercasing ``Siglip2Tokenizer``). Text padded to 64.

Tiny test models: towers of hidden ``projection_dim``, 2 layers; siglip takes 32 px images with
patch 8, siglip2 patch 16 and at most 256 patches (the ``Siglip2Processor`` call defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.testing.families import ArchSpec, FamilyRecipe, tower_configs

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = ["SIGLIP", "SIGLIP2"]


def _heads(hidden: int) -> int:
    for h in (4, 2, 1):
        if hidden % h == 0:
            return h
    return 1  # pragma: no cover


def _tiny_tower(projection_dim: int) -> dict[str, int]:
    return {
        "hidden_size": projection_dim,
        "intermediate_size": 2 * projection_dim,
        "num_hidden_layers": 2,
        "num_attention_heads": _heads(projection_dim),
    }


def _tiny_siglip_spec(projection_dim: int) -> ArchSpec:
    tower = _tiny_tower(projection_dim)
    return ArchSpec(
        "siglip",
        {**tower, "max_position_embeddings": 64},
        {**tower, "image_size": 32, "patch_size": 8},
        None,
        {"size": {"height": 32, "width": 32}},
    )


def _tiny_siglip2_spec(projection_dim: int) -> ArchSpec:
    # Siglip2Processor's class-level call defaults (patch_size=16, max_num_patches=256) override
    # the image processor's own settings, so we keep exactly those values in the image processor
    # AND the vision config (patch_size=16, num_patches=256, i.e. a 16x16 position grid). Images
    # are resized to at most 256 16x16 patches.
    tower = _tiny_tower(projection_dim)
    return ArchSpec(
        "siglip2",
        {**tower, "max_position_embeddings": 64},
        {**tower, "patch_size": 16, "num_patches": 256},
        None,
        {"patch_size": 16, "max_num_patches": 256},
    )


def _text_and_vision(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, Any], dict[str, Any]]:
    text, vision = tower_configs(spec, tokenizer)
    text.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text.setdefault("projection_size", text["hidden_size"])
    return text, vision


def _siglip_config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, tiny: bool) -> PretrainedConfig:
    import transformers

    text, vision = _text_and_vision(spec, tokenizer)
    return transformers.SiglipConfig(text_config=text, vision_config=vision)


def _siglip2_config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, tiny: bool) -> PretrainedConfig:
    import transformers

    text, vision = _text_and_vision(spec, tokenizer)
    return transformers.Siglip2Config(text_config=text, vision_config=vision)


SIGLIP = FamilyRecipe(
    "siglip", "SiglipModel", "SiglipProcessor", "SiglipImageProcessor", _tiny_siglip_spec, _siglip_config
)
"""How to build a SigLIP model (``model_type`` ``"siglip"``)."""

SIGLIP2 = FamilyRecipe(
    "siglip2", "Siglip2Model", "Siglip2Processor", "Siglip2ImageProcessor", _tiny_siglip2_spec, _siglip2_config
)
"""How to build a SigLIP 2 NaFlex model (``model_type`` ``"siglip2"``)."""
