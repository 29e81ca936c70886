"""Where a model comes from: a name resolved to a source, its config read and checked, clear errors.

:func:`resolve_model_source` maps a preset alias, hub id or directory to the
place to load from; :func:`load_model_config` reads the checkpoint's
``config.json`` and refuses, by its ``model_type`` alone, architectures the
installed transformers does not ship (no code of a checkpoint runs here);
:func:`model_not_available_error` says how to get a model that is neither
cached nor downloadable. Shared by :func:`mmrag.load_encoder` and
:func:`mmrag.load_reranker`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.encoders.names import resolve_model_alias
from mmrag.encoders.presets import get_preset
from mmrag.errors import InvalidInputError, ModelNotAvailableError, UnsupportedModelError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = [
    "config_model_type",
    "load_model_config",
    "model_not_available_error",
    "resolve_model_source",
]


def resolve_model_source(model: str | os.PathLike[str]) -> tuple[str, str]:
    """Map a preset alias, hub id or directory to where to load from and the id to record.

    Names from other libraries are translated first (an existing directory
    of that name wins): OpenAI CLIP's ``"ViT-B/32"`` is the preset
    ``clip-vit-b-32``, OpenCLIP's ``"ViT-B-32:laion2b_s34b_b79k"`` the hub id
    ``laion/CLIP-ViT-B-32-laion2B-s34B-b79K`` (see
    :func:`mmrag.encoders.names.resolve_model_alias`). The recorded id is the
    translated model's, so an encoder loaded by either name has one identity.

    Args:
        model: What the user passed to a loader.

    Returns:
        ``(source, model_id)``: a hub id or absolute directory, and the id an
        encoder records (the hub id, the absolute path, or ``mmrag/<alias>``
        for bundled models).

    Raises:
        InvalidInputError: ``model`` is not a non-empty string or path.
        ModelNotAvailableError: A path that is not a model directory.
        UnsupportedModelError: A CLIP name from another library that mmrag
            cannot load (a ResNet CLIP, an OpenCLIP model without its
            pretrained tag or without a transformers copy); the message
            lists the names that work.
    """
    if isinstance(model, os.PathLike):
        return _local_dir(Path(os.fspath(model)))
    if not isinstance(model, str) or not model.strip():
        shown = "an empty string" if isinstance(model, str) else repr(model)[:80]
        raise InvalidInputError(
            f"model must be a preset alias (mmrag.list_models()), a hub id such as 'openai/clip-vit-base-patch32' "
            f"or a local directory (a str or os.PathLike), got {shown}"
        )
    text = model.strip()
    preset = get_preset(text.removeprefix("mmrag/"))
    if preset is not None and (preset.bundled or not text.startswith("mmrag/")):
        local = preset.local_path()
        if local is not None:
            return _local_dir(Path(local))[0], f"mmrag/{preset.alias}"
        return preset.hub_id, preset.hub_id
    path = Path(text).expanduser()
    if not path.exists():
        alias = resolve_model_alias(text)  # "ViT-B/32", "ViT-B-32:laion2b_s34b_b79k", "hf-hub:..."
        if alias is not None:
            return resolve_model_source(alias)
    if path.exists() or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return _local_dir(path)
    return text, text


def _local_dir(path: Path) -> tuple[str, str]:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise ModelNotAvailableError(
            f"model directory {str(path)!r} does not exist; pass a preset alias (mmrag.list_models()), "
            "a hub id, or a directory written by save_pretrained"
        )
    if not (path / "config.json").is_file() and not (path / "open_clip_config.json").is_file():
        raise ModelNotAvailableError(
            f"{str(path)!r} has no config.json (nor OpenCLIP's open_clip_config.json); point at a directory "
            "written by model.save_pretrained and processor.save_pretrained, or an OpenCLIP checkpoint"
        )
    return str(path), str(path)


def load_model_config(source: str, *, revision: str | None, local_files_only: bool) -> PretrainedConfig:
    """Load a checkpoint's config, turning hub and offline failures into clear mmrag errors.

    The raw ``config.json`` is read first and its ``model_type`` checked
    against the config classes transformers ships (:func:`config_model_type`),
    so an unknown or remote-code architecture is refused before any config
    class is built; no code shipped with a checkpoint ever runs here.

    Args:
        source: Hub id or local directory.
        revision: Hub revision.
        local_files_only: Never use the network.

    Returns:
        The config.

    Raises:
        ModelNotAvailableError: Not local and not downloadable, or not readable.
        UnsupportedModelError: No ``model_type``, or one transformers does not
            ship (unknown to the installed version, or defined by the
            checkpoint's own code).
    """
    from transformers import AutoConfig, PretrainedConfig

    try:
        config_dict, _unused = PretrainedConfig.get_config_dict(
            source, revision=revision, local_files_only=local_files_only
        )
    except Exception as exc:  # hub clients raise OSError, httpx and socket errors alike
        raise model_not_available_error(source, source, exc, use_safetensors=True) from exc
    config_model_type(config_dict, source)
    try:
        config: PretrainedConfig = AutoConfig.from_pretrained(
            source, revision=revision, local_files_only=local_files_only, trust_remote_code=False
        )
    except Exception as exc:  # the same files were just read: a malformed config or a vanished cache
        raise model_not_available_error(source, source, exc, use_safetensors=True) from exc
    return config


def config_model_type(config_dict: Mapping[str, Any], model: str) -> str:
    """The ``model_type`` of a raw ``config.json``, if transformers ships its config class.

    Args:
        config_dict: The parsed ``config.json``.
        model: The model's name, for messages.

    Returns:
        The ``model_type``.

    Raises:
        UnsupportedModelError: No ``model_type``, a ``model_type`` whose
            config class comes from code shipped with the checkpoint
            (``auto_map``), or one the installed transformers does not know;
            the message names it and the model types mmrag loads.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from mmrag.encoders.loading import supported_model_types  # the family registry imports this module

    model_type = config_dict.get("model_type")
    supported = f"mmrag encoders load model types {', '.join(supported_model_types())}{_RERANK_NOTE}"
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModelError(
            f"model {model!r} has no model_type in its config.json, so its architecture is unknown; {supported}"
        )
    if model_type in CONFIG_MAPPING:
        return model_type
    auto_map = config_dict.get("auto_map")
    if isinstance(auto_map, Mapping) and "AutoConfig" in auto_map:
        raise UnsupportedModelError(
            f"model {model!r} has model_type {model_type!r}, defined by Python code shipped with the checkpoint "
            f"(auto_map AutoConfig {auto_map['AutoConfig']!r}); mmrag never runs a checkpoint's code to read "
            f"its config. {supported}"
        )
    import transformers

    raise UnsupportedModelError(
        f"model {model!r} has model_type {model_type!r}, which the installed transformers "
        f"{transformers.__version__} does not know (a newer transformers may); {supported}"
    )


_RERANK_NOTE = "; load_reranker also takes BLIP / BLIP-2 retrieval and *ForSequenceClassification checkpoints"


def model_not_available_error(
    model: str, source: str, exc: BaseException, *, use_safetensors: bool
) -> ModelNotAvailableError:
    """The error to raise when ``from_pretrained`` failed: names the fix (download, directory, safetensors).

    Args:
        model: What the user asked for.
        source: Where it was loaded from.
        exc: The underlying error.
        use_safetensors: Whether pickle weights were refused.

    Returns:
        A :class:`ModelNotAvailableError` to raise ``from exc``.
    """
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    if use_safetensors and "safetensors" in str(exc).lower():
        return ModelNotAvailableError(
            f"model {model!r} has no safetensors weights ({reason}). mmrag loads safetensors only by default; "
            "if you trust this checkpoint, pass use_safetensors=False to load its pickle (.bin) weights"
        )
    if os.path.isdir(source):
        return ModelNotAvailableError(f"cannot load model from directory {source!r}: {reason}")
    return ModelNotAvailableError(
        f"model {model!r} is not available offline and could not be downloaded ({reason}). "
        f"Download it once where the Hugging Face hub is reachable (`hf download {source}`, then reuse that "
        "HF_HOME cache or set HF_ENDPOINT to a mirror), or save it with save_pretrained and pass the local "
        "directory: mmrag.load_encoder('/path/to/model')"
    )
