"""Constructor arguments of ``LocalMultiModalEmbeddings``: OpenCLIPEmbeddings' names, and an adopted encoder.

``langchain_experimental.open_clip.OpenCLIPEmbeddings`` takes ``model_name``
(an OpenCLIP architecture, default ``"ViT-H-14"``) and ``checkpoint`` (its
pretrained tag, default ``"laion2b_s32b_b79k"``). mmrag loads Hugging Face
checkpoints, so the pairs with a known Hugging Face copy of the same weights
are read as that ``model``; any other pair is refused with an error naming ``model=``.
"""

from __future__ import annotations

from typing import Any

from mmrag.encoders import Encoder
from mmrag.errors import InvalidInputError

__all__ = ["OPEN_CLIP_CHECKPOINTS", "adopted_fields", "model_from_open_clip_names"]

OPEN_CLIP_CHECKPOINTS: dict[tuple[str, str], str] = {
    ("ViT-B-32", "openai"): "clip-vit-b-32",
    ("ViT-B-16", "openai"): "clip-vit-b-16",
    ("ViT-L-14", "openai"): "clip-vit-l-14",
    ("ViT-L-14-336", "openai"): "clip-vit-l-14-336",
    ("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    ("ViT-L-14", "laion2b_s32b_b82k"): "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    ("ViT-H-14", "laion2b_s32b_b79k"): "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    ("ViT-g-14", "laion2b_s34b_b88k"): "laion/CLIP-ViT-g-14-laion2B-s34B-b88K",
    ("ViT-bigG-14", "laion2b_s39b_b160k"): "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
}
"""OpenCLIP ``(model_name, checkpoint)`` -> the mmrag preset or hub id holding the same weights."""

_DEFAULT_NAME, _DEFAULT_CHECKPOINT = "ViT-H-14", "laion2b_s32b_b79k"  # OpenCLIPEmbeddings' defaults
_ARCHITECTURES = {name for name, _ in OPEN_CLIP_CHECKPOINTS}


def model_from_open_clip_names(data: dict[str, Any]) -> dict[str, Any]:
    """Replace OpenCLIPEmbeddings' ``model_name`` / ``checkpoint`` in constructor data by ``model``.

    Args:
        data: The keyword arguments (not changed).

    Returns:
        ``data`` with ``model`` in their place: the Hugging Face copy of a known
        OpenCLIP pair, or ``model_name`` itself when it is no OpenCLIP
        architecture and there is no ``checkpoint`` (a preset alias or hub id).

    Raises:
        mmrag.InvalidInputError: ``model`` is given too, or the pair has no known
            Hugging Face copy; the message names ``model=``.
    """
    if "model_name" not in data and "checkpoint" not in data:
        return data
    rest = dict(data)
    name, checkpoint = rest.pop("model_name", None), rest.pop("checkpoint", None)
    if "model" in rest:
        raise InvalidInputError(
            f"got model={rest['model']!r} and OpenCLIPEmbeddings' model_name/checkpoint; they name the same "
            "thing: pass model= alone"
        )
    if checkpoint is None and isinstance(name, str) and name not in _ARCHITECTURES:
        return {**rest, "model": name}  # a preset alias, hub id or directory under OpenCLIP's keyword
    pair = (name or _DEFAULT_NAME, checkpoint or _DEFAULT_CHECKPOINT)
    if pair in OPEN_CLIP_CHECKPOINTS:
        return {**rest, "model": OPEN_CLIP_CHECKPOINTS[pair]}
    known = ", ".join(f"{c!r}" for n, c in OPEN_CLIP_CHECKPOINTS if n == pair[0]) or "none"
    raise InvalidInputError(
        f"no Hugging Face copy is known of OpenCLIP model_name={pair[0]!r}, checkpoint={pair[1]!r} (known "
        f"checkpoints of {pair[0]!r}: {known}); mmrag loads Hugging Face checkpoints: pass model= with a hub id "
        "(e.g. model='laion/CLIP-ViT-H-14-laion2B-s32B-b79K') or a preset from mmrag.list_models()"
    )


def adopted_fields(encoder: Encoder, data: dict[str, Any], batch_size: int | None) -> dict[str, Any]:
    """The fields of an object adopting a loaded ``encoder``, after checking nothing contradicts it.

    Args:
        encoder: The encoder passed as ``encoder=``.
        data: The other keyword arguments (fields).
        batch_size: The ``batch_size`` argument, or ``None``.

    Returns:
        ``data`` with ``model``, ``device``, ``dtype`` and ``batch_size`` taken from the encoder.

    Raises:
        mmrag.InvalidInputError: ``model`` is given too, or a different ``batch_size``.
    """
    if "model" in data:
        raise InvalidInputError(
            f"pass either encoder= or model=, not both (got an encoder for {encoder.model_id!r} and "
            f"model={data['model']!r}); the encoder is already loaded"
        )
    if batch_size is not None and batch_size != encoder.batch_size:
        raise InvalidInputError(
            f"batch_size={batch_size} differs from the encoder's batch_size={encoder.batch_size}; "
            "load the encoder with the batch size you want, or leave batch_size out"
        )
    dtype = str(encoder.dtype).removeprefix("torch.")
    return {
        **data,
        "model": encoder.model_id,
        "device": str(encoder.device),
        "dtype": dtype,
        "batch_size": encoder.batch_size,
    }
