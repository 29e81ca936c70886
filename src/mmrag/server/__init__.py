"""HTTP service for mmrag embeddings (``mmrag serve``; needs ``pip install "mmrag[server]"``).

Endpoints (JSON in, JSON out):

* ``POST /embed`` ``{"image": base64 | data URI | URL, "text": str}`` (``image_base64``
  is accepted as an alias of ``image``) returns ``image_embedding``,
  ``text_embedding``, ``fused_embedding`` (``normalize(image + text)``),
  ``dimension`` and ``model_id``. Either input may be left out: the keys of
  an absent input, and ``fused_embedding`` unless both are given, are then
  omitted (not ``null``).
* ``POST /similarity`` ``{"query", "candidates": [...], "query_type",
  "candidate_type", "skip_invalid", "top_k"}`` returns ``{"similarities":
  [[candidate, score], ...], "indices": [...], "model_id"}``, best first.
  Candidates are embedded together in batches. A bad candidate is a 400
  naming its index; with ``"skip_invalid": true`` it is left out and listed
  in ``"errors"`` (``index`` and ``message``).
* ``POST /v1/embeddings``: OpenAI-compatible (``input`` string or list,
  ``encoding_format`` ``"float"`` or ``"base64"`` (little-endian float32),
  ``dimensions`` must equal the model's, ``model`` and ``user`` ignored),
  plus ``"modality": "text" | "image"``. The official ``openai`` client works
  against ``base_url="http://HOST:PORT/v1"``.
* ``POST /search`` ``{"query" | "image", "k", "modality", "where", "fusion"}``
  over the ``--db`` store: ``{"results": [{"id", "modality", "source",
  "text", "score", "metadata"}], ...}``. Without ``--db``: 409
  ``store_not_configured``.
* ``GET /health`` (200 once the process serves HTTP), ``GET /ready`` (503
  until the model is loaded), ``GET /metrics`` (forward passes, queue depth,
  requests served).

Errors are ``{"error": {"type", "code", "message"}}`` with a 4xx status for
every input problem; an mmrag error's status comes from its ``code`` (see
:mod:`mmrag.server.errors` for the table); overload is 429 with
``Retry-After``; anything unexpected is a 500 that closes the connection.

Limits (see :class:`ServerSettings`): ``--max-body-bytes`` (413),
``--body-timeout`` (408 when a body does not arrive in time),
``--max-items`` and ``--max-text-chars`` (422), ``--max-pixels`` per image
and ``--max-decode-pixels`` across images being decoded, and
``--max-queue``, which counts every embedding request from its arrival
(429 at once beyond it). Concurrent requests are gathered into full batches
within ``--max-wait-ms``. The model is loaded with one :class:`~mmrag.LoadOptions`
(``--device``, ``--dtype``, ``--batch-size``, ``--revision``,
``--local-files-only``): :attr:`ServerSettings.load_options`. Image fields never read server files unless
``--allow-local-root DIR`` is given (and then only below DIR), and URLs on
loopback or private networks are refused before any connection unless
``--allow-private-urls``. There is no authentication: keep the default
``--host 127.0.0.1`` or put a proxy in front.

Example:
    $ mmrag serve --model clip-vit-b-32 --db ./mmrag_db --port 8000
    $ curl -s localhost:8000/embed -H 'content-type: application/json' -d '{"text": "a red circle"}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrag.server.arguments import (
    add_load_arguments,
    add_server_arguments,
    load_options_from_args,
    settings_from_args,
)
from mmrag.server.errors import ServerDependencyError, require_server_dependencies
from mmrag.server.main import add_serve_command, main, run_server, serve_main
from mmrag.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "ServerDependencyError",
    "ServerSettings",
    "add_load_arguments",
    "add_serve_command",
    "add_server_arguments",
    "create_app",
    "load_options_from_args",
    "main",
    "run_server",
    "serve_main",
    "settings_from_args",
]


def create_app(settings: ServerSettings | None = None, *, on_fatal: Any = None) -> FastAPI:
    """Build the FastAPI application (see :func:`mmrag.server.app.create_app`).

    Args:
        settings: Server settings (default: ``ServerSettings()``).
        on_fatal: Called if the model or store cannot be loaded.

    Returns:
        The app, ready for ``uvicorn.run(app)``.

    Raises:
        ServerDependencyError: FastAPI or uvicorn is missing.
    """
    require_server_dependencies()
    from mmrag.server.app import create_app as _create_app

    return _create_app(settings, on_fatal=on_fatal)
