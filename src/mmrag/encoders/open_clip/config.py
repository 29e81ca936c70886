"""OpenCLIP's ``open_clip_config.json`` read, checked and turned into a transformers ``CLIPConfig``.

OpenCLIP describes a model as ``{"model_cfg": {...}, "preprocess_cfg": {...}}``. Only the standard
layout converts to transformers' CLIP classes: a ViT image tower (patch embedding, class token,
learned positions, ``ln_pre``, pre-norm blocks, ``ln_post`` on the class token, a linear projection)
and OpenCLIP's own causal text transformer pooled at the highest token id (``argmax``) or at an end
token. Anything else (a timm or ConvNeXt tower, OpenAI's ModifiedResNet, a Hugging Face text tower,
CoCa, SigLIP-style models with a logit bias, layer scale, attention pooling...) is refused with an
:class:`~mmrag.errors.UnsupportedModelError` that names the architecture or field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmrag.errors import UnsupportedModelError

if TYPE_CHECKING:
    from transformers import CLIPConfig

__all__ = ["OpenClipConfig", "OpenClipTower", "parse_open_clip_config"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ARGMAX_EOS_ID = 2
"""transformers' CLIP pools at ``argmax(input_ids)`` when the text config's ``eos_token_id`` is 2."""

# Fields that must keep OpenCLIP's default for the conversion to be exact: field -> accepted values.
_VISION_FIXED: dict[str, tuple[Any, ...]] = {
    "ls_init_value": (None,),
    "attentional_pool": (False,),
    "no_ln_pre": (False,),
    "pos_embed_type": ("learnable", "sin_cos_2d"),
    "final_ln_after_pool": (False,),
    "pool_type": ("tok",),
    "block_type": (None, "default"),
    "qk_norm": (False,),
    "scaled_cosine_attn": (False,),
    "scale_heads": (False,),
    "scale_attn_inner": (False,),
    "scale_attn": (False,),
    "scale_fc": (False,),
}
_TEXT_FIXED: dict[str, tuple[Any, ...]] = {
    "text_arch": ("clip",),
    "embed_cls": (False,),
    "no_causal_mask": (False,),
    "final_ln_after_pool": (False,),
    "proj_type": ("linear",),
    "proj_bias": (False,),
    "ls_init_value": (None,),
    "tokenizer_type": ("",),
    "tokenizer_mode": (None, ""),
    "tokenizer_kwargs": (None, {}),
    "reg_tokens": (0,),
    **{name: value for name, value in _VISION_FIXED.items() if name.startswith(("block", "qk", "scale"))},
}
_VISION_KNOWN = {
    "layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "act_kwargs", "norm_kwargs",
    "patch_dropout", "output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained",
    "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path", "image_seq_len",
}  # fmt: skip
_TEXT_KNOWN = {
    "context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "act_kwargs", "norm_kwargs",
    "pool_type", "eos_id", "pad_id", "bos_id", "hf_tokenizer_name", "output_tokens", "variable_text",
    "hf_model_pretrained", "hf_proj_type", "hf_pooler_type", "tiktoken_name",
}  # fmt: skip
_MODEL_KNOWN = {
    "embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "custom_text", "init_logit_scale", "nonscalar_logit_scale",
}  # fmt: skip


@dataclass(frozen=True)
class OpenClipTower:
    """One tower's sizes, as transformers' CLIP config names them.

    Attributes:
        hidden_size: Width of the residual stream.
        num_hidden_layers: Transformer blocks.
        num_attention_heads: Attention heads.
        intermediate_size: MLP width (``width * mlp_ratio``).
        hidden_act: ``"gelu"``, ``"quick_gelu"`` or ``"gelu_pytorch_tanh"``.
        layer_norm_eps: LayerNorm epsilon.
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float


