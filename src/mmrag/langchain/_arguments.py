"""Constructor arguments of ``LocalMultiModalEmbeddings``: OpenCLIPEmbeddings' names, and an adopted encoder.

``langchain_experimental.open_clip.OpenCLIPEmbeddings`` takes ``model_name``
(an OpenCLIP architecture, default ``"ViT-H-14"``) and ``checkpoint`` (its
pretrained tag, default ``"laion2b_s32b_b79k"``). mmrag loads Hugging Face
checkpoints, so the pairs with a known Hugging Face copy of the same weights
are read as that ``model``; any other pair is refused with an error naming ``model=``.
"""

from __future__ import annotations

from typing import Any

from mmrag.encoders import Encoder, resolve_model_alias
from mmrag.errors import InvalidInputError, UnsupportedModelError

__all__ = ["adopted_fields", "model_from_open_clip_names"]

_DEFAULT_NAME, _DEFAULT_CHECKPOINT = "ViT-H-14", "laion2b_s32b_b79k"  # OpenCLIPEmbeddings' defaults


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
    if checkpoint is None and isinstance(name, str):
        try:  # a preset alias, hub id or directory under OpenCLIP's keyword, or an OpenAI CLIP name
            return {**rest, "model": resolve_model_alias(name) or name}
        except UnsupportedModelError:
            pass  # an OpenCLIP architecture without its tag: OpenCLIPEmbeddings' default checkpoint applies
    pair = (name or _DEFAULT_NAME, checkpoint or _DEFAULT_CHECKPOINT)
    try:
        model = resolve_model_alias(f"{pair[0]}:{pair[1]}")
    except UnsupportedModelError as exc:
        model, reason = None, str(exc)
    else:
        reason = "not an OpenCLIP name"
    if model is None:
        raise InvalidInputError(
            f"no Hugging Face copy is known of OpenCLIP model_name={pair[0]!r}, checkpoint={pair[1]!r} ({reason}); "
            "mmrag loads Hugging Face checkpoints: pass model= with a hub id (e.g. "
            "model='laion/CLIP-ViT-H-14-laion2B-s32B-b79K') or a preset from mmrag.list_models()"
        )
    return {**rest, "model": model}


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
