"""``load_encoder``: from a preset alias, hub id or local directory to an Encoder.

The family layer is one small seam: a table from a config's ``model_type`` to a
*family loader*, a function that builds an :class:`~mmrag.Encoder` from a
:class:`LoadRequest`. Dispatch looks only at ``model_type``, never at names.
Later families (BLIP-2 features, Visualized-BGE) register their own loader
with :func:`register_family`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.encoders.presets import DEFAULT_MODEL, get_preset
from mmrag.errors import InvalidInputError, ModelNotAvailableError, UnsupportedModelError
from mmrag.options import LoadOptions, LoadOverrides

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig
    from typing_extensions import Unpack

    from mmrag.encoders.base import Encoder
    from mmrag.inputs import ImageLimits

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LoadRequest",
    "config_model_type",
    "load_encoder",
    "load_model_config",
    "model_not_available_error",
    "pick_dtype",
    "register_family",
    "resolve_model_source",
    "supported_model_types",
]


@dataclass(frozen=True)
class LoadRequest:
    """Everything a family loader needs to build an encoder.

    Attributes:
        source: Hub id or absolute local directory to load from.
        model_id: The id recorded on the encoder (hub id or absolute path).
        config: The checkpoint's loaded config.
        options: The caller's :class:`~mmrag.LoadOptions`.
        device: The device chosen from ``options.device``.
        dtype: The dtype asked for, or ``None`` for the family's default.
        batch_size: Most items per forward pass.
    """

    source: str
    model_id: str
    config: PretrainedConfig
    options: LoadOptions
    device: torch.device
    dtype: torch.dtype | None
    batch_size: int

    @property
    def revision(self) -> str | None:
        """Hub revision (branch, tag or commit), if any."""
        return self.options.revision

    @property
    def local_files_only(self) -> bool:
        """Never touch the network."""
        return self.options.local_files_only

    @property
    def use_safetensors(self) -> bool:
        """Refuse pickle (``.bin``) weights."""
        return self.options.use_safetensors

    @property
    def trust_remote_code(self) -> bool:
        """Allow code shipped with the checkpoint to run."""
        return self.options.trust_remote_code

    @property
    def image_limits(self) -> ImageLimits | None:
        """Limits for resolving image inputs."""
        return self.options.image_limits

    def hub_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every ``from_pretrained`` call."""
        return self.options.hub_kwargs()


DEFAULT_BATCH_SIZE = 64
"""Items per forward pass when :attr:`LoadOptions.batch_size` is ``None``."""

FamilyLoader = Callable[[LoadRequest], "Encoder"]
_FAMILY_LOADERS: dict[str, FamilyLoader] = {}


def register_family(model_type: str, loader: FamilyLoader) -> None:
    """Teach :func:`load_encoder` a new architecture.

    Args:
        model_type: The config ``model_type`` the loader handles.
        loader: Builds an encoder from a :class:`LoadRequest`.

    Example:
        >>> register_family("my_dual", lambda request: MyDualEncoder(request))
    """
    _FAMILY_LOADERS[model_type] = loader


def supported_model_types() -> list[str]:
    """The config ``model_type`` values :func:`load_encoder` can load.

    Returns:
        Sorted model types.
    """
    _register_builtin_families()
    return sorted(_FAMILY_LOADERS)