@dataclass(frozen=True)
class OpenClipConfig:
    """A convertible OpenCLIP model: both towers, the projection width and the preprocessing.

    Attributes:
        embed_dim: Projection (embedding) dimension.
        vision: The image tower.
        text: The text tower.
        image_size: Square input resolution in pixels.
        patch_size: Square patch size in pixels.
        context_length: Text positions (tokens per text, start and end token included).
        vocab_size: Rows of the token embedding.
        text_eos_id: The ``eos_token_id`` that makes transformers pool where OpenCLIP pools
            (:data:`ARGMAX_EOS_ID` for OpenCLIP's ``argmax`` pooling).
        hf_tokenizer_name: The tokenizer OpenCLIP would load from the hub, if the config names one
            (otherwise OpenCLIP uses OpenAI's CLIP BPE).
        image_mean: Per-channel mean.
        image_std: Per-channel standard deviation.
        interpolation: ``"bicubic"`` or ``"bilinear"``.
        resize_mode: ``"shortest"`` (resize the shortest edge, centre crop) or ``"squash"``
            (resize to a square, ignoring the aspect ratio).
    """

    embed_dim: int
    vision: OpenClipTower
    text: OpenClipTower
    image_size: int
    patch_size: int
    context_length: int
    vocab_size: int
    text_eos_id: int
    hf_tokenizer_name: str | None
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    interpolation: str
    resize_mode: str

    def clip_config(self, *, bos_token_id: int | None = None, pad_token_id: int | None = None) -> CLIPConfig:
        """The transformers ``CLIPConfig`` of the same architecture.

        Args:
            bos_token_id: The tokenizer's start token (recorded only).
            pad_token_id: The tokenizer's padding token (recorded only).

        Returns:
            A ``CLIPConfig``.
        """
        from transformers import CLIPConfig

        text = {
            **_tower_dict(self.text),
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.context_length,
            "eos_token_id": self.text_eos_id,
            "bos_token_id": bos_token_id,
            "pad_token_id": pad_token_id,
            "projection_dim": self.embed_dim,
        }
        vision = {
            **_tower_dict(self.vision),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "projection_dim": self.embed_dim,
        }
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=self.embed_dim)

    def image_processor_kwargs(self) -> dict[str, Any]:
        """Settings for transformers' ``CLIPImageProcessorPil`` that repeat OpenCLIP's eval transform.

        Returns:
            Keyword arguments: size, centre crop, resample filter, mean and std.
        """
        from PIL import Image

        resample = Image.Resampling.BILINEAR if self.interpolation == "bilinear" else Image.Resampling.BICUBIC
        square = {"height": self.image_size, "width": self.image_size}
        resize: dict[str, Any] = (
            {"size": {"shortest_edge": self.image_size}, "do_center_crop": True, "crop_size": square}
            if self.resize_mode == "shortest"
            else {"size": square, "do_center_crop": False, "crop_size": square}
        )
        return {
            **resize,
            "resample": int(resample),
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_convert_rgb": True,
        }


def _tower_dict(tower: OpenClipTower) -> dict[str, Any]:
    return {
        "hidden_size": tower.hidden_size,
        "num_hidden_layers": tower.num_hidden_layers,
        "num_attention_heads": tower.num_attention_heads,
        "intermediate_size": tower.intermediate_size,
        "hidden_act": tower.hidden_act,
        "layer_norm_eps": tower.layer_norm_eps,
    }


