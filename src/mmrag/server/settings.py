"""Server settings: one frozen dataclass, its command-line options, and the image policy.

Everything here is importable without the ``mmrag[server]`` extra, so that
``mmrag serve --help`` works (and says what to install) before FastAPI is
present.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmrag.inputs import ImageLimits
from mmrag.options import DTYPE_NAMES, LoadOptions

if TYPE_CHECKING:
    import torch

__all__ = [
    "ServerSettings",
    "add_load_arguments",
    "add_server_arguments",
    "load_options_from_args",
    "settings_from_args",
]

DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 2048
DEFAULT_MAX_QUEUE = 4096


@dataclass(frozen=True, init=False)
class ServerSettings:
    """How one ``mmrag serve`` process runs.

    Args:
        model: Model alias, hub id or directory; ``None`` means the ``db``
            store's recorded model, else :data:`mmrag.DEFAULT_MODEL`.
        db: Embedded store directory for ``/search``; ``None`` disables it.
        collection: Logical store name inside ``db``.
        host: Interface to bind (loopback by default: there is no auth).
        port: TCP port; ``0`` picks a free one (printed at startup).
        device: Shorthand for ``load_options.device`` (given, it wins).
        allow_local_root: Directory below which image fields may name server
            files; ``None`` (the default) never reads server files.
        allow_private_urls: Fetch image URLs on loopback/private networks.
        max_body_bytes: Largest request body (413 beyond it).
        max_items: Most inputs or candidates in one request (422 beyond it).
        max_queue: Most items admitted (being decoded or waiting for the
            model) at once; beyond it requests get 429 with ``Retry-After``
            (a request larger than this is admitted only into an empty queue).
        batch_size: Shorthand for ``load_options.batch_size`` (given, it wins).
        max_wait_ms: How long the batching queue waits for more requests to
            join a batch that is not yet full.
        graceful_timeout: Seconds that requests in flight get to finish after
            SIGTERM before they are cut off.
        resolve_workers: Threads that decode (and fetch) images, shared by all
            requests.
        access_log: Log one line per request.
        log_level: uvicorn log level.
        load_options: How the model is loaded (:class:`~mmrag.LoadOptions`:
            device, dtype, batch size, revision, offline ...), the one object
            the server keeps. Its ``batch_size`` (default 64) is also the most
            items per forward pass of the batching queue; its
            ``image_limits`` keep their sizes, but whether server files and
            private URLs may be read is always decided by
            ``allow_local_root`` and ``allow_private_urls``.

    Raises:
        ValueError: A limit is not positive, the port is out of range, or
            ``db`` or ``allow_local_root`` is not a directory.
        TypeError: ``load_options`` is not a :class:`~mmrag.LoadOptions`.

    Example:
        >>> settings = ServerSettings(model="demo", load_options=LoadOptions(device="cpu", batch_size=16))
        >>> load_encoder(settings.model, options=settings.load_options)  # what the server loads
    """

    model: str | None
    db: str | None
    collection: str
    host: str
    port: int
    allow_local_root: str | None
    allow_private_urls: bool
    max_body_bytes: int
    max_items: int
    max_queue: int
    max_wait_ms: float
    graceful_timeout: float
    resolve_workers: int
    access_log: bool
    log_level: str
    load_options: LoadOptions

    def __init__(
        self,
        model: str | None = None,
        db: str | None = None,
        collection: str = "mmrag",
        host: str = "127.0.0.1",
        port: int = 8000,
        device: str | torch.device | None = None,
        allow_local_root: str | None = None,
        allow_private_urls: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_size: int | None = None,
        max_wait_ms: float = 5.0,
        graceful_timeout: float = 30.0,
        resolve_workers: int = 8,
        access_log: bool = True,
        log_level: str = "info",
        load_options: LoadOptions | None = None,
    ) -> None:
        """Store the settings (``device`` and ``batch_size`` go into ``load_options``) and validate them."""
        if load_options is not None and not isinstance(load_options, LoadOptions):
            raise TypeError(f"load_options must be a mmrag.LoadOptions, got {type(load_options).__name__}")
        shorthands = {
            name: value for name, value in (("device", device), ("batch_size", batch_size)) if value is not None
        }
        fields = {
            "model": model, "db": db, "collection": collection, "host": host, "port": port,
            "allow_local_root": allow_local_root, "allow_private_urls": allow_private_urls,
            "max_body_bytes": max_body_bytes, "max_items": max_items, "max_queue": max_queue,
            "max_wait_ms": max_wait_ms, "graceful_timeout": graceful_timeout, "resolve_workers": resolve_workers,
            "access_log": access_log, "log_level": log_level,
            "load_options": LoadOptions.merge(load_options, shorthands),
        }  # fmt: skip  # aligned by hand
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        """Validate limits, normalise ``allow_local_root`` and complete ``load_options``."""
        for name in ("max_body_bytes", "max_items", "max_queue", "resolve_workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_wait_ms < 0 or self.graceful_timeout < 0:
            raise ValueError("--max-wait-ms and --graceful-timeout must not be negative")
        if self.db is not None and not Path(self.db).expanduser().is_dir():
            raise ValueError(f"--db {self.db!r} is not a directory; build it first with `mmrag index PATH --db DIR`")
        if self.allow_local_root is not None:
            root = Path(self.allow_local_root).expanduser()
            if not root.is_dir():
                raise ValueError(f"--allow-local-root {self.allow_local_root!r} is not a directory")
            object.__setattr__(self, "allow_local_root", os.path.realpath(root))
        given = self.load_options.image_limits or ImageLimits()
        limits = dataclasses.replace(
            given,
            allow_private_urls=self.allow_private_urls,
            allow_local_paths=self.allow_local_root is not None,
            local_root=self.allow_local_root,
        )
        batch_size = self.load_options.batch_size or DEFAULT_BATCH_SIZE
        object.__setattr__(self, "load_options", self.load_options.replace(batch_size=batch_size, image_limits=limits))

    @property
    def device(self) -> str | torch.device | None:
        """The requested device (``load_options.device``); ``None`` picks the best."""
        return self.load_options.device

    @property
    def batch_size(self) -> int:
        """Most items per forward pass (``load_options.batch_size``)."""
        return self.load_options.batch_size or DEFAULT_BATCH_SIZE

    def image_limits(self) -> ImageLimits:
        """The image policy every request runs under (``load_options.image_limits``).

        Returns:
            :class:`~mmrag.ImageLimits` with local paths off unless
            ``allow_local_root`` is set (and then confined to it), and
            private-address URLs refused unless ``allow_private_urls``.
        """
        assert self.load_options.image_limits is not None  # set by _validate
        return self.load_options.image_limits

    @property
    def binds_loopback_only(self) -> bool:
        """Whether ``host`` is a loopback address or ``localhost``."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mmrag serve`` options to ``parser``.

    Args:
        parser: The (sub)parser of the serve command.
    """
    defaults = ServerSettings()
    parser.add_argument(
        "--model", help="model alias, hub id or directory (default: the --db store's model, else siglip2-base-224)"
    )
    parser.add_argument("--db", help="store directory to serve /search from (default: /search disabled)")
    parser.add_argument("--collection", default=defaults.collection, help="collection name in --db (default mmrag)")
    parser.add_argument("--host", default=defaults.host, help="interface to bind (default 127.0.0.1; no auth!)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port (default 8000; 0 = any free port)")
    add_load_arguments(parser, batch_size_default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--allow-local-root",
        metavar="DIR",
        help="let image fields name server files below DIR (default: server files are never read)",
    )
    parser.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="fetch image URLs on loopback/private/link-local addresses (default: refused)",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=defaults.max_body_bytes, help="largest request body (default 16 MiB)"
    )
    parser.add_argument(
        "--max-items", type=int, default=defaults.max_items, help="most inputs per request (default 2048)"
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="most items decoding or waiting for the model; beyond it: 429 (default 4096)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="how long a batch waits for more requests (default 5)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=defaults.graceful_timeout,
        help="seconds requests in flight get to finish after SIGTERM (default 30)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=("critical", "error", "warning", "info", "debug")
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Build :class:`ServerSettings` from parsed ``mmrag serve`` arguments.

    Args:
        args: The namespace :func:`add_server_arguments` options were parsed into.

    Returns:
        The validated settings.

    Raises:
        ValueError: An option is out of range.
    """
    return ServerSettings(
        model=args.model,
        db=args.db,
        collection=args.collection,
        host=args.host,
        port=args.port,
        load_options=load_options_from_args(args),
        allow_local_root=args.allow_local_root,
        allow_private_urls=args.allow_private_urls,
        max_body_bytes=args.max_body_bytes,
        max_items=args.max_items,
        max_queue=args.max_queue,
        max_wait_ms=args.max_wait_ms,
        graceful_timeout=args.graceful_timeout,
        access_log=not args.no_access_log,
        log_level=args.log_level,
    )