def load_encoder(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    options: LoadOptions | None = None,
    **overrides: Unpack[LoadOverrides],
) -> Encoder:
    """Load a multimodal encoder.

    Args:
        model: A preset alias (see :func:`mmrag.list_models`), a hub id such as
            ``"openai/clip-vit-base-patch32"``, or a local directory made with
            ``save_pretrained``. Defaults to ``"siglip2-base-224"``.
        options: How to load it (:class:`~mmrag.LoadOptions`: device, dtype,
            batch size, revision, offline, safetensors, remote code, image
            limits); default ``LoadOptions()``.
        **overrides: Any :class:`~mmrag.LoadOptions` field, applied on top of
            ``options``: ``device="cpu"``, ``dtype="fp16"``, ``batch_size=32``,
            ``local_files_only=True`` ...

    Returns:
        An :class:`~mmrag.Encoder`.

    Raises:
        ModelNotAvailableError: The model is neither local nor downloadable;
            the message says how to download it or point at a directory.
        UnsupportedModelError: The checkpoint's ``model_type`` has no family.
        TypeError: An override that is not a :class:`~mmrag.LoadOptions` field.

    Example:
        >>> import mmrag
        >>> enc = mmrag.load_encoder("clip-vit-b-32", device="cpu")
        >>> enc.embed_texts(["a photo of a cat"]).shape
        (1, 512)
    """
    opts = LoadOptions.merge(options, overrides)
    _register_builtin_families()
    source, model_id = resolve_model_source(model)
    config = load_model_config(source, revision=opts.revision, local_files_only=opts.local_files_only)
    loader = _FAMILY_LOADERS.get(config.model_type)
    if loader is None:
        raise UnsupportedModelError(
            f"model {str(model)!r} has model_type {config.model_type!r}, which mmrag cannot load; "
            f"supported model types: {', '.join(sorted(_FAMILY_LOADERS))}"
        )
    request = LoadRequest(
        source=source,
        model_id=model_id,
        config=config,
        options=opts,
        device=opts.torch_device(),
        dtype=opts.torch_dtype(),
        batch_size=opts.batch_size or DEFAULT_BATCH_SIZE,
    )
    try:
        return loader(request)
    except OSError as exc:
        raise model_not_available_error(str(model), source, exc, use_safetensors=opts.use_safetensors) from exc


def pick_dtype(requested: torch.dtype | None, device: torch.device, gpu_dtype: torch.dtype) -> torch.dtype:
    """The dtype to load weights in.

    Args:
        requested: An explicit dtype, or ``None`` to choose.
        device: The device the model will run on.
        gpu_dtype: The family's preferred half-precision type on a GPU.

    Returns:
        ``requested`` if given; float32 on the CPU; on CUDA ``gpu_dtype``
        (float16 where the GPU lacks bfloat16); float16 on MPS.
    """
    import torch

    if requested is not None:
        return requested
    if device.type == "cuda":
        if gpu_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return torch.float16
        return gpu_dtype
    if device.type == "mps":
        return torch.float16
    return torch.float32


def resolve_model_source(model: str | os.PathLike[str]) -> tuple[str, str]:
    """Map a preset alias, hub id or directory to where to load from and the id to record.

    Args:
        model: What the user passed to a loader.

    Returns:
        ``(source, model_id)``: a hub id or absolute directory, and the id an
        encoder records (the hub id, the absolute path, or ``mmrag/<alias>``
        for bundled models).

    Raises:
        InvalidInputError: ``model`` is not a non-empty string or path.
        ModelNotAvailableError: A path that is not a model directory.
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
    if not (path / "config.json").is_file():
        raise ModelNotAvailableError(
            f"{str(path)!r} has no config.json; point at a directory written by model.save_pretrained "
            "and processor.save_pretrained"
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


_BUILTINS_REGISTERED = False


def _register_builtin_families() -> None:
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    from mmrag.encoders.transformers_dual import DUAL_FAMILIES

    for model_type in DUAL_FAMILIES:
        _FAMILY_LOADERS.setdefault(model_type, _load_transformers_dual)
    _BUILTINS_REGISTERED = True


def _load_transformers_dual(request: LoadRequest) -> Encoder:
    from transformers import AutoModel, AutoProcessor

    from mmrag.encoders.transformers_dual import DUAL_FAMILIES, TransformersDualEncoder

    family = DUAL_FAMILIES[request.config.model_type]
    dtype = pick_dtype(request.dtype, request.device, family.gpu_dtype)
    model = AutoModel.from_pretrained(
        request.source, config=request.config, dtype=dtype, use_safetensors=request.use_safetensors,
        **request.hub_kwargs(),
    )  # fmt: skip
    model = model.to(request.device).eval()
    processor = AutoProcessor.from_pretrained(request.source, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    return TransformersDualEncoder(
        model,
        processor,
        family=family,
        model_id=request.model_id,
        batch_size=request.batch_size,
        image_limits=request.image_limits,
    )