def parse_open_clip_config(raw: Mapping[str, Any], model: str) -> OpenClipConfig:
    """Read an ``open_clip_config.json`` and check that it converts to transformers' CLIP.

    Args:
        raw: The parsed JSON (``{"model_cfg": ..., "preprocess_cfg": ...}``).
        model: The model's name, for messages.

    Returns:
        The convertible configuration.

    Raises:
        UnsupportedModelError: The architecture has no transformers CLIP equivalent; the message
            names it (timm tower, ModifiedResNet, Hugging Face text tower, CoCa, logit bias...) or
            the field that differs from the standard layout.
    """
    cfg = raw.get("model_cfg")
    if not isinstance(cfg, Mapping):
        raise UnsupportedModelError(f"OpenCLIP config of {model!r} has no 'model_cfg' object")
    vision = _section(cfg, "vision_cfg", model)
    text = _section(cfg, "text_cfg", model)
    _refuse_architecture(cfg, vision, text, model)
    _check_fields(cfg, _MODEL_KNOWN, {"custom_text": (False,)}, "model_cfg", model)
    _check_fields(vision, _VISION_KNOWN, _VISION_FIXED, "vision_cfg", model)
    _check_fields(text, _TEXT_KNOWN, _TEXT_FIXED, "text_cfg", model)
    quick_gelu = bool(cfg.get("quick_gelu", False))
    vision_width = int(vision.get("width", 768))
    head_width = int(vision.get("head_width", 64))
    text_width = int(text.get("width", 512))
    preprocess = raw.get("preprocess_cfg") or {}
    return OpenClipConfig(
        embed_dim=int(cfg["embed_dim"]),
        vision=OpenClipTower(
            hidden_size=vision_width,
            num_hidden_layers=int(vision.get("layers", 12)),
            num_attention_heads=vision_width // head_width,
            intermediate_size=int(vision_width * float(vision.get("mlp_ratio", 4.0))),
            hidden_act=_activation(quick_gelu, vision.get("act_kwargs"), "vision_cfg", model),
            layer_norm_eps=_eps(vision.get("norm_kwargs"), "vision_cfg", model),
        ),
        text=OpenClipTower(
            hidden_size=text_width,
            num_hidden_layers=int(text.get("layers", 12)),
            num_attention_heads=int(text.get("heads", 8)),
            intermediate_size=int(text_width * float(text.get("mlp_ratio", 4.0))),
            hidden_act=_activation(quick_gelu, text.get("act_kwargs"), "text_cfg", model),
            layer_norm_eps=_eps(text.get("norm_kwargs"), "text_cfg", model),
        ),
        image_size=_square(vision.get("image_size", 224), "image_size", model),
        patch_size=_square(vision.get("patch_size", 16), "patch_size", model),
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)),
        text_eos_id=_text_eos_id(text, model),
        hf_tokenizer_name=text.get("hf_tokenizer_name") or None,
        image_mean=_channels(preprocess.get("mean", OPENAI_MEAN), "mean", model),
        image_std=_channels(preprocess.get("std", OPENAI_STD), "std", model),
        interpolation=_interpolation(preprocess.get("interpolation", "bicubic"), model),
        resize_mode=_resize_mode(preprocess.get("resize_mode", "shortest"), model),
    )


def _section(cfg: Mapping[str, Any], name: str, model: str) -> Mapping[str, Any]:
    section = cfg.get(name, {})
    if not isinstance(section, Mapping):
        raise UnsupportedModelError(f"OpenCLIP config of {model!r}: model_cfg.{name} is not an object")
    return section


def _refuse_architecture(
    cfg: Mapping[str, Any], vision: Mapping[str, Any], text: Mapping[str, Any], model: str
) -> None:
    """Refuse, by name, the architectures transformers' CLIP has no equivalent for."""
    reason = None
    if vision.get("timm_model_name"):
        reason = f"its image tower is the timm model {vision['timm_model_name']!r} (vision_cfg.timm_model_name)"
        if "convnext" in str(vision["timm_model_name"]).lower():
            reason = f"its image tower is a ConvNeXt ({vision['timm_model_name']!r}, vision_cfg.timm_model_name)"
    elif isinstance(vision.get("layers"), (list, tuple)):
        reason = "its image tower is OpenAI's ModifiedResNet (vision_cfg.layers is a list of stage depths)"
    elif text.get("hf_model_name"):
        reason = f"its text tower is the Hugging Face model {text['hf_model_name']!r} (text_cfg.hf_model_name)"
    elif "multimodal_cfg" in cfg:
        reason = "it is a CoCa captioning model (model_cfg.multimodal_cfg)"
    elif cfg.get("init_logit_bias") is not None:
        reason = "it is a SigLIP-style sigmoid model with a logit bias (model_cfg.init_logit_bias)"
    elif cfg.get("custom_text"):
        reason = "it uses OpenCLIP's custom text tower (model_cfg.custom_text)"
    if reason is not None:
        raise UnsupportedModelError(
            f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: {reason}. mmrag converts "
            "OpenCLIP's standard ViT + text-transformer models (ViT-B-32, ViT-L-14, ViT-H-14, ... and their "
            "-quickgelu variants); for SigLIP use a transformers checkpoint (mmrag.list_models())"
        )


