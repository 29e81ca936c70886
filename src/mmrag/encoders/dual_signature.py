"""What identifies a dual encoder's vectors without its weights: dimension, text limit, preprocessing signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.encoders.preprocess import image_spec

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from mmrag.encoders.transformers_dual import DualFamily

__all__ = ["dual_preprocessing", "embedding_dim", "text_length_limit"]


def dual_preprocessing(
    family: DualFamily, max_text_length: int, image_processor: Any, fast_decode: bool, *, gpu_decode: bool = False
) -> str:
    """The ``preprocessing`` signature of a dual encoder, computable without its weights.

    Args:
        family: The family row.
        max_text_length: The text token limit.
        image_processor: The loaded image processor.
        fast_decode: Whether fast decoding was asked for (recorded only where
            it applies, i.e. the image processor has an :class:`ImageSpec`).
        gpu_decode: Whether GPU JPEG decoding is in effect (asked for, and
            :func:`~mmrag.encoders.preprocess.gpu_decode.gpu_decode_unavailable`
            gives no reason; recorded where fast decoding would be).

    Returns:
        E.g. ``"text:max_length=77,padding=longest;image:CLIPImageProcessorPil;size={shortest_edge:224};..."``,
        with ``";decode=fast"``, ``";decode=gpu"`` or ``";decode=gpu+fast"`` appended. Worker counts,
        batch sizes and ``compile`` change no vector and are not recorded.
    """
    padding = "max_length" if family.pad_to_max_length else "longest"
    parts = [f"text:max_length={max_text_length},padding={padding}", f"image:{type(image_processor).__name__}"]
    for name in ("size", "crop_size", "patch_size", "max_num_patches", "image_mean", "image_std", "resample"):
        value = getattr(image_processor, name, None)
        if value is not None:
            parts.append(f"{name}={_stable(value)}")
    modes = [mode for mode, on in (("gpu", gpu_decode), ("fast", fast_decode)) if on]
    if modes and image_spec(image_processor) is not None:
        parts.append("decode=" + "+".join(modes))
    return ";".join(parts)


def embedding_dim(config: PretrainedConfig) -> int:
    """Embedding dimension of a dual-encoder config.

    Args:
        config: A CLIP-family config.

    Returns:
        ``projection_dim`` where the family projects (CLIP, Chinese-CLIP), else
        the vision tower's hidden size (SigLIP's pooled head keeps it).
    """
    projection = getattr(config, "projection_dim", None)
    if projection:
        return int(projection)
    return int(config.vision_config.hidden_size)


def text_length_limit(config: PretrainedConfig, tokenizer: Any, default: int, *, tower: str = "text_config") -> int:
    """The most text tokens the model takes: the smaller of tokenizer and position limits.

    Args:
        config: The model config.
        tokenizer: The loaded tokenizer.
        default: Fallback when neither states a usable limit.
        tower: The config attribute holding the text tower's config (BLIP-2: ``"qformer_config"``).

    Returns:
        The token limit texts are truncated (and, for SigLIP, padded) to.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limits.append(tokenizer_limit)
    positions = getattr(getattr(config, tower, None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else default


def _stable(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_stable(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_stable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
