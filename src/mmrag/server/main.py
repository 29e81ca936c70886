"""Running the server: ``mmrag serve`` / ``python -m mmrag.server``.

The listening socket is bound before the model loads (so a port clash fails
at once, and ``--port 0`` can print the port it got); the model then loads in
the background while ``/health`` already answers.

SIGTERM (or Ctrl-C) stops accepting connections, lets requests in flight
finish (up to ``--graceful-timeout`` seconds), drains the batching queue,
releases the store and exits with status 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from mmrag.server.arguments import add_server_arguments, settings_from_args
from mmrag.server.errors import require_server_dependencies
from mmrag.server.settings import ServerSettings

__all__ = ["add_serve_command", "main", "run_server", "serve_main"]

_DESCRIPTION = (
    "Serve embeddings over HTTP: POST /embed, /similarity, /v1/embeddings (OpenAI-compatible), "
    '/search (with --db); GET /health, /ready, /metrics. Needs pip install "mmrag[server]".'
)


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``mmrag`` command's subparsers.

    Args:
        subparsers: What ``parser.add_subparsers()`` returned.

    Returns:
        The ``serve`` subparser (its handler is :func:`serve_main`).
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve embeddings over HTTP", description=_DESCRIPTION
    )
    add_server_arguments(parser)
    parser.set_defaults(handler=serve_main)
    return parser


def serve_main(args: argparse.Namespace) -> int:
    """Run the server for parsed ``serve`` arguments until it is stopped.

    Args:
        args: Namespace with the options of :func:`add_serve_command`.

    Returns:
        0 after a clean shutdown, 1 if the model or store failed to load.

    Raises:
        ServerDependencyError: FastAPI or uvicorn is missing (the message says
            ``pip install "mmrag[server]"``).
        ValueError: An option is out of range.
        OSError: The address cannot be bound.
    """
    require_server_dependencies()
    return run_server(settings_from_args(args))


def run_server(settings: ServerSettings) -> int:
    """Bind, start uvicorn with the app, and block until shutdown.

    Args:
        settings: The server settings.

    Returns:
        0 after a clean shutdown, 1 if the model or store failed to load.
    """
    require_server_dependencies()
    # The encoder runs on the batching thread while the event loop and the
    # decode pool need the CPU too; OpenMP's default of spinning between
    # parallel regions burnt ~25 ms of CPU per request on 2 cores (and tripled
    # latency under load). Passive waiting costs nothing measurable. Set
    # before torch is imported (it loads in the background below); an
    # explicit OMP_WAIT_POLICY in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from mmrag.server.app import create_app

    holder: dict[str, uvicorn.Server] = {}

    def stop() -> None:
        server = holder.get("server")
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout + 0.999),
        server_header=False,
    )
    server = uvicorn.Server(config)
    holder["server"] = server
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"mmrag serve: listening on http://{shown}:{port} (GET /ready turns 200 once the model is loaded)", flush=True
    )
    if not settings.binds_loopback_only:
        print(
            f"mmrag serve: warning: listening on {settings.host}, not loopback; the server has no authentication",
            file=sys.stderr,
            flush=True,
        )
    # uvicorn re-raises the signal that stopped it once it has shut down; with
    # SIGTERM's default action that would kill the process (status -15) after
    # a perfectly graceful shutdown. A no-op handler makes it exit with 0.
    previous = signal.signal(signal.SIGTERM, _graceful_stop_done)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    # The interpreter's last garbage collection walks every object of the model and its libraries (seconds
    # on a busy machine) only to free memory the process is about to give back anyway: skip it.
    gc.freeze()
    error = app.state.runtime.load_error
    if error:
        print(f"mmrag serve: error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _graceful_stop_done(_signum: int, _frame: object) -> None:
    """SIGTERM after uvicorn finished its graceful shutdown: nothing left to do."""


def _bind(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
        sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mmrag.server`` (same options as ``mmrag serve``).

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 after a clean shutdown, 1 if loading failed,
        2 on a usage or startup error.
    """
    parser = argparse.ArgumentParser(prog="python -m mmrag.server", description=_DESCRIPTION)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve_main(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the user, like the mmrag CLI
        if os.environ.get("MMRAG_DEBUG"):
            raise
        print(f"mmrag serve: error: {exc}", file=sys.stderr)
        return 2