def add_load_arguments(parser: argparse.ArgumentParser, *, batch_size_default: int | None = None) -> None:
    """Add the model-loading options (``--device``, ``--dtype``, ``--batch-size`` ...) to ``parser``.

    Shared by ``mmrag serve``, ``mmrag index`` and ``mmrag search``;
    :func:`load_options_from_args` turns them into one
    :class:`~mmrag.LoadOptions`.

    Args:
        parser: A (sub)parser.
        batch_size_default: The ``--batch-size`` default; ``None``: the
            loader's own (64 items).
    """
    shown = f"default {batch_size_default}" if batch_size_default else "default 64"
    parser.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: best available)")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPE_NAMES),
        metavar="DTYPE",
        help="weights' dtype: float32, float16 or bfloat16 (default: half precision on a GPU, float32 on the CPU)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=batch_size_default, help=f"items per forward pass ({shown})"
    )
    parser.add_argument("--revision", help="hub branch, tag or commit of the model (default: main)")
    parser.add_argument(
        "--local-files-only", action="store_true", help="never download: use only cached models or local directories"
    )


def load_options_from_args(args: argparse.Namespace) -> LoadOptions:
    """The :class:`~mmrag.LoadOptions` of parsed :func:`add_load_arguments` options.

    Args:
        args: The parsed namespace (options it lacks take their defaults).

    Returns:
        The options.

    Raises:
        mmrag.InvalidInputError: A value :class:`~mmrag.LoadOptions` refuses.
    """
    return LoadOptions(
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        batch_size=getattr(args, "batch_size", None),
        revision=getattr(args, "revision", None),
        local_files_only=bool(getattr(args, "local_files_only", False)),
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
