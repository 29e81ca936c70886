"""The Chinese-CLIP family: ``ChineseCLIPModel`` + ``ChineseCLIPProcessor`` (WordPiece ``BertTokenizer``).

Tiny test model: both towers hidden 32, 2 layers, 4 heads; 32 px images, patch 8; the BERT text
tower has 64 positions and pools ``[CLS]``; the tokenizer allows 52 tokens (the original
Chinese-CLIP ``context_length``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.testing.building import TINY_TOWER
from mmrag.testing.clip import TINY_INIT_FACTOR
from mmrag.testing.families import ArchSpec, FamilyRecipe, tower_configs

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = ["CHINESE_CLIP"]


def _tiny_spec(projection_dim: int) -> ArchSpec:
    return ArchSpec(
        "chinese_clip",
        {**TINY_TOWER, "max_position_embeddings": 64, "type_vocab_size": 2},
        {**TINY_TOWER, "image_size": 32, "patch_size": 8},
        projection_dim,
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
    )


def _config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, tiny: bool) -> PretrainedConfig:
    import transformers

    text, vision = tower_configs(spec, tokenizer)
    text.update(pad_token_id=tokenizer.pad_token_id)
    kw: dict[str, Any] = {}
    if tiny:
        kw["initializer_factor"] = vision["initializer_factor"] = TINY_INIT_FACTOR
    return transformers.ChineseCLIPConfig(
        text_config=text, vision_config=vision, projection_dim=spec.projection_dim, **kw
    )


def _condition_tiny_weights(model: Any) -> None:
    """Re-draw some text-tower weights so that different sentences give clearly different vectors.

    The BERT text tower pools the ``[CLS]`` token of a post-LayerNorm encoder; with the default
    ``initializer_range=0.02`` the ``[CLS]`` output hardly depends on the other tokens (cosine
    ~0.999 between unrelated sentences). Larger word embeddings and value/MLP weights make the
    tiny model input-sensitive. Uses the (already seeded) global torch RNG.
    """
    import torch

    text = model.text_model
    with torch.no_grad():
        emb = text.embeddings.word_embeddings
        emb.weight.normal_(0.0, 1.0)
        if emb.padding_idx is not None:
            emb.weight[emb.padding_idx].zero_()
        for name, param in text.encoder.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                std = 0.2 if (".query." in name or ".key." in name) else 0.5
                param.normal_(0.0, std)


CHINESE_CLIP = FamilyRecipe(
    "chinese_clip",
    "ChineseCLIPModel",
    "ChineseCLIPProcessor",
    "ChineseCLIPImageProcessor",
    _tiny_spec,
    _config,
    _condition_tiny_weights,
)
"""How to build a Chinese-CLIP model."""
