"""Request limits: body size (413) and admission to the embedding queue (429).

Both are plain ASGI / plain Python, independent of the FastAPI version.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mmrag.server.errors import error_payload

__all__ = ["Admission", "BodyLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimitMiddleware:
    """Answer 413 to request bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before a byte of
    the body is read. A body without one (chunked transfer encoding) is
    counted while it streams in; as soon as it passes the limit the
    application sees a disconnect, whatever it was about to answer is
    dropped, and the client gets the 413 instead. The connection is closed
    afterwards (``Connection: close``).

    Args:
        app: The ASGI application to protect.
        max_bytes: Largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one ASGI request under the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"request body of {declared} bytes is over the limit of {self.max_bytes} bytes")
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the 413 is sent below instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send, f"request body is over the limit of {self.max_bytes} bytes")

    @staticmethod
    async def _refuse(send: Send, message: str) -> None:
        body = json.dumps(error_payload("payload_too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Admission:
    """A counter of items admitted to the embedding pipeline, bounded by ``limit``.

    An item is admitted from the moment its request is accepted until its
    vector is computed (decoding, waiting and the forward pass included), so
    ``limit`` bounds the memory that queued work can take. A request with
    more items than ``limit`` counts as ``limit``: it gets in only when the
    queue is empty.

    Args:
        limit: Most items admitted at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._depth = 0
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def depth(self) -> int:
        """Items admitted and not yet finished."""
        return self._depth

    def try_acquire(self, items: int) -> bool:
        """Admit ``items`` more if they fit.

        Args:
            items: How many items the request brings.

        Returns:
            ``True`` if admitted (call :meth:`release` later), ``False`` if full.
        """
        items = min(items, self.limit)  # a request larger than the queue fits only when it is empty
        with self._lock:
            if self._depth + items > self.limit:
                self.refused += 1
                return False
            self._depth += items
            return True

    def release(self, items: int) -> None:
        """Return ``items`` admitted by :meth:`try_acquire`.

        Args:
            items: The same count that was passed to :meth:`try_acquire`.
        """
        items = min(items, self.limit)
        with self._lock:
            self._depth -= items
