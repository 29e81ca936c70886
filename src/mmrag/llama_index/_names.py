"""``model_name``, the name LlamaIndex's ``ClipEmbedding`` takes, read as mmrag's ``model``."""

from __future__ import annotations

import os

from mmrag.encoders import OPENAI_CLIP_NAMES, Encoder, get_preset, resolve_model_alias
from mmrag.errors import InvalidInputError, UnsupportedModelError

__all__ = ["CLIP_NAMES", "check_model_name", "model_from_name"]

CLIP_NAMES = OPENAI_CLIP_NAMES
"""OpenAI CLIP names (``ClipEmbedding(model_name=...)``) -> the mmrag preset with the same weights."""


def model_from_name(model_name: str) -> str:
    """The ``model`` a ``model_name`` stands for.

    Args:
        model_name: An OpenAI CLIP name (``"ViT-B/32"``...), or anything ``model``
            takes (a preset alias, a hub id, a local directory).

    Returns:
        The preset for an OpenAI CLIP name, else ``model_name`` itself.

    Raises:
        mmrag.InvalidInputError: ``model_name`` is a CLIP name mmrag cannot load
            (e.g. one of OpenAI's ResNet CLIPs); the message names ``model=``.
    """
    try:
        alias = resolve_model_alias(model_name)
    except UnsupportedModelError as exc:
        raise InvalidInputError(
            f"model_name={model_name!r}: {exc}; pass model= with a preset from mmrag.list_models() (e.g. "
            "model='clip-vit-b-32', the weights of ClipEmbedding's default 'ViT-B/32') or a hub id"
        ) from exc
    return alias or model_name


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
