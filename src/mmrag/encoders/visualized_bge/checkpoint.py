"""Reading a Visualized-BGE ``.pth`` checkpoint safely and splitting it into its parts.

A ``.pth`` file is a pickle. It is read with ``torch.load(weights_only=True)``
only: tensors and plain containers load, anything that would need code to
unpickle is refused before that code runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mmrag.errors import ModelNotAvailableError, UnsupportedModelError

__all__ = ["VisualizedBgeCheckpoint", "load_pth_state_dict", "split_checkpoint"]

_PARTS = ("bge_embeddings.", "bge_encoder.", "bge_pooler.", "model_visual.visual.", "visual_proj.")
_UNUSED = (
    "model_visual.logit_scale",  # the CLIP temperature; no part of an embedding
    "model_visual.visual.head.",  # EVA-CLIP's projection to the CLIP space; Visualized-BGE uses its tokens
    "model_visual.visual.norm.",  # the final norm of the pooled CLIP output, likewise unused
    "model_visual.visual.rope.",  # rotary tables: constants, recomputed from the sizes
)


def load_pth_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state dict with ``torch.load(weights_only=True)``.

    Args:
        path: The file.

    Returns:
        Tensor name to tensor (on the CPU). A ``{"state_dict": ...}`` or
        ``{"model": ...}`` wrapper is unwrapped and a ``module.`` prefix
        (from DataParallel) removed.

    Raises:
        ModelNotAvailableError: The file does not exist or cannot be read.
        UnsupportedModelError: The pickle needs code to load (refused, and
            that code never runs), or holds no tensors.
    """
    try:
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelNotAvailableError(f"checkpoint {os.fspath(path)!r} does not exist") from exc
    except Exception as exc:  # torch raises UnpicklingError (weights-only refusal), RuntimeError (bad zip) ...
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UnsupportedModelError(
                f"checkpoint {os.fspath(path)!r} needs Python code to unpickle (not only tensors), so mmrag refused "
                "to load it; its code was not run. Visualized-BGE checkpoints are plain state dicts: re-save it "
                "with torch.save(model.state_dict(), path) from a trusted environment"
            ) from exc
        raise ModelNotAvailableError(
            f"cannot read checkpoint {os.fspath(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    state = loaded
    for key in ("state_dict", "model", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsupportedModelError(f"checkpoint {os.fspath(path)!r} holds no state dict of tensors")
    return {
        str(k).removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)
    }  # fmt: skip


@dataclass(frozen=True)
class VisualizedBgeCheckpoint:
    """A Visualized-BGE state dict split by part (each without its prefix).

    Attributes:
        embeddings: ``bge_embeddings.*``: the text model's embeddings.
        encoder: ``bge_encoder.*``: the text model's transformer layers.
        pooler: ``bge_pooler.*`` (may be empty).
        vision: ``model_visual.visual.*``: the EVA02 tower.
        visual_proj: ``visual_proj.*``: image tokens to the text width.
    """

    embeddings: dict[str, torch.Tensor]
    encoder: dict[str, torch.Tensor]
    pooler: dict[str, torch.Tensor]
    vision: dict[str, torch.Tensor]
    visual_proj: dict[str, torch.Tensor]


def split_checkpoint(state: Mapping[str, torch.Tensor], name: str) -> VisualizedBgeCheckpoint:
    """Split a state dict in the original's layout into its parts.

    Args:
        state: The loaded tensors.
        name: The checkpoint's name, for messages.

    Returns:
        The parts.

    Raises:
        UnsupportedModelError: A part is missing, or a tensor belongs to none.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {prefix: {} for prefix in _PARTS}
    strays = []
    for key, tensor in state.items():
        if key.startswith(_UNUSED) or key.endswith((".position_ids", ".token_type_ids")) or ".attn.rope." in key:
            continue  # unused by inference, or constants the text model and the tower rebuild
        prefix = next((p for p in _PARTS if key.startswith(p)), None)
        if prefix is None:
            strays.append(key)
        else:
            parts[prefix][key.removeprefix(prefix)] = tensor
    missing = [p.rstrip(".") for p in _PARTS if p != "bge_pooler." and not parts[p]]
    if missing or strays:
        found = f"missing {', '.join(missing)}" if missing else f"unexpected tensors {', '.join(strays[:5])}"
        raise UnsupportedModelError(
            f"{name!r} is not a Visualized-BGE checkpoint ({found}); expected the layout of FlagEmbedding's "
            "Visualized_BGE state dict (bge_embeddings.*, bge_encoder.*, bge_pooler.*, model_visual.*, visual_proj.*)"
        )
    return VisualizedBgeCheckpoint(*(parts[p] for p in _PARTS))
