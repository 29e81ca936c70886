"""The stored config of a :class:`~mmrag.chroma.MultimodalEmbeddingFunction`: what it holds and how it is checked.

Chroma saves ``get_config()`` with a collection and hands it back to
``build_from_config()`` when the collection is reopened, so the config says
everything needed to load the same model again, and nothing that would let a
stored database switch on unsafe loading (remote code, pickle weights).

A config is a JSON object::

    {"model": "mmrag/demo", "batch_size": 64, "local_files_only": false,
     "device": "cpu", "dtype": "float32", "revision": "main"}

``model``, ``batch_size`` and ``local_files_only`` are always there; ``device``,
``dtype`` and ``revision`` only when they were set explicitly (a reopened
collection then picks the device and dtype of the machine it runs on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmrag.errors import InvalidInputError
from mmrag.options import DTYPE_NAMES, LoadOptions

__all__ = ["CONFIG_KEYS", "config_key", "make_config", "options_from_config", "validate_config"]

CONFIG_KEYS = ("model", "batch_size", "local_files_only", "device", "dtype", "revision")
"""Every key a stored config may hold, the first three always present."""

_NOT_RESTORED = {
    "trust_remote_code": "a stored collection may not switch on code shipped with a checkpoint",
    "use_safetensors": "a stored collection may not switch on pickle weights",
    "image_limits": "image limits are not stored",
}


def make_config(model_id: str, options: LoadOptions, batch_size: int) -> dict[str, Any]:
    """The config that rebuilds an embedding function.

    Args:
        model_id: The encoder's ``model_id`` (hub id or absolute local path).
        options: The options the model was loaded with.
        batch_size: The encoder's batch size.

    Returns:
        A JSON-friendly dict (see the module docstring).
    """
    config: dict[str, Any] = {
        "model": model_id,
        "batch_size": batch_size,
        "local_files_only": options.local_files_only,
    }
    if options.device is not None:
        config["device"] = str(options.device)
    if options.dtype is not None:
        name = str(options.dtype).lower().removeprefix("torch.")
        config["dtype"] = DTYPE_NAMES.get(name, name)
    if options.revision is not None:
        config["revision"] = options.revision
    return config


def validate_config(config: Mapping[str, Any]) -> None:
    """Check a stored config before anything is loaded from it.

    Args:
        config: What ``get_config()`` returned, as Chroma stored it.

    Raises:
        mmrag.InvalidInputError: Not a mapping, ``model`` missing or not a
            non-empty string, an unknown or refused key, or a value of the
            wrong type (the message names the key).
    """
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"an mmrag embedding function config must be a mapping, got {type(config).__name__}")
    for key in config:
        if key in _NOT_RESTORED:
            raise InvalidInputError(
                f"config key {key!r} is not restored from a stored collection ({_NOT_RESTORED[key]}); "
                f"pass embedding_function=MultimodalEmbeddingFunction(..., {key}=...) when you reopen it"
            )
        if key not in CONFIG_KEYS:
            raise InvalidInputError(f"unknown config key {key!r}; an mmrag config has {', '.join(CONFIG_KEYS)}")
    model = config.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(f"config key 'model' must be a non-empty string, got {model!r}")
    for key, kind in (("device", str), ("dtype", str), ("revision", str)):
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise InvalidInputError(f"config key {key!r} must be a string, got {type(config[key]).__name__}")
    options_from_config(config)  # LoadOptions checks batch_size, dtype names and booleans


def options_from_config(config: Mapping[str, Any]) -> LoadOptions:
    """The :class:`~mmrag.LoadOptions` a stored config describes.

    Args:
        config: A config (see :func:`validate_config`).

    Returns:
        The options to load ``config["model"]`` with.

    Raises:
        mmrag.InvalidInputError: A value :class:`~mmrag.LoadOptions` refuses.
    """
    return LoadOptions(
        device=config.get("device"),
        dtype=config.get("dtype"),
        batch_size=config.get("batch_size"),
        revision=config.get("revision"),
        local_files_only=config.get("local_files_only", False),
    )


def config_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent key for a config (for the encoder cache).

    Args:
        config: A config.

    Returns:
        The sorted ``(key, value)`` pairs.
    """
    return tuple(sorted(config.items()))
