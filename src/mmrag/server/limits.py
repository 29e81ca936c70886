"""Request limits: body size (413) and arrival time (408), admission to the pipeline (429), the decode budget.

All plain ASGI / plain Python, independent of the FastAPI version:

* :class:`BodyLimitMiddleware` refuses bodies over ``--max-body-bytes`` and
  bodies that do not arrive within ``--body-timeout`` seconds;
* :class:`Admission` counts the work in the pipeline: every embedding request
  from its arrival (:class:`AdmissionMiddleware`, before its body is read),
  then by its items until its vectors are computed, bounded by
  ``--max-queue``; beyond it requests get 429 at once, so the wait of an
  admitted request stays bounded;
* :class:`DecodeBudget` bounds the pixels being decoded at once across all
  requests (``--max-decode-pixels``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from mmrag.server.errors import error_payload

__all__ = ["Admission", "AdmissionMiddleware", "BodyLimitMiddleware", "DecodeBudget", "Ticket", "current_ticket"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("mmrag_ticket", default=None)


class BodyLimitMiddleware:
    """Answer 413 to request bodies over ``max_bytes`` and 408 to bodies slower than ``timeout``.

    A declared ``Content-Length`` over the limit is refused before a byte of
    the body is read. A body without one (chunked transfer encoding) is
    counted while it streams in; as soon as it passes the limit the
    application sees a disconnect, whatever it was about to answer is
    dropped, and the client gets the 413 instead. A body that is not complete
    ``timeout`` seconds after the request started (a ``Content-Length``
    larger than what is sent, a client that stalls) is answered the same way
    with 408. Both close the connection (``Connection: close``).

    Args:
        app: The ASGI application to protect.
        max_bytes: Largest accepted body.
        timeout: Seconds the whole body may take to arrive; ``None``: no limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one ASGI request under the limits."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, 413, "payload_too_large", f"request body of {declared} bytes is over the limit of "
                          f"{self.max_bytes} bytes")  # fmt: skip
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        received = 0
        refusal: tuple[int, str, str] | None = None
        body_done = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refusal, body_done
            if refusal is not None:
                return {"type": "http.disconnect"}
            if body_done or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    refusal = (408, "request_timeout", f"the request body did not arrive within {self.timeout:g} s")
                    return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    refusal = (413, "payload_too_large", f"request body is over the limit of {self.max_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None:
                return  # the refusal is sent below instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not started:
            status, kind, message = refusal
            await _refuse(send, status, kind, message, code="body_timeout" if status == 408 else None)


_CLOSE = (b"connection", b"close")
_RETRY = (b"retry-after", b"1")


async def _refuse(
    send: Send, status: int, kind: str, message: str, *, code: str | None = None, header: tuple[bytes, bytes] = _CLOSE
) -> None:
    """Answer an error before (or instead of) the application: ``Connection: close`` unless told otherwise."""
    body = json.dumps(error_payload(kind, message, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), header]
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
    """The work in the embedding pipeline, bounded by ``limit`` places.

    A request takes one place from its arrival (:meth:`arrive`, before its
    body is read) and, once its items are known, one place per item
    (:meth:`Ticket.admit`) until it finishes (:meth:`Ticket.release`):
    decoding, waiting and the forward pass included, so ``limit`` bounds
    both the memory queued work can take and how long an admitted request
    waits. A request with more items than ``limit`` counts as ``limit``: it
    gets in only when the pipeline is otherwise empty.

    Args:
        limit: Most places taken at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._depth = 0
        self._on_the_way = 0
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def depth(self) -> int:
        """Places taken: requests still being read or parsed, plus items admitted and not finished."""
        return self._depth

    @property
    def on_the_way(self) -> int:
        """Requests admitted that have not yet handed their items to the model (see :meth:`Ticket.submitted`)."""
        return self._on_the_way

    def arrive(self) -> Ticket | None:
        """Take one place for a request that just arrived.

        Returns:
            Its :class:`Ticket`, or ``None`` when the pipeline is full
            (answer 429).
        """
        with self._lock:
            if self._depth + 1 > self.limit:
                self.refused += 1
                return None
            self._depth += 1
            self._on_the_way += 1
        return Ticket(self)

    def try_acquire(self, items: int) -> bool:
        """Admit ``items`` for a caller without a ticket (the places are returned by :meth:`release`).

        Args:
            items: How many items.

        Returns:
            ``True`` if admitted, ``False`` if full.
        """
        items = min(items, self.limit)
        with self._lock:
            if self._depth + items > self.limit:
                self.refused += 1
                return False
            self._depth += items
            return True

    def release(self, items: int) -> None:
        """Return places taken by :meth:`try_acquire`.

        Args:
            items: The same count that was passed to :meth:`try_acquire`.
        """
        with self._lock:
            self._depth -= min(items, self.limit)


class Ticket:
    """One request's places in an :class:`Admission`."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.held = 1
        self._on_the_way = True

    def admit(self, items: int) -> bool:
        """Hold one place per item (at least one, at most the limit) instead of the arrival's one.

        Args:
            items: How many items the request brings.

        Returns:
            ``True`` if admitted, ``False`` if the pipeline is full (the
            request keeps its arrival place until released).
        """
        admission = self._admission
        wanted = max(1, min(items, admission.limit))
        with admission._lock:
            extra = wanted - self.held
            if extra > 0 and admission._depth + extra > admission.limit:
                admission.refused += 1
                return False
            admission._depth += extra
            self.held = wanted
        return True

    def submitted(self) -> None:
        """The request has handed its items to the model: it no longer counts as on the way."""
        admission = self._admission
        with admission._lock:
            if self._on_the_way:
                self._on_the_way = False
                admission._on_the_way -= 1

    def release(self) -> None:
        """Return every place (idempotent)."""
        self.submitted()
        admission = self._admission
        with admission._lock:
            admission._depth -= self.held
            self.held = 0


def current_ticket() -> Ticket | None:
    """The :class:`Ticket` of the request being handled (set by :class:`AdmissionMiddleware`), if any."""
    return _TICKET.get()


class AdmissionMiddleware:
    """Give every ``POST`` a place in the :class:`Admission` on arrival, or answer 429 before reading its body.

    Args:
        app: The ASGI app to wrap.
        admission: The pipeline's admission counter.
        on_leave: Called after each request gave its places back.
    """

    def __init__(self, app: ASGIApp, admission: Admission, on_leave: Callable[[], None] | None = None) -> None:
        self.app = app
        self.admission = admission
        self.on_leave = on_leave

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request with its ticket."""
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        admission = self.admission
        ticket = admission.arrive()
        if ticket is None:
            message = f"the server is busy ({admission.depth} requests and items in the pipeline, limit " \
                      f"{admission.limit}, --max-queue); retry later"  # fmt: skip
            await _refuse(send, 429, "overloaded", message, header=_RETRY)
            return
        token = _TICKET.set(ticket)
        try:
            await self.app(scope, receive, send)
        finally:
            _TICKET.reset(token)
            ticket.release()
            if self.on_leave is not None:
                self.on_leave()


class DecodeBudget:
    """A first-come, first-served budget of pixels being decoded at once, shared by the decoding threads.

    Args:
        limit: Most pixels held at once; a larger single request is
            clamped to it (so it is decoded alone).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.waits = 0
        self._line: deque[object] = deque()
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Block until ``pixels`` fit (after everyone who asked earlier), hold them for the block.

        Args:
            pixels: What the image will take decoded (``width * height``).
        """
        amount = max(0, min(pixels, self.limit))
        if amount == 0:
            yield
            return
        me = object()
        with self._changed:
            self._line.append(me)
            if self._line[0] is not me or self.used + amount > self.limit:
                self.waits += 1
            while self._line[0] is not me or self.used + amount > self.limit:
                self._changed.wait()
            self._line.popleft()
            self.used += amount
            self.peak = max(self.peak, self.used)
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()
