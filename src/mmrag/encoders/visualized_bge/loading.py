"""Loading Visualized-BGE: a ``.pth`` checkpoint (local or from the hub) plus its BGE text model.

The text model (a hub id or a local directory of ``BAAI/bge-base-en-v1.5`` or
``BAAI/bge-m3``) supplies only the config and the tokenizer; no weights are
read from it. Every weight comes from the ``.pth``, read with
``torch.load(weights_only=True)``. A preset's checkpoint is fetched with
``huggingface_hub.hf_hub_download`` (honouring ``revision`` and
``local_files_only``; ``revision`` applies to the checkpoint's repo only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.encoders.presets import ModelPreset, get_preset, list_models
from mmrag.errors import InvalidInputError, ModelNotAvailableError
from mmrag.options import LoadOptions

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__ = ["FAMILY", "is_visualized_bge_source", "load_visualized_bge"]

FAMILY = "visualized_bge"
"""The ``family`` of a Visualized-BGE encoder and its presets."""


def is_visualized_bge_source(model: object) -> bool:
    """Whether :func:`mmrag.load_encoder` should load ``model`` as Visualized-BGE.

    Args:
        model: What the caller passed.

    Returns:
        ``True`` for a Visualized-BGE preset alias and for any ``.pth`` path
        or hub file.
    """
    if isinstance(model, os.PathLike):
        return str(os.fspath(model)).lower().endswith(".pth")
    if not isinstance(model, str):
        return False
    preset = get_preset(model)
    if preset is not None and preset.family == FAMILY:
        return True
    return model.strip().lower().endswith(".pth")


def load_visualized_bge(
    model: str | os.PathLike[str], *, text_model: str | os.PathLike[str] | None, options: LoadOptions
) -> Encoder:
    """Build a :class:`~mmrag.encoders.visualized_bge.VisualizedBgeEncoder`.

    Args:
        model: A Visualized-BGE preset alias, a local ``.pth`` file, or a
            hub file ``"owner/repo/file.pth"`` (what an encoder loaded from
            a preset records as its ``model_id``).
        text_model: Hub id or directory of the BGE text model; default: the
            preset's, or the one a known checkpoint file name implies.
        options: Loading options.

    Returns:
        The encoder.

    Raises:
        InvalidInputError: No text model given and none implied.
        ModelNotAvailableError: The checkpoint or text model is not available.
        UnsupportedModelError: The checkpoint needs code to unpickle, is not
            in the Visualized-BGE layout, or does not fit the text model.
    """
    import torch

    from mmrag.encoders.loading import DEFAULT_BATCH_SIZE, pick_dtype
    from mmrag.encoders.visualized_bge.checkpoint import load_pth_state_dict, split_checkpoint
    from mmrag.encoders.visualized_bge.encoder import VisualizedBgeEncoder
    from mmrag.encoders.visualized_bge.model import VisualizedBgeModel

    weights, model_id, implied_text_model = _resolve_weights(model, options)
    chosen = text_model if text_model is not None else implied_text_model
    if chosen is None:
        raise InvalidInputError(
            f"{str(model)!r} is a Visualized-BGE checkpoint; say which BGE model it was trained on with "
            "text_model=..., e.g. load_encoder(path, text_model='BAAI/bge-base-en-v1.5') (or 'BAAI/bge-m3', "
            "or a local directory holding that model's config and tokenizer)"
        )
    config, tokenizer = _text_config_and_tokenizer(chosen, options)
    parts = split_checkpoint(load_pth_state_dict(weights), str(model))
    network = VisualizedBgeModel.from_checkpoint(parts, config, str(model))
    device = options.torch_device()
    network = network.to(device=device, dtype=pick_dtype(options.torch_dtype(), device, torch.float16))
    return VisualizedBgeEncoder(
        network,
        tokenizer,
        model_id=model_id,
        batch_size=options.batch_size_or(DEFAULT_BATCH_SIZE),
        image_limits=options.image_limits,
        text_model=_recordable(chosen),
    )


def _recordable(text_model: str | os.PathLike[str]) -> str:
    """A local directory as an absolute path (valid from any working directory), a hub id as given."""
    path = Path(os.fspath(text_model)).expanduser()
    return str(path.resolve()) if path.is_dir() else str(os.fspath(text_model))


def _visualized_presets() -> list[ModelPreset]:
    return [preset for preset in list_models() if preset.family == FAMILY]


def _resolve_weights(model: str | os.PathLike[str], options: LoadOptions) -> tuple[str, str, str | None]:
    """The local ``.pth`` path, the id to record, and the text model a preset or file name implies."""
    preset = get_preset(model) if isinstance(model, str) else None
    if preset is not None and preset.family == FAMILY:
        hub_file = f"{preset.hub_id}/{preset.weights_file}"
        return _download(hub_file, preset.text_model, options), hub_file, preset.text_model
    text = str(os.fspath(model)).strip()
    path = Path(text).expanduser().resolve()
    implied = next((p.text_model for p in _visualized_presets() if p.weights_file == path.name), None)
    if path.is_file():
        return str(path), str(path), implied
    if isinstance(model, str) and _HUB_FILE.fullmatch(text):  # "owner/repo/file.pth", e.g. a recorded model_id
        return _download(text, implied, options), text, implied
    raise ModelNotAvailableError(
        f"checkpoint {str(path)!r} does not exist; pass a Visualized-BGE .pth file, a hub file "
        f"('BAAI/bge-visualized/Visualized_base_en_v1.5.pth') or a preset "
        f"({', '.join(p.alias for p in _visualized_presets())})"
    )


_HUB_FILE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+/[\w.-]+\.pth", re.IGNORECASE)


def _download(hub_file: str, text_model: str | None, options: LoadOptions) -> str:
    repo_id, filename = hub_file.rsplit("/", 1)
    try:
        from huggingface_hub import hf_hub_download

        return str(
            hf_hub_download(repo_id, filename, revision=options.revision, local_files_only=options.local_files_only)
        )
    except Exception as exc:  # offline, missing file, hub errors: one clear message
        text_hint = text_model or "<its BGE text model>"
        raise ModelNotAvailableError(
            f"Visualized-BGE checkpoint {filename!r} of {repo_id!r} is not available offline and could not be "
            f"downloaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Download it once "
            f"where the hub is reachable (`hf download {repo_id} {filename}` and `hf download {text_hint}`), then "
            f"reuse that HF_HOME cache, or pass the files: "
            f"mmrag.load_encoder('/path/{filename}', text_model='/path/to/{text_hint}')"
        ) from exc


def _text_config_and_tokenizer(text_model: str | os.PathLike[str], options: LoadOptions) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from mmrag.encoders.sources import load_model_config, model_not_available_error, resolve_model_source

    source, _model_id = resolve_model_source(text_model)
    config = load_model_config(source, revision=None, local_files_only=options.local_files_only)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=options.local_files_only)
    except Exception as exc:  # hub clients raise OSError, httpx and socket errors alike
        raise model_not_available_error(str(text_model), source, exc, use_safetensors=False) from exc
    return config, tokenizer
