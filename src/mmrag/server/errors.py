"""Error responses: every failure is ``{"error": {"type", "code", "message"}}`` with a fitting status.

Errors mmrag raises (:class:`~mmrag.MmragError`) are answered from ONE table
keyed by their :attr:`~mmrag.MmragError.code` (:data:`ERROR_MAPPINGS`), never
by their message; a subclass without an entry of its own answers as its
nearest parent class with one. ``error.code`` is the precise code (the
error's own, or the service's for its own refusals), ``error.type`` the
coarser kind earlier versions answered (kept for compatibility).

=======================================  ======  ========================  ===========================================
Cause                                    Status  ``error.type``            ``error.code``
=======================================  ======  ========================  ===========================================
malformed JSON (or nested too deeply)    400     ``invalid_json``          ``invalid_json``
bad image (decode, URL, path ...)        400     ``invalid_image``         ``invalid_image``
bad text, filter, list or value          400     ``invalid_request``       ``invalid_text``, ``invalid_filter``,
                                                                           ``not_a_sequence``, ``invalid_input``
pair or model it cannot serve            400     ``invalid_request``       ``unsupported_pair``, ``unsupported_model``
unknown path                             404     ``not_found``             ``not_found``
wrong method                             405     ``method_not_allowed``    ``method_not_allowed``
body not complete in ``--body-timeout``  408     ``request_timeout``       ``body_timeout``
``/search`` without ``--db``             409     ``store_not_configured``  ``store_not_configured``
store built with another model           409     ``conflict``              ``store_mismatch``
body too large                           413     ``payload_too_large``     ``payload_too_large``
schema violation                         422     ``validation_error``      ``validation_error``
too many items                           422     ``too_many_items``        ``too_many_items``
text over ``--max-text-chars``           422     ``text_too_long``         ``text_too_long``
pipeline full (+ ``Retry-After``)        429     ``overloaded``            ``overloaded``
optional package missing                 501     ``not_implemented``       ``missing_dependency``
model still loading (+ ``Retry-After``)  503     ``not_ready``             ``not_ready``
model or store unavailable               503     ``unavailable``           ``model_not_available``, ``store_locked``
anything unexpected                      500     ``internal_error``        ``internal_error``, ``mmrag_error``
=======================================  ======  ========================  ===========================================

5xx answers never carry the exception's text (it goes to the server log);
a 500 (and the 408 and 413 refusals) close the connection (``Connection:
close``), so a kept-alive client's next request is never lost with it. Errors
about one item of a list also carry ``"index"`` (its position).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from mmrag.errors import ImageInputError, MissingDependencyError, MmragError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

__all__ = [
    "ERROR_MAPPINGS",
    "INTERNAL_ERROR_MESSAGE",
    "ApiError",
    "ErrorMapping",
    "ServerDependencyError",
    "error_mapping",
    "error_payload",
    "install_error_handlers",
    "mmrag_error_body",
    "require_server_dependencies",
    "server_wording",
]

INSTALL_HINT = 'pip install "mmrag[server]"'
INTERNAL_ERROR_MESSAGE = "internal server error; see the server log"
logger = logging.getLogger("uvicorn.error")


class ErrorMapping(NamedTuple):
    """How the service answers one error code.

    Attributes:
        status: HTTP status.
        type: The ``error.type`` of the answer.
        retry_after: Send ``Retry-After: 1`` (the condition is temporary).
    """

    status: int
    type: str
    retry_after: bool = False


ERROR_MAPPINGS: Mapping[str, ErrorMapping] = {
    "mmrag_error": ErrorMapping(500, "internal_error"),
    "invalid_input": ErrorMapping(400, "invalid_request"),
    "not_a_sequence": ErrorMapping(400, "invalid_request"),
    "invalid_image": ErrorMapping(400, "invalid_image"),
    "invalid_text": ErrorMapping(400, "invalid_request"),
    "invalid_filter": ErrorMapping(400, "invalid_request"),
    "unsupported_model": ErrorMapping(400, "invalid_request"),
    "unsupported_pair": ErrorMapping(400, "invalid_request"),
    "store_mismatch": ErrorMapping(409, "conflict"),
    "overloaded": ErrorMapping(429, "overloaded", retry_after=True),
    "missing_dependency": ErrorMapping(501, "not_implemented"),
    "model_not_available": ErrorMapping(503, "unavailable", retry_after=True),
    "store_locked": ErrorMapping(503, "unavailable", retry_after=True),
}
"""Every :class:`~mmrag.MmragError` code -> how the service answers it."""

_STATUS_TYPES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "overloaded",
    501: "not_implemented",
    503: "not_ready",
}
_SERVER_SIDE_MESSAGES = {
    501: "this server lacks an optional package for that; see the server log",
    503: "the service is temporarily unavailable; see the server log",
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
        code: The precise ``error.code``; default ``type``.
    """

    def __init__(
        self,
        status: int,
        type: str,  # noqa: A002 - the JSON field's name
        message: str,
        *,
        index: int | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code or type
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


def error_payload(
    type: str,  # noqa: A002 - the JSON field's name
    message: str,
    *,
    code: str | None = None,
    index: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON body of an error response.

    Args:
        type: Short machine-readable kind.
        message: Human-readable explanation.
        code: The precise code; default ``type``.
        index: Position of the offending item, if any.
        **extra: More fields for the ``error`` object (e.g. ``details``).

    Returns:
        ``{"error": {"type": ..., "code": ..., "message": ..., ...}}``.
    """
    error: dict[str, Any] = {"type": type, "code": code or type, "message": message}
    if index is not None:
        error["index"] = index
    error.update(extra)
    return {"error": error}


def error_mapping(error: type[MmragError] | MmragError) -> ErrorMapping:
    """How the service answers an mmrag error: the entry of the nearest class in its MRO with one.

    Args:
        error: An :class:`~mmrag.MmragError` or its class.

    Returns:
        The :class:`ErrorMapping` (``MmragError`` itself maps to 500, so
        there always is one).
    """
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        code = vars(klass).get("code")
        if isinstance(code, str) and code in ERROR_MAPPINGS:
            return ERROR_MAPPINGS[code]
    return ERROR_MAPPINGS[MmragError.code]


def mmrag_error_body(exc: MmragError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers the service answers an mmrag error with.

    Args:
        exc: The error.

    Returns:
        ``(status, body, headers)``. The message is the error's own for a
        4xx (image errors worded for HTTP clients by :func:`server_wording`);
        a 5xx never carries it.
    """
    mapping = error_mapping(exc)
    index = getattr(exc, "index", None)
    index = index if isinstance(index, int) else None
    headers = {"Retry-After": "1"} if mapping.retry_after else {}
    if mapping.status >= 500:
        message = _SERVER_SIDE_MESSAGES.get(mapping.status, INTERNAL_ERROR_MESSAGE)
    elif isinstance(exc, ImageInputError):
        where = "image" if exc.index is None else f"image {exc.index}"
        described = f" ({exc.item})" if exc.item else ""
        message = f"{where}{described}: {server_wording(exc.reason)}"
    else:
        message = str(exc) or type(exc).__name__
        if mapping.retry_after:
            message = f"{message}; retry later"
    return mapping.status, error_payload(mapping.type, message, code=exc.code, index=index), headers


def error_response(status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response (FastAPI is imported here, not at module import); a 500 closes the connection."""
    from starlette.responses import JSONResponse

    extra = dict(headers or {})
    if status == 500:
        extra["Connection"] = "close"
    return JSONResponse(payload, status_code=status, headers=extra)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a JSON ``{"error": ...}`` response.

    Args:
        app: The application.
    """
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        payload = error_payload(exc.type, exc.message, code=exc.code, index=exc.index)
        return error_response(exc.status, payload, exc.headers)

    async def mmrag_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MmragError)
        status, payload, headers = mmrag_error_body(exc)
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(status, payload, headers)

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
        if exc.status_code == 400 and isinstance(exc.__cause__, (ValueError, RecursionError)):
            # FastAPI's answer to a body json.loads could not parse for a reason other than syntax
            nested = isinstance(exc.__cause__, RecursionError)
            message = "request body is not valid JSON" + (" (nested too deeply)" if nested else "")
            return error_response(400, error_payload("invalid_json", message))
        kind = _STATUS_TYPES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else kind.replace("_", " ")
        return error_response(exc.status_code, error_payload(kind, message), exc.headers)

    async def unexpected(_request: Request, _exc: Exception) -> Response:
        # Only reached without ErrorGuardMiddleware (which the service installs outermost): Starlette
        # re-raises the exception after this response, and uvicorn logs its traceback.
        return error_response(500, error_payload("internal_error", INTERNAL_ERROR_MESSAGE))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(MmragError, mmrag_error)
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
