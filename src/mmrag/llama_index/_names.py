"""``model_name``, the name LlamaIndex's ``ClipEmbedding`` takes, read as mmrag's ``model``."""

from __future__ import annotations

import os

from mmrag.encoders import Encoder, get_preset
from mmrag.errors import InvalidInputError

__all__ = ["CLIP_NAMES", "check_model_name", "model_from_name"]

CLIP_NAMES: dict[str, str] = {
    "ViT-B/32": "clip-vit-b-32",
    "ViT-B/16": "clip-vit-b-16",
    "ViT-L/14": "clip-vit-l-14",
    "ViT-L/14@336px": "clip-vit-l-14-336",
}
"""OpenAI CLIP names (``ClipEmbedding(model_name=...)``) -> the mmrag preset with the same weights."""

_RESNETS = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64")


def model_from_name(model_name: str) -> str:
    """The ``model`` a ``model_name`` stands for.

    Args:
        model_name: An OpenAI CLIP name (``"ViT-B/32"``...), or anything ``model``
            takes (a preset alias, a hub id, a local directory).

    Returns:
        The preset for an OpenAI CLIP name, else ``model_name`` itself.

    Raises:
        mmrag.InvalidInputError: ``model_name`` is one of OpenAI's ResNet CLIPs,
            which have no Hugging Face checkpoint; the message names ``model=``.
    """
    if model_name in _RESNETS:
        raise InvalidInputError(
            f"model_name={model_name!r} is an OpenAI ResNet CLIP, which has no Hugging Face transformers "
            "checkpoint mmrag can load; pass model= with a preset from mmrag.list_models() (e.g. "
            "model='clip-vit-b-32', the weights of ClipEmbedding's default 'ViT-B/32') or a hub id"
        )
    return CLIP_NAMES.get(model_name, model_name)


def check_model_name(model_name: str | None, model: str | os.PathLike[str] | None, encoder: Encoder) -> None:
    """Refuse a ``model_name`` that names another model than the one in use.

    Args:
        model_name: The ``model_name`` argument, or ``None``.
        model: The ``model`` argument, or ``None`` (then ``encoder`` was passed in).
        encoder: The encoder in use.

    Raises:
        mmrag.InvalidInputError: ``model_name`` names another model; the message names ``model=``.
    """
    if model_name is None or _names(model_name) & _loaded_names(encoder):
        return
    if model is not None and model_name == os.fspath(model):
        return
    given = f"model={os.fspath(model)!r}" if model is not None else f"an encoder for {encoder.model_id!r}"
    raise InvalidInputError(
        f"got {given} and model_name={model_name!r}, which names another model; model_name is "
        "ClipEmbedding's name for model=: pass one of them"
    )


def _names(model_name: str) -> set[str]:
    """The names a ``model_name`` can be known by: itself, its preset alias and the preset's hub id."""
    names = {model_name, os.path.abspath(model_name)}
    alias = CLIP_NAMES.get(model_name, model_name)
    names.add(alias)
    preset = get_preset(alias)
    if preset is not None:
        names.add(preset.hub_id)
    return names


def _loaded_names(encoder: Encoder) -> set[str]:
    return {encoder.model_id, encoder.model_id.removeprefix("mmrag/")}