def _check_fields(
    section: Mapping[str, Any],
    known: set[str],
    fixed: Mapping[str, tuple[Any, ...]],
    where: str,
    model: str,
) -> None:
    for name, value in section.items():
        if name in fixed:
            if value not in fixed[name]:
                accepted = " or ".join(repr(v) for v in fixed[name])
                raise UnsupportedModelError(
                    f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: {where}.{name} is "
                    f"{value!r} (only {accepted} converts)"
                )
        elif name not in known and value not in (None, False, 0, "", {}, []):
            raise UnsupportedModelError(
                f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: {where}.{name} = {value!r} "
                "is a setting mmrag does not know how to convert"
            )


def _activation(quick_gelu: bool, act_kwargs: Any, where: str, model: str) -> str:
    if quick_gelu and not act_kwargs:
        return "quick_gelu"
    if not quick_gelu and not act_kwargs:
        return "gelu"
    if not quick_gelu and act_kwargs == {"approximate": "tanh"}:
        return "gelu_pytorch_tanh"
    raise UnsupportedModelError(
        f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: {where}.act_kwargs {act_kwargs!r} "
        f"with quick_gelu={quick_gelu}"
    )


def _eps(norm_kwargs: Any, where: str, model: str) -> float:
    if not norm_kwargs:
        return 1e-5  # torch.nn.LayerNorm's default, which OpenCLIP uses
    if isinstance(norm_kwargs, Mapping) and set(norm_kwargs) == {"eps"}:
        return float(norm_kwargs["eps"])
    raise UnsupportedModelError(
        f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: {where}.norm_kwargs {norm_kwargs!r}"
    )


def _square(value: Any, name: str, model: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and value[0] == value[1]:
            return int(value[0])
        raise UnsupportedModelError(
            f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: vision_cfg.{name} {list(value)} "
            "is not square"
        )
    if not isinstance(value, int) or value <= 0:
        raise UnsupportedModelError(f"OpenCLIP model {model!r}: vision_cfg.{name} {value!r} is not a positive int")
    return value


def _text_eos_id(text: Mapping[str, Any], model: str) -> int:
    pool = text.get("pool_type", "argmax")
    if pool == "argmax":
        return ARGMAX_EOS_ID
    eos_id = text.get("eos_id")
    if pool == "eos" and isinstance(eos_id, int) and eos_id != ARGMAX_EOS_ID:
        return eos_id
    detail = (
        "pool_type 'eos' with eos_id 2 (transformers' CLIP reads eos_token_id 2 as argmax pooling)"
        if pool == "eos"
        else f"pool_type {pool!r} (only 'argmax' and 'eos' convert)"
    )
    raise UnsupportedModelError(
        f"OpenCLIP model {model!r} cannot be converted to transformers' CLIP: text_cfg {detail}"
    )


def _channels(value: Any, name: str, model: str) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise UnsupportedModelError(f"OpenCLIP model {model!r}: preprocess_cfg.{name} {value!r} is not 3 channels")
    return values[0], values[1], values[2]


def _interpolation(value: Any, model: str) -> str:
    if value in ("bicubic", "bilinear"):
        return str(value)
    if value == "random":
        return "bicubic"  # OpenCLIP evaluates 'random' with bicubic
    raise UnsupportedModelError(f"OpenCLIP model {model!r}: preprocess_cfg.interpolation {value!r} is unknown")


def _resize_mode(value: Any, model: str) -> str:
    if value in ("shortest", "squash"):
        return str(value)
    raise UnsupportedModelError(
        f"OpenCLIP model {model!r} cannot be converted: preprocess_cfg.resize_mode {value!r} (letterbox padding of "
        "the longest edge) has no transformers image processor equivalent; 'shortest' and 'squash' convert"
    )
