"""Model families behind one :class:`Encoder` interface, and the preset registry."""

from __future__ import annotations

from mmrag.encoders.base import Encoder, FusedEmbeddings
from mmrag.encoders.blip2 import Blip2FeatureEncoder
from mmrag.encoders.lazy import LazyEncoder
from mmrag.encoders.loading import (
    LoadRequest,
    encoder_signature,
    load_encoder,
    register_family,
    supported_model_types,
)
from mmrag.encoders.names import OPENAI_CLIP_NAMES, resolve_model_alias
from mmrag.encoders.presets import DEFAULT_MODEL, PRESETS, ModelPreset, get_preset, list_models

__all__ = [
    "DEFAULT_MODEL",
    "OPENAI_CLIP_NAMES",
    "PRESETS",
    "Blip2FeatureEncoder",
    "Encoder",
    "FusedEmbeddings",
    "LazyEncoder",
    "LoadRequest",
    "ModelPreset",
    "encoder_signature",
    "get_preset",
    "list_models",
    "load_encoder",
    "register_family",
    "resolve_model_alias",
    "supported_model_types",
]
