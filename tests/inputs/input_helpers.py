"""Shared helpers for tests/inputs: tiny encoded images and loopback HTTP test servers."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits

PRIVATE_OK = ImageLimits(allow_private_urls=True)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """Encode a PIL image to bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(size: tuple[int, int] = (8, 6), color: tuple[int, ...] = (10, 20, 30), mode: str = "RGB") -> bytes:
    """A small solid PNG."""
    return encode(Image.new(mode, size, color))


def noisy_jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    """A JPEG with enough entropy that cutting it truncates scan data."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=95)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (valid CRCs, almost no data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def reason_of(excinfo: pytest.ExceptionInfo[ImageInputError]) -> str:
    """The reason of a raised ImageInputError."""
    return excinfo.value.reason


Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    server: TestServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        self.server.hosts.append(self.headers.get("Host", ""))
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Keep test output quiet."""


class TestServer(ThreadingHTTPServer):
    """A threaded HTTP server that counts requests and serves a route table."""

    __test__ = False  # not a pytest test class

    def __init__(self, host: str, family: int = socket.AF_INET) -> None:
        self.address_family = family
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.hosts: list[str] = []
        self.routes: dict[str, Route] = {}
        self.release = threading.Event()
        self.host = host
        self.port = self.server_address[1]

    def url(self, path: str, host: str | None = None) -> str:
        shown = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{shown}:{self.port}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up early is expected here."""


@contextlib.contextmanager
def serving(server: TestServer) -> Iterator[TestServer]:
    """Run ``server`` in a thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


PNG_BYTES = png()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    """Send a complete response with a Content-Length."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def redirect(location: str) -> Route:
    """A route answering 302 to ``location``."""
    return lambda handler: send(handler, 302, headers={"Location": location})


def stream_without_length(handler: BaseHTTPRequestHandler) -> None:
    """Send 1 MiB with no Content-Length (HTTP/1.0, body ends at close)."""
    handler.send_response(200)
    handler.end_headers()
    with contextlib.suppress(OSError):
        for _ in range(256):
            handler.wfile.write(b"\0" * 4096)


def declare_huge(handler: BaseHTTPRequestHandler) -> None:
    """Declare a 1 GB body, then send nothing until the test ends."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**9))
    handler.end_headers()
    handler.wfile.flush()
    handler.server.release.wait(5)  # type: ignore[attr-defined]  # the wrong type is what the test passes


def slow_headers(handler: BaseHTTPRequestHandler) -> None:
    """Answer only when the test ends."""
    handler.server.release.wait(5)  # type: ignore[attr-defined]  # the wrong type is what the test passes


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Send one byte every 50 ms: each read is quick, the whole download is not."""
    handler.send_response(200)
    handler.end_headers()
    with contextlib.suppress(OSError):
        while not handler.server.release.wait(0.05):
            handler.wfile.write(b"x")
            handler.wfile.flush()


def drip_headers(handler: BaseHTTPRequestHandler) -> None:
    """Send a header line one byte every 50 ms (only a hard deadline stops this)."""
    with contextlib.suppress(OSError):
        handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        while not handler.server.release.wait(0.05):
            handler.wfile.write(b"a")
            handler.wfile.flush()


def short_body(handler: BaseHTTPRequestHandler) -> None:
    """Declare 1000 bytes, send 10, hang up."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(PNG_BYTES[:10])
