"""``load_encoder``: from a preset alias, hub id or local directory to an Encoder.

The family layer is one small seam: a table from a config's ``model_type`` to a
*family loader*, a function that builds an :class:`~mmrag.Encoder` from a
:class:`LoadRequest`. Dispatch looks only at ``model_type``, never at names.
Later families (BLIP-2 features, Visualized-BGE) register their own loader
with :func:`register_family`. Resolving the source and reading the config
live in :mod:`mmrag.encoders.sources` (re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmrag.encoders.presets import DEFAULT_MODEL
from mmrag.encoders.sources import (
    config_model_type,
    load_model_config,
    model_not_available_error,
    resolve_model_source,
)
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError
from mmrag.logs import logger
from mmrag.options import LoadOptions, LoadOverrides

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig
    from typing_extensions import Unpack

    from mmrag.cache import EmbeddingCache
    from mmrag.encoders.base import Encoder
    from mmrag.inputs import ImageLimits

__all__ = [
    "AUTO_BATCH_LIMIT",
    "DEFAULT_BATCH_SIZE",
    "LoadRequest",
    "config_model_type",
    "encoder_signature",
    "load_encoder",
    "load_model_config",
    "model_not_available_error",
    "pick_dtype",
    "register_family",
    "resolve_model_source",
    "supported_model_types",
]

_log = logger("encoders")


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
        batch_size: Most items per forward pass (the default when the
            options ask for ``"auto"``; :func:`load_encoder` searches after
            the family loader returns).
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

PIL_BACKEND: dict[str, str] = {"backend": "pil"}
"""Image processors load with transformers' PIL backend, also where torchvision is installed: the vectors then do
not depend on whether torchvision is there, and the exact uint8 worker pipeline (which reproduces the PIL backend,
up to one step in a few pixels) applies. The torchvision backend resizes differently."""
"""Items per forward pass when :attr:`LoadOptions.batch_size` is ``None`` (or ``"auto"`` off a CUDA GPU)."""

AUTO_BATCH_LIMIT = 1024
"""The largest batch ``batch_size="auto"`` tries."""

FamilyLoader = Callable[[LoadRequest], "Encoder"]
FamilySignature = Callable[[LoadRequest], "dict[str, str | int]"]
_FAMILY_LOADERS: dict[str, FamilyLoader] = {}
_FAMILY_SIGNATURES: dict[str, FamilySignature] = {}


def register_family(model_type: str, loader: FamilyLoader, *, signature: FamilySignature | None = None) -> None:
    """Teach :func:`load_encoder` a new architecture.

    Args:
        model_type: The config ``model_type`` the loader handles.
        loader: Builds an encoder from a :class:`LoadRequest`.
        signature: Optional: computes the encoder's
            :attr:`~mmrag.Encoder.signature` without loading weights (for
            :func:`encoder_signature` and :class:`~mmrag.encoders.LazyEncoder`).

    Example:
        >>> register_family("my_dual", lambda request: MyDualEncoder(request))
    """
    _FAMILY_LOADERS[model_type] = loader
    if signature is not None:
        _FAMILY_SIGNATURES[model_type] = signature
    else:
        _FAMILY_SIGNATURES.pop(model_type, None)


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
    text_model: str | os.PathLike[str] | None = None,
    cache: EmbeddingCache | None = None,
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
        text_model: For a Visualized-BGE ``.pth`` checkpoint: hub id or
            directory of its BGE text model (config and tokenizer only).
        **overrides: Any :class:`~mmrag.LoadOptions` field, applied on top of
            ``options``: ``device="cpu"``, ``dtype="fp16"``, ``batch_size=32``,
            ``local_files_only=True`` ...
        cache: An :class:`~mmrag.EmbeddingCache` the encoder consults before
            every forward pass (its :attr:`~mmrag.Encoder.cache`); loading
            does not depend on it.

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
    from mmrag.encoders.visualized_bge.loading import is_visualized_bge_source, load_visualized_bge

    encoder: Encoder
    if text_model is not None or is_visualized_bge_source(model):  # a .pth checkpoint plus its text model
        encoder = load_visualized_bge(model, text_model=text_model, options=opts)
    else:
        request, loader, _ = _request(model, opts)
        try:
            encoder = loader(request)
        except OSError as exc:
            raise _not_available(model, request, exc) from exc
    if opts.batch_size == "auto" and encoder.device.type == "cuda":
        encoder.batch_size = encoder.find_batch_size(start=encoder.batch_size, limit=AUTO_BATCH_LIMIT)
    encoder.cache = cache
    return encoder


def encoder_signature(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    options: LoadOptions | None = None,
    **overrides: Unpack[LoadOverrides],
) -> dict[str, str | int] | None:
    """The :attr:`~mmrag.Encoder.signature` :func:`load_encoder` would give, without loading the weights.

    Reads the config and the processor only (for the built-in families), so
    a store can be opened and checked without the model.

    Args:
        model: As for :func:`load_encoder`.
        options: As for :func:`load_encoder` (``fast_decode`` and ``gpu_decode`` matter).
        **overrides: As for :func:`load_encoder`.

    Returns:
        ``model_id``, ``family``, ``dim`` and ``preprocessing``; ``None`` when
        the family registered no way to tell without loading.

    Raises:
        ModelNotAvailableError: As :func:`load_encoder`.
        UnsupportedModelError: As :func:`load_encoder`.
    """
    from mmrag.encoders.visualized_bge.loading import is_visualized_bge_source

    if is_visualized_bge_source(model):
        return None
    request, _, describe = _request(model, LoadOptions.merge(options, overrides))
    if describe is None:
        return None
    try:
        return describe(request)
    except OSError as exc:
        raise _not_available(model, request, exc) from exc


def _request(
    model: str | os.PathLike[str], opts: LoadOptions
) -> tuple[LoadRequest, FamilyLoader, FamilySignature | None]:
    """Resolve the source, read the config, check the family and the device: everything before the weights.

    Returns:
        The request, the family loader that builds it, and the family's
        weight-free signature function (``None``: none registered).
    """
    _register_builtin_families()
    source, model_id = resolve_model_source(model)
    describe: FamilySignature | None
    try:
        config = load_model_config(source, revision=opts.revision, local_files_only=opts.local_files_only)
        loader = _FAMILY_LOADERS.get(config.model_type)
        describe = _FAMILY_SIGNATURES.get(config.model_type)
    except (ModelNotAvailableError, UnsupportedModelError):  # no transformers config.json: OpenCLIP's format?
        from mmrag.encoders.open_clip import open_clip_family

        if (open_clip := open_clip_family(source, opts)) is None:
            raise
        config, loader = open_clip
        describe = None
    if loader is None:
        raise UnsupportedModelError(
            f"model {str(model)!r} has model_type {config.model_type!r}, which mmrag cannot load; "
            f"supported model types: {', '.join(sorted(_FAMILY_LOADERS))}"
        )
    if opts.device is None:
        _log.debug("no device given: chose %s", opts.torch_device())
    request = LoadRequest(
        source=source,
        model_id=model_id,
        config=config,
        options=opts,
        device=opts.torch_device(),
        dtype=opts.torch_dtype(),
        batch_size=opts.batch_size_or(DEFAULT_BATCH_SIZE),
    )
    return request, loader, describe


def _not_available(model: str | os.PathLike[str], request: LoadRequest, exc: OSError) -> Exception:
    if isinstance(exc, ModelNotAvailableError):
        return exc
    return model_not_available_error(str(model), request.source, exc, use_safetensors=request.use_safetensors)


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


_BUILTINS_REGISTERED = False


def _register_builtin_families() -> None:
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    from mmrag.encoders.blip2 import BLIP2_MODEL_TYPE, load_blip2_encoder
    from mmrag.encoders.dual_loading import load_transformers_dual, transformers_dual_signature
    from mmrag.encoders.transformers_dual import DUAL_FAMILIES

    for model_type in DUAL_FAMILIES:
        if model_type not in _FAMILY_LOADERS:
            register_family(model_type, load_transformers_dual, signature=transformers_dual_signature)
    if BLIP2_MODEL_TYPE not in _FAMILY_LOADERS:
        register_family(BLIP2_MODEL_TYPE, load_blip2_encoder)
    _BUILTINS_REGISTERED = True
