"""Server settings: one frozen dataclass, its command-line options, and the image policy.

Everything here is importable without the ``mmrag[server]`` extra, so that
``mmrag serve --help`` works (and says what to install) before FastAPI is
present.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from mmrag.inputs import ImageLimits

__all__ = ["ServerSettings", "add_server_arguments", "settings_from_args"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 2048
DEFAULT_MAX_QUEUE = 4096


@dataclass(frozen=True)
class ServerSettings:
    """How one ``mmrag serve`` process runs.

    Args:
        model: Model alias, hub id or directory; ``None`` means the ``db``
            store's recorded model, else :data:`mmrag.DEFAULT_MODEL`.
        db: Embedded store directory for ``/search``; ``None`` disables it.
        collection: Logical store name inside ``db``.
        host: Interface to bind (loopback by default: there is no auth).
        port: TCP port; ``0`` picks a free one (printed at startup).
        device: ``cuda``, ``mps`` or ``cpu``; ``None`` picks the best.
        allow_local_root: Directory below which image fields may name server
            files; ``None`` (the default) never reads server files.
        allow_private_urls: Fetch image URLs on loopback/private networks.
        max_body_bytes: Largest request body (413 beyond it).
        max_items: Most inputs or candidates in one request (422 beyond it).
        max_queue: Most items admitted (being decoded or waiting for the
            model) at once; beyond it requests get 429 with ``Retry-After``
            (a request larger than this is admitted only into an empty queue).
        batch_size: Most items per forward pass.
        max_wait_ms: How long the batching queue waits for more requests to
            join a batch that is not yet full.
        graceful_timeout: Seconds that requests in flight get to finish after
            SIGTERM before they are cut off.
        resolve_workers: Threads that decode (and fetch) images, shared by all
            requests.
        access_log: Log one line per request.
        log_level: uvicorn log level.

    Raises:
        ValueError: A limit is not positive, the port is out of range, or
            ``db`` or ``allow_local_root`` is not a directory.
    """

    model: str | None = None
    db: str | None = None
    collection: str = "mmrag"
    host: str = "127.0.0.1"
    port: int = 8000
    device: str | None = None
    allow_local_root: str | None = None
    allow_private_urls: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_items: int = DEFAULT_MAX_ITEMS
    max_queue: int = DEFAULT_MAX_QUEUE
    batch_size: int = 64
    max_wait_ms: float = 5.0
    graceful_timeout: float = 30.0
    resolve_workers: int = 8
    access_log: bool = True
    log_level: str = "info"

    def __post_init__(self) -> None:
        """Validate limits and normalise ``allow_local_root`` to an absolute real path."""
        for name in ("max_body_bytes", "max_items", "max_queue", "batch_size", "resolve_workers"):
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

    def image_limits(self) -> ImageLimits:
        """The image policy every request runs under.

        Returns:
            :class:`~mmrag.ImageLimits` with local paths off unless
            ``allow_local_root`` is set (and then confined to it), and
            private-address URLs refused unless ``allow_private_urls``.
        """
        return ImageLimits(
            allow_private_urls=self.allow_private_urls,
            allow_local_paths=self.allow_local_root is not None,
            local_root=self.allow_local_root,
        )

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
    parser.add_argument("--device", help="cuda, mps or cpu (default: best available)")
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
        "--batch-size", type=int, default=defaults.batch_size, help="items per forward pass (default 64)"
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
        device=args.device,
        allow_local_root=args.allow_local_root,
        allow_private_urls=args.allow_private_urls,
        max_body_bytes=args.max_body_bytes,
        max_items=args.max_items,
        max_queue=args.max_queue,
        batch_size=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        graceful_timeout=args.graceful_timeout,
        access_log=not args.no_access_log,
        log_level=args.log_level,
    )
