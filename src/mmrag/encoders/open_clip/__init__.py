"""OpenCLIP-format checkpoints (``open_clip_config.json`` + weights), converted to transformers' CLIP on load.

:func:`mmrag.load_encoder` takes ``"hf-hub:<repo>"``, a hub id or a local directory in OpenCLIP's
own format; standard ViT + text-transformer models become a ``"clip"`` family encoder, everything
else is refused by name. Modules: :mod:`~mmrag.encoders.open_clip.config` (the config, checked and
converted), :mod:`~mmrag.encoders.open_clip.convert` (the weights),
:mod:`~mmrag.encoders.open_clip.checkpoint` (files, tokenizer, the loader).
"""

from __future__ import annotations

from mmrag.encoders.open_clip.checkpoint import (
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_PICKLE_WEIGHTS,
    OPEN_CLIP_WEIGHTS_FILE,
    OPENAI_CLIP_TOKENIZER,
    OpenClipCheckpoint,
    find_open_clip_checkpoint,
    open_clip_family,
)
from mmrag.encoders.open_clip.config import OpenClipConfig, OpenClipTower, parse_open_clip_config
from mmrag.encoders.open_clip.convert import check_converted, convert_state_dict, unwrap_state_dict

__all__ = [
    "OPENAI_CLIP_TOKENIZER",
    "OPEN_CLIP_CONFIG",
    "OPEN_CLIP_PICKLE_WEIGHTS",
    "OPEN_CLIP_WEIGHTS_FILE",
    "OpenClipCheckpoint",
    "OpenClipConfig",
    "OpenClipTower",
    "check_converted",
    "convert_state_dict",
    "find_open_clip_checkpoint",
    "open_clip_family",
    "parse_open_clip_config",
    "unwrap_state_dict",
]
