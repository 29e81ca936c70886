"""Server settings: one frozen dataclass and the image policy it implies.

Everything here is importable without the ``mmrag[server]`` extra, so that
``mmrag serve --help`` works (and says what to install) before FastAPI is
present. The command-line options live in :mod:`mmrag.server.arguments`
(their old names here still work).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.inputs import ImageLimits
from mmrag.options import LoadOptions

if TYPE_CHECKING:
    import torch

__all__ = ["ServerSettings"]

DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 2048
DEFAULT_MAX_QUEUE = 4096
DEFAULT_MAX_TEXT_CHARS = 100_000
DEFAULT_MAX_DECODE_PIXELS = 128_000_000
DEFAULT_BODY_TIMEOUT = 60.0
_MOVED = ("add_load_arguments", "add_server_arguments", "load_options_from_args", "settings_from_args")


@dataclass(frozen=True, init=False)
class ServerSettings:
    """How one ``mmrag serve`` process runs.

    Args:
        model: Model alias, hub id or directory; ``None`` means the ``db``
            store's recorded model, else :data:`mmrag.DEFAULT_MODEL`.
        text_model: A Visualized-BGE ``.pth``'s BGE text model (hub id or
            directory), passed to :func:`mmrag.load_encoder`; ``None``: the
            one the file name implies, or the store's recorded one.
        db: Embedded store directory for ``/search``; ``None`` disables it.
        collection: Logical store name inside ``db`` (or on ``chroma_url``).
        chroma_url: A Chroma server (``http://HOST:PORT``) to serve ``/search``
            from instead of ``db``.
        host: Interface to bind (loopback by default: there is no auth).
        port: TCP port; ``0`` picks a free one (printed at startup).
        device: Shorthand for ``load_options.device`` (given, it wins).
        allow_local_root: Directory below which image fields may name server
            files; ``None`` (the default) never reads server files.
        allow_private_urls: Fetch image URLs on loopback/private networks.
        max_body_bytes: Largest request body (413 beyond it).
        max_items: Most inputs or candidates in one request (422 beyond it).
        max_queue: Most work in the pipeline at once: every embedding request
            counts from its arrival (one place while its body is read and
            parsed), then as many places as it has items until its vectors
            are computed. Beyond it requests get 429 with ``Retry-After``
            at once (a request larger than this gets in only when the
            pipeline is empty).
        batch_size: Shorthand for ``load_options.batch_size`` (given, it wins).
        max_wait_ms: The batching window: how long a batch that is not yet
            full waits for requests already on their way (admitted, being
            read or decoded). A request that finds none on their way is
            not delayed at all.
        graceful_timeout: Seconds that requests in flight get to finish after
            SIGTERM before they are cut off.
        resolve_workers: Threads that decode (and fetch) images, shared by all
            requests.
        access_log: Log one line per request.
        log_level: uvicorn log level.
        max_text_chars: Longest text item, in characters (422
            ``text_too_long`` beyond it). Accepted texts are cut to the
            model's window before tokenising, so a long text costs no more
            than a short one.
        max_pixels: Shorthand for ``load_options.image_limits.max_pixels``:
            the largest image (``width * height``) accepted (given, it wins).
        max_decode_pixels: Most pixels being decoded at once, across all
            requests; images wait for their turn beyond it (one larger image
            is decoded alone). Decoded images are then shrunk to what the
            model's input needs, so this bounds the memory images take.
        body_timeout: Seconds a request's whole body may take to arrive after
            its headers; then 408 and the connection is closed.
        cache_path: Where the embedding cache keeps vectors
            (:class:`~mmrag.EmbeddingCache`: a SQLite file or a directory,
            shareable by several workers), ``":memory:"`` for a cache in
            memory only; default the ``MMRAG_CACHE_PATH`` environment
            variable, else no cache. Texts and images seen before then cost
            a lookup instead of a forward pass.
        cache_max_entries: Most vectors the cache holds in memory.
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
    text_model: str | None
    db: str | None
    collection: str
    chroma_url: str | None
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
    max_text_chars: int
    max_decode_pixels: int
    body_timeout: float
    cache_path: str | None
    cache_max_entries: int
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
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        max_pixels: int | None = None,
        max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        load_options: LoadOptions | None = None,
        cache_path: str | None = None,
        cache_max_entries: int = 100_000,
        chroma_url: str | None = None,
        text_model: str | None = None,
    ) -> None:
        """Store the settings (the shorthands go into ``load_options``) and validate them."""
        if load_options is not None and not isinstance(load_options, LoadOptions):
            raise TypeError(f"load_options must be a mmrag.LoadOptions, got {type(load_options).__name__}")
        shorthands = {
            name: value for name, value in (("device", device), ("batch_size", batch_size)) if value is not None
        }
        options = LoadOptions.merge(load_options, shorthands)
        if max_pixels is not None:
            limits = dataclasses.replace(options.image_limits or ImageLimits(), max_pixels=max_pixels)
            options = options.replace(image_limits=limits)
        fields = {
            "model": model, "text_model": text_model, "db": db, "collection": collection, "chroma_url": chroma_url,
            "host": host, "port": port,
            "allow_local_root": allow_local_root, "allow_private_urls": allow_private_urls,
            "max_body_bytes": max_body_bytes, "max_items": max_items, "max_queue": max_queue,
            "max_wait_ms": max_wait_ms, "graceful_timeout": graceful_timeout, "resolve_workers": resolve_workers,
            "access_log": access_log, "log_level": log_level, "max_text_chars": max_text_chars,
            "max_decode_pixels": max_decode_pixels, "body_timeout": body_timeout, "load_options": options,
            "cache_path": cache_path if cache_path is not None else os.environ.get("MMRAG_CACHE_PATH") or None,
            "cache_max_entries": cache_max_entries,
        }  # fmt: skip  # aligned by hand
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        """Validate limits, normalise ``allow_local_root`` and complete ``load_options``."""
        for name in (
            "max_body_bytes", "max_items", "max_queue", "resolve_workers", "max_text_chars", "max_decode_pixels",
            "cache_max_entries",
        ):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_wait_ms < 0 or self.graceful_timeout < 0:
            raise ValueError("--max-wait-ms and --graceful-timeout must not be negative")
        if not self.body_timeout > 0:
            raise ValueError(f"--body-timeout must be positive, got {self.body_timeout}")
        if self.db is not None and not Path(self.db).expanduser().is_dir():
            raise ValueError(f"--db {self.db!r} is not a directory; build it first with `mmrag index PATH --db DIR`")
        if self.chroma_url is not None:
            from mmrag.ray.server import ChromaServer  # no Ray needed: just the URL's check

            if self.db is not None:
                raise ValueError("give --db or --chroma-url, not both")
            ChromaServer.from_url(self.chroma_url)
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
        """Most items per forward pass (``load_options.batch_size``; ``"auto"`` counts as the default)."""
        return self.load_options.batch_size_or(DEFAULT_BATCH_SIZE)

    @property
    def max_pixels(self) -> int:
        """The largest image accepted, in pixels (``load_options.image_limits.max_pixels``)."""
        return self.image_limits().max_pixels

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


def __getattr__(name: str) -> Any:
    """The command-line helpers that moved to :mod:`mmrag.server.arguments`, under their old import path."""
    if name in _MOVED:
        from mmrag.server import arguments

        return getattr(arguments, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
