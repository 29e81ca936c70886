"""The ``mmrag serve`` command-line options and the shared model-loading flags.

Importable without the ``mmrag[server]`` extra (``mmrag serve --help`` works
before FastAPI is installed). :func:`add_load_arguments` and
:func:`load_options_from_args` are shared with ``mmrag index`` and
``mmrag search``.
"""

from __future__ import annotations

import argparse
from typing import Literal

from mmrag.options import DTYPE_NAMES, LoadOptions
from mmrag.server.settings import DEFAULT_BATCH_SIZE, ServerSettings

__all__ = ["add_load_arguments", "add_server_arguments", "load_options_from_args", "settings_from_args"]


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
    parser.add_argument("--chroma-url", metavar="http://HOST:PORT", help="serve /search from a Chroma server")
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
        help="most work in the pipeline: requests being read or parsed plus items decoding or waiting for the "
        "model; beyond it: 429 at once (default 4096)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="batching window: how long a partial batch waits for requests already on their way (default 5)",
    )
    parser.add_argument(
        "--max-text-chars",
        type=int,
        default=defaults.max_text_chars,
        help="longest text item in characters; beyond it: 422 (default 100000)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help="largest image, width*height; beyond it: 400 (default 64000000)",
    )
    parser.add_argument(
        "--max-decode-pixels",
        type=int,
        default=defaults.max_decode_pixels,
        help="most pixels being decoded at once across requests; images wait beyond it (default 128000000)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=defaults.body_timeout,
        help="seconds a request body may take to arrive; then 408 and the connection closes (default 60)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="embedding cache file or directory (':memory:' for memory only); default $MMRAG_CACHE_PATH, else none",
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
        text_model=getattr(args, "text_model", None),
        db=args.db,
        chroma_url=args.chroma_url,
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
        max_text_chars=args.max_text_chars,
        max_pixels=args.max_pixels,
        max_decode_pixels=args.max_decode_pixels,
        body_timeout=args.body_timeout,
        graceful_timeout=args.graceful_timeout,
        access_log=not args.no_access_log,
        log_level=args.log_level,
        cache_path=getattr(args, "cache", None),
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
        "--batch-size",
        type=_batch_size,
        default=batch_size_default,
        help=f"items per forward pass, or 'auto' to find the largest that fits the GPU ({shown})",
    )
    parser.add_argument(
        "--image-workers",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="processes that decode and resize images (default: one per core, at most 8; 0: in this process)",
    )
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode JPEGs at reduced size before resizing (faster; vectors differ slightly, recorded in the store)",
    )
    parser.add_argument(
        "--gpu-decode",
        action="store_true",
        help="decode JPEGs on the GPU with nvJPEG where torchvision and CUDA are there (not exact; recorded)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="run the model through torch.compile (slow start, faster after)"
    )
    parser.add_argument("--revision", help="hub branch, tag or commit of the model (default: main)")
    parser.add_argument(
        "--text-model",
        metavar="HUB_ID_OR_DIR",
        help="a Visualized-BGE .pth's BGE text model (default: the one its file name or the store implies)",
    )
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
        image_workers=getattr(args, "image_workers", None),
        fast_decode=bool(getattr(args, "fast_decode", False)),
        compile=bool(getattr(args, "compile", False)),
        gpu_decode=bool(getattr(args, "gpu_decode", False)),
    )


def _batch_size(text: str) -> int | Literal["auto"]:
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
