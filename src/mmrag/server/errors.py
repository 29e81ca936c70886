"""Error responses: every failure is ``{"error": {"type", "message"}}`` with a fitting status.

=================================  ======  ========================
Cause                              Status  ``error.type``
=================================  ======  ========================
malformed JSON                     400     ``invalid_json``
bad image (decode, URL, path ...)  400     ``invalid_image``
bad parameter value                400     ``invalid_request``
unknown path                       404     ``not_found``
wrong method                       405     ``method_not_allowed``
``/search`` without ``--db``       409     ``store_not_configured``
body too large                     413     ``payload_too_large``
schema violation                   422     ``validation_error``
too many items                     422     ``too_many_items``
queue full                         429     ``overloaded`` (+ ``Retry-After``)
model still loading                503     ``not_ready`` (+ ``Retry-After``)
anything unexpected                500     ``internal_error`` (no details)
=================================  ======  ========================

Errors about one item of a list also carry ``"index"`` (its position).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmrag.errors import ImageInputError, MissingDependencyError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

__all__ = [
    "ApiError",
    "ServerDependencyError",
    "error_payload",
    "install_error_handlers",
    "require_server_dependencies",
    "server_wording",
]

INSTALL_HINT = 'pip install "mmrag[server]"'
_STATUS_TYPES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "overloaded",
    503: "not_ready",
}


class ServerDependencyError(MissingDependencyError):
    """FastAPI or uvicorn is missing; the message says ``pip install "mmrag[server]"``."""


class ApiError(Exception):
    """An error answered to the client as JSON.

    Args:
        status: HTTP status code (4xx or 5xx).
        type: Short machine-readable kind, e.g. ``"invalid_image"``.
        message: Human-readable explanation, safe to show to the client.
        index: Position of the offending item in its list, if any.
        headers: Extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        type: str,  # noqa: A002 - the JSON field's name
        message: str,
        *,
        index: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.index = index
        self.headers = dict(headers or {})


def require_server_dependencies() -> None:
    """Import FastAPI and uvicorn, or explain how to install them.

    Raises:
        ServerDependencyError: One of them is not installed.
    """
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ServerDependencyError(
            f"`mmrag serve` needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: {INSTALL_HINT}"
        )


def error_payload(type: str, message: str, *, index: int | None = None, **extra: Any) -> dict[str, Any]:  # noqa: A002
    """The JSON body of an error response.

    Args:
        type: Short machine-readable kind.
        message: Human-readable explanation.
        index: Position of the offending item, if any.
        **extra: More fields for the ``error`` object (e.g. ``details``).

    Returns:
        ``{"error": {"type": ..., "message": ..., ...}}``.
    """
    error: dict[str, Any] = {"type": type, "message": message}
    if index is not None:
        error["index"] = index
    error.update(extra)
    return {"error": error}


def error_response(status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response (FastAPI is imported here, not at module import)."""
    from starlette.responses import JSONResponse

    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a JSON ``{"error": ...}`` response.

    Args:
        app: The application.
    """
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from mmrag.batching import QueueFullError

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, error_payload(exc.type, exc.message, index=exc.index), exc.headers)

    async def image_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ImageInputError)
        where = "image" if exc.index is None else f"image {exc.index}"
        described = f" ({exc.item})" if exc.item else ""
        message = f"{where}{described}: {server_wording(exc.reason)}"
        return error_response(400, error_payload("invalid_image", message, index=exc.index))

    async def queue_full(_request: Request, exc: Exception) -> Response:
        return error_response(429, error_payload("overloaded", f"{exc}; retry later"), {"Retry-After": "1"})

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [_detail(error) for error in exc.errors()]
        if details and all(item["type"] == "json_invalid" for item in details):
            return error_response(400, error_payload("invalid_json", "request body is not valid JSON"))
        message = "; ".join(f"{item['loc']}: {item['msg']}" for item in details[:5]) or "invalid request"
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type.lower():
            got = content_type or "none"
            message = f"send the body as JSON with `Content-Type: application/json` (got {got!r}); {message}"
        return error_response(422, error_payload("validation_error", message, details=details))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = _STATUS_TYPES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else kind.replace("_", " ")
        return error_response(exc.status_code, error_payload(kind, message), exc.headers)

    async def unexpected(_request: Request, _exc: Exception) -> Response:
        # Starlette re-raises the exception after this response, and uvicorn logs its traceback.
        return error_response(500, error_payload("internal_error", "internal server error; see the server log"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ImageInputError, image_error)
    app.add_exception_handler(QueueFullError, queue_full)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


# The resolver words its hints for library callers (ImageLimits fields); a
# client of the server gets the server's flags instead, and never the root.
_REWORDINGS = (
    (re.compile(r"\(ImageLimits\.allow_local_paths=False\)"), "on this server (no --allow-local-root)"),
    (re.compile(r"outside ImageLimits\.local_root \(.*?\):"), "outside the server's --allow-local-root:"),
    (
        re.compile(r"pass allow_private_urls=True \(ImageLimits\) to allow private addresses"),
        "this server refuses private addresses (no --allow-private-urls)",
    ),
)


def server_wording(reason: str) -> str:
    """Reword an image error's library hints for the server's clients.

    Args:
        reason: :attr:`~mmrag.ImageInputError.reason`.

    Returns:
        The reason with ``ImageLimits`` hints replaced by the server's flags
        (and the local root directory left out).
    """
    for pattern, replacement in _REWORDINGS:
        reason = pattern.sub(replacement, reason)
    return reason


def _detail(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error without its ``input`` (which may be megabytes of base64)."""
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return {"loc": location, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
