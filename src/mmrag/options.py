"""``LoadOptions``: how a model is loaded, one object shared by every loader.

:func:`mmrag.load_encoder`, :func:`mmrag.load_reranker`, both adapters and the
HTTP service take the same options. Pass them as keyword arguments
(``load_encoder("demo", device="cpu")``) or build one :class:`LoadOptions`
and hand it around (``load_encoder("demo", options=opts)``); keyword
arguments given beside ``options=`` override its fields.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, TypedDict

from mmrag.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from mmrag.inputs import ImageLimits

__all__ = ["AUTO_BATCH_SIZE", "DTYPE_NAMES", "LoadOptions", "LoadOverrides"]

AUTO_BATCH_SIZE = "auto"
"""``LoadOptions(batch_size="auto")``: the largest batch that fits the GPU (the default batch on a CPU)."""

DTYPE_NAMES: Mapping[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
"""Accepted dtype spellings and the torch dtype each names."""


class LoadOverrides(TypedDict, total=False):
    """The :class:`LoadOptions` fields, as keyword arguments of a loader."""

    device: str | torch.device | None
    dtype: str | torch.dtype | None
    batch_size: int | Literal["auto"] | None
    revision: str | None
    local_files_only: bool
    use_safetensors: bool
    trust_remote_code: bool
    image_limits: ImageLimits | None
    image_workers: int | None
    fast_decode: bool
    gpu_decode: bool
    compile: bool


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: where it runs, in which dtype, from where, and how safely.

    Args:
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a
            ``torch.device``; ``None``: CUDA if available, else MPS, else CPU.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or ``"fp16"``,
            ``"bf16"``, a torch dtype); ``None``: the family's half precision
            on a GPU, float32 on the CPU. Output vectors are float32 whatever
            the model runs in.
        batch_size: Most items (encoders) or pairs (rerankers) per forward
            pass; ``None``: the loader's default (64 for encoders, 32 for
            rerankers). ``"auto"`` (encoders): on a CUDA GPU, the largest
            batch that fits in its memory, found at load time by doubling
            until out of memory, then backing off (at most 1024); elsewhere the
            default.
        revision: Hub branch, tag or commit.
        local_files_only: Never use the network; fail if not cached locally.
        use_safetensors: Load only safetensors weights (the default). Set
            ``False`` to allow pickle weights from a source you trust.
        trust_remote_code: Allow Python code shipped with a checkpoint to run.
            Off by default; none of the built-in families need it.
        image_limits: Limits for resolving image inputs (sizes, URL policy).
        image_workers: Worker processes that decode and resize images (for
            encoders whose image processor mmrag reproduces exactly: CLIP,
            Chinese-CLIP, SigLIP, SigLIP 2 fixed resolution); ``None``: one per
            CPU core this process may use, at most 8 (none on a single core);
            ``0``: decode in the calling process. Vectors do not depend on it.
        fast_decode: Decode JPEGs with DCT scaling and shrink big images in
            whole steps before the final resize: several times less CPU per
            image, vectors within cosine ~0.995 of the exact ones (so it is
            recorded in the encoder's ``preprocessing``, and a store built
            without it refuses vectors made with it). Off by default.
        gpu_decode: Decode JPEGs on the GPU (nvJPEG through
            ``torchvision.io.decode_jpeg``) and resize them there, for a model
            on CUDA whose image processor mmrag reproduces: frees the CPU, not
            exact (cosine ~0.995, recorded in ``preprocessing`` like
            ``fast_decode``). Without torchvision or CUDA it does nothing (one
            INFO log line), never an error. Off by default.
        compile: Run the model's towers through ``torch.compile`` (the first
            batch of each shape compiles: slow to start, faster afterwards on
            a GPU). Off by default.

    Raises:
        mmrag.InvalidInputError: ``batch_size`` below 1, an unknown ``dtype``
            name, or a field of the wrong type.

    Example:
        >>> opts = mmrag.LoadOptions(device="cpu", local_files_only=True)
        >>> enc = mmrag.load_encoder("demo", options=opts)
        >>> rr = mmrag.load_reranker("demo", options=opts, batch_size=16)
        >>> gpu = mmrag.LoadOptions(device="cuda", batch_size="auto", image_workers=8)
    """

    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    batch_size: int | Literal["auto"] | None = None
    revision: str | None = None
    local_files_only: bool = False
    use_safetensors: bool = True
    trust_remote_code: bool = False
    image_limits: ImageLimits | None = None
    image_workers: int | None = None
    fast_decode: bool = False
    gpu_decode: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        """Check every field (without importing torch: a torch object can only exist once torch is imported)."""
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", _batch_size(self.batch_size))
        if not (self.device is None or isinstance(self.device, str) or _is_torch(self.device, "device")):
            raise InvalidInputError(
                f"device must be a device name such as 'cpu', 'cuda' or 'cuda:1', or a torch.device, "
                f"got {_shown(self.device)}"
            )
        if isinstance(self.dtype, str):
            if _dtype_key(self.dtype) not in DTYPE_NAMES:
                raise InvalidInputError(
                    f"unknown dtype {self.dtype!r}; use one of float32, float16, bfloat16 (or fp32, fp16, bf16)"
                )
        elif not (self.dtype is None or _is_torch(self.dtype, "dtype")):
            raise InvalidInputError(
                f"dtype must be a name such as 'float16' or a torch.dtype, got {_shown(self.dtype)}"
            )
        if self.image_workers is not None:
            object.__setattr__(self, "image_workers", _worker_count(self.image_workers))
        for name in (
            "local_files_only",
            "use_safetensors",
            "trust_remote_code",
            "fast_decode",
            "gpu_decode",
            "compile",
        ):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be True or False, got {_shown(getattr(self, name))}")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise InvalidInputError(
                f"revision must be a branch, tag or commit name (a non-empty string), got {_shown(self.revision)}"
            )
        if self.image_limits is not None:
            from mmrag.inputs import ImageLimits

            if not isinstance(self.image_limits, ImageLimits):
                raise InvalidInputError(f"image_limits must be a mmrag.ImageLimits, got {_shown(self.image_limits)}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in declaration order.

        Returns:
            ``("device", "dtype", "batch_size", ...)``.
        """
        return tuple(item.name for item in dataclasses.fields(cls))

    @classmethod
    def merge(cls, options: LoadOptions | None, overrides: Mapping[str, Any]) -> LoadOptions:
        """``options`` (or the defaults) with ``overrides`` applied.

        Args:
            options: A base object, or ``None`` for the defaults.
            overrides: Field values to change; an unknown name is an error.

        Returns:
            A new :class:`LoadOptions` (``options`` itself when nothing changes).

        Raises:
            TypeError: ``options`` is not a :class:`LoadOptions`, or an
                override names no field (the message lists the fields).
        """
        if options is not None and not isinstance(options, LoadOptions):
            raise TypeError(f"options must be a mmrag.LoadOptions, got {type(options).__name__}")
        base = options if options is not None else cls()
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise TypeError(
                f"unknown loading option(s) {', '.join(map(repr, unknown))}; LoadOptions takes "
                f"{', '.join(cls.field_names())}"
            )
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def split(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Remove and return the loading options among a constructor's keyword arguments.

        Adapters take the options beside their own fields; this separates them.

        Args:
            kwargs: Keyword arguments; the option names are popped from it.

        Returns:
            The popped ``{name: value}`` pairs.
        """
        return {name: kwargs.pop(name) for name in cls.field_names() if name in kwargs}

    def replace(self, **changes: Any) -> LoadOptions:
        """A copy with some fields changed.

        Args:
            **changes: Field values.

        Returns:
            A new :class:`LoadOptions`.

        Raises:
            TypeError: A name that is not a field.
        """
        return LoadOptions.merge(self, changes)

    def torch_device(self) -> torch.device:
        """The device to run on: the one asked for, else CUDA, else MPS, else CPU.

        Returns:
            A ``torch.device``.
        """
        import torch

        if self.device is not None:
            try:
                return torch.device(self.device)
            except (RuntimeError, TypeError) as exc:
                raise InvalidInputError(f"unknown device {self.device!r}: {exc}") from exc
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def torch_dtype(self) -> torch.dtype | None:
        """The requested dtype as a torch dtype, or ``None`` for the family's default.

        Returns:
            A ``torch.dtype`` or ``None``.
        """
        import torch

        if self.dtype is None or isinstance(self.dtype, torch.dtype):
            return self.dtype
        dtype: torch.dtype = getattr(torch, DTYPE_NAMES[_dtype_key(self.dtype)])
        return dtype

    def batch_size_or(self, default: int) -> int:
        """``batch_size`` as a number, for a loader that does not search for one.

        Args:
            default: The loader's default batch size.

        Returns:
            ``batch_size`` when it is a number; ``default`` when it is ``None``
            or ``"auto"``.
        """
        return self.batch_size if isinstance(self.batch_size, int) else default

    def hub_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every ``from_pretrained`` call.

        Returns:
            ``revision``, ``local_files_only`` and ``trust_remote_code``.
        """
        return {
            "revision": self.revision,
            "local_files_only": self.local_files_only,
            "trust_remote_code": self.trust_remote_code,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view of the non-default fields (for logs and adapters' records).

        Returns:
            ``{name: value}`` with devices as strings (``"cuda:1"``) and dtypes
            by their canonical name (``"fp16"`` and ``torch.float16`` both
            become ``"float16"``).

        Example:
            >>> LoadOptions(device="cpu", dtype="fp16", batch_size=8).describe()
            {'device': 'cpu', 'dtype': 'float16', 'batch_size': 8}
        """
        described: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value == item.default:
                continue
            if item.name == "device":
                value = str(value)
            elif item.name == "dtype":
                value = DTYPE_NAMES.get(_dtype_key(str(value)), str(value).removeprefix("torch."))
            elif item.name == "image_limits":
                value = repr(value)
            described[item.name] = value
        return described


def _dtype_key(name: str) -> str:
    return name.strip().lower().removeprefix("torch.")


def _is_torch(value: object, kind: str) -> bool:
    """Whether ``value`` is a ``torch.<kind>`` (``device`` or ``dtype``); torch is not imported for it."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, getattr(torch, kind))


def _batch_size(value: object) -> int | Literal["auto"]:
    if isinstance(value, str) and value.strip().lower() == AUTO_BATCH_SIZE:
        return "auto"
    size = operator.index(value) if isinstance(value, SupportsIndex) and not isinstance(value, bool) else 0
    if size < 1:
        raise InvalidInputError(
            f"batch_size must be an integer of at least 1, got {_shown(value)} (or 'auto': the largest batch that fits)"
        )
    return size


def _worker_count(value: object) -> int:
    count = operator.index(value) if isinstance(value, SupportsIndex) and not isinstance(value, bool) else -1
    if count < 0:
        raise InvalidInputError(
            f"image_workers must be an integer of at least 0 (0: decode in this process), got {_shown(value)}"
        )
    return count


def _shown(value: object) -> str:
    """``repr`` for scalars, the type name for anything else (never a long repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)[:80]
    return f"a {type(value).__name__}"
