"""ASGI middleware of the service: unexpected errors answered cleanly, and request counters.

:class:`ErrorGuardMiddleware` makes an unexpected exception a JSON 500 with
``Connection: close`` and keeps it from reaching uvicorn, which would
otherwise reset the connection (and with it a kept-alive client's next
request). :class:`RequestStatsMiddleware` counts requests for ``/metrics``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from mmrag.server.errors import INTERNAL_ERROR_MESSAGE, error_payload

if TYPE_CHECKING:
    from mmrag.server.runtime import Runtime

__all__ = ["ErrorGuardMiddleware", "RequestStatsMiddleware"]

logger = logging.getLogger("uvicorn.error")


class ErrorGuardMiddleware:
    """Answer any exception the application lets through with a 500 that closes the connection.

    The traceback goes to the server log, never to the client. If the
    response had already started, nothing can be answered any more; the
    exception then propagates and the server drops the connection.

    Args:
        app: The ASGI app to wrap.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run one request, catching what escapes it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:
                raise
            body = json.dumps(error_payload("internal_error", INTERNAL_ERROR_MESSAGE)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class RequestStatsMiddleware:
    """Count requests served, in flight and by status (for ``/metrics``).

    Args:
        app: The ASGI app to wrap.
        runtime: Where the counters live.
    """

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run one request and count it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = self.runtime
        status = 500

        async def counting_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        runtime.in_flight += 1
        try:
            await self.app(scope, receive, counting_send)
        finally:
            runtime.in_flight -= 1
            runtime.requests_served += 1
            runtime.statuses[status] += 1
