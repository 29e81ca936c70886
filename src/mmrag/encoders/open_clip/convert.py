"""OpenCLIP state dicts renamed (and reshaped) into transformers' ``CLIPModel`` layout.

OpenCLIP keeps the text tower at the top level (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.N``, ``ln_final``, ``text_projection``) and the image tower under
``visual.`` (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks.N``, ``ln_post``, ``proj``). Its blocks use ``nn.MultiheadAttention``, whose
packed ``in_proj_weight``/``in_proj_bias`` are split into transformers' ``q_proj``/``k_proj``/
``v_proj``; projections are stored ``(in, out)`` and become ``Linear`` weights ``(out, in)``.
Every key must be used and every transformers weight filled, with matching shapes, or the
conversion is refused: nothing is silently left at random initialisation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mmrag.errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch
    from transformers import CLIPConfig

__all__ = ["check_converted", "convert_state_dict", "unwrap_state_dict"]

_TOWER_KEYS = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_BLOCK = re.compile(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)")
_BLOCK_KEYS = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_BUFFERS = {"attn_mask", "visual.attn_mask"}  # causal mask buffers some checkpoints saved


def unwrap_state_dict(loaded: Mapping[str, object], model: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: a bare state dict or a training checkpoint's ``state_dict``.

    A ``module.`` prefix (left by distributed training) is removed.

    Args:
        loaded: What ``safetensors`` or ``torch.load`` returned.
        model: The model's name, for messages.

    Returns:
        Parameter name -> tensor.

    Raises:
        UnsupportedModelError: The file holds something other than tensors.
    """
    import torch

    inner = loaded.get("state_dict")
    source = inner if isinstance(inner, Mapping) else loaded
    state: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise UnsupportedModelError(
                f"OpenCLIP weights of {model!r} hold a {type(value).__name__} at {key!r}, not a tensor"
            )
        state[str(key).removeprefix("module.")] = value
    return state


def convert_state_dict(state: Mapping[str, torch.Tensor], model: str) -> dict[str, torch.Tensor]:
    """Rename an OpenCLIP CLIP state dict into transformers' ``CLIPModel`` names.

    Args:
        state: OpenCLIP parameter name -> tensor (see :func:`unwrap_state_dict`).
        model: The model's name, for messages.

    Returns:
        transformers parameter name -> tensor (split and transposed where the layouts differ).

    Raises:
        UnsupportedModelError: A key the standard ViT + text-transformer layout does not have
            (the message lists a few).
    """
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in _BUFFERS:
            continue
        if key in _TOWER_KEYS:
            converted[_TOWER_KEYS[key]] = value
        elif key in _TRANSPOSED:
            converted[_TRANSPOSED[key]] = value.t().contiguous()
        elif key == "logit_scale":
            converted["logit_scale"] = value.reshape(())
        elif (match := _BLOCK.fullmatch(key)) is not None:
            tower = "vision_model" if match.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{match.group(2)}."
            if not _convert_block(match.group(3), value, prefix, converted):
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise UnsupportedModelError(
            f"OpenCLIP weights of {model!r} have parameters the standard ViT + text-transformer layout does not "
            f"have, so they cannot be converted to transformers' CLIP: {', '.join(sorted(unknown)[:6])}"
            + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        )
    return converted


def _convert_block(name: str, value: torch.Tensor, prefix: str, out: dict[str, torch.Tensor]) -> bool:
    if name in _BLOCK_KEYS:
        out[prefix + _BLOCK_KEYS[name]] = value
        return True
    if name in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if name.endswith("weight") else "bias"
        for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
            out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk.contiguous()
        return True
    return False


def check_converted(converted: Mapping[str, torch.Tensor], config: CLIPConfig, model: str) -> None:
    """Check that the converted weights fill a ``CLIPModel`` of ``config`` exactly.

    The model is built on the ``meta`` device (no memory, no initialisation) only to read its
    parameter names and shapes.

    Args:
        converted: What :func:`convert_state_dict` returned.
        config: The config the model will be built from.
        model: The model's name, for messages.

    Raises:
        UnsupportedModelError: Missing weights, or shapes that differ from the config (the
            weights were saved for another architecture than ``open_clip_config.json`` says).
    """
    import torch
    from transformers import CLIPModel

    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in CLIPModel(config).state_dict().items()}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(
        f"{name} {tuple(converted[name].shape)} vs {shape}"
        for name, shape in expected.items()
        if name in converted and tuple(converted[name].shape) != shape
    )
    problems = [
        *(f"missing {name}" for name in missing[:4]),
        *(f"unexpected {name}" for name in unexpected[:4]),
        *(f"shape of {item}" for item in wrong[:4]),
    ]
    if problems:
        raise UnsupportedModelError(
            f"OpenCLIP weights of {model!r} do not match its open_clip_config.json: {'; '.join(problems)}"
        )
