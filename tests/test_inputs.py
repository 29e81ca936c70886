"""Tests for mmrag.inputs: every input type, the limits, and the SSRF guard.

No test touches the network: HTTP tests talk to servers on loopback started
here, and an autouse guard makes any connect to a non-loopback address fail
(and records every connect attempt, so refusals can assert "no connection").
"""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image, ImageFile

from mmrag import inputs
from mmrag.errors import ImageInputError
from mmrag.inputs import (
    ImageLimits,
    describe_image_input,
    image_source,
    is_url,
    read_image_bytes,
    resolve_image,
    resolve_images,
)

PRIVATE_OK = ImageLimits(allow_private_urls=True)

# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Socket guard and loopback test servers
# --------------------------------------------------------------------------- #


@pytest.fixture(autouse=True)
def connect_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every outgoing connect; refuse any that is not to loopback."""
    attempts: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def is_loopback(host: str) -> bool:
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:  # a host name: mmrag must never connect by name
            return False

    def guarded_connect(sock: socket.socket, address: object) -> None:
        if isinstance(address, tuple):
            host, port = str(address[0]), int(address[1])
            attempts.append((host, port))
            if not is_loopback(host):
                raise ConnectionRefusedError(f"test guard: connection to {host} blocked")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts


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

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
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
    handler.server.release.wait(5)  # type: ignore[attr-defined]


def slow_headers(handler: BaseHTTPRequestHandler) -> None:
    """Answer only when the test ends."""
    handler.server.release.wait(5)  # type: ignore[attr-defined]


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Send one byte every 50 ms: each read is quick, the whole download is not."""
    handler.send_response(200)
    handler.end_headers()
    with contextlib.suppress(OSError):
        while not handler.server.release.wait(0.05):  # type: ignore[attr-defined]
            handler.wfile.write(b"x")
            handler.wfile.flush()


def drip_headers(handler: BaseHTTPRequestHandler) -> None:
    """Send a header line one byte every 50 ms (only a hard deadline stops this)."""
    with contextlib.suppress(OSError):
        handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        while not handler.server.release.wait(0.05):  # type: ignore[attr-defined]
            handler.wfile.write(b"a")
            handler.wfile.flush()


def short_body(handler: BaseHTTPRequestHandler) -> None:
    """Declare 1000 bytes, send 10, hang up."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(PNG_BYTES[:10])


@pytest.fixture
def server() -> Iterator[TestServer]:
    """A loopback server with the routes the URL tests use."""
    with serving(TestServer("127.0.0.1")) as srv:
        srv.routes.update(
            {
                "/img.png": lambda handler: send(handler, 200, PNG_BYTES, {"Content-Type": "image/png"}),
                "/redirect": redirect("/img.png"),
                "/loop": redirect("/loop"),
                "/to-file": redirect("file:///etc/passwd"),
                "/to-10": redirect("http://10.0.0.1/x.png"),
                "/stream": stream_without_length,
                "/declared-huge": declare_huge,
                "/slow-headers": slow_headers,
                "/drip": drip,
                "/drip-headers": drip_headers,
                "/short": short_body,
            }
        )
        yield srv


def _canary(host: str, family: int = socket.AF_INET) -> Iterator[TestServer]:
    """A server that must never be reached by refused requests."""
    try:
        canary_server = TestServer(host, family)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}: {exc}")
    canary_server.routes["/canary.png"] = lambda handler: send(handler, 200, PNG_BYTES)
    with serving(canary_server) as srv:
        yield srv


@pytest.fixture
def canary() -> Iterator[TestServer]:
    """Canary on 127.0.0.1."""
    yield from _canary("127.0.0.1")


@pytest.fixture
def canary6() -> Iterator[TestServer]:
    """Canary on ::1 (skipped without IPv6)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    yield from _canary("::1", socket.AF_INET6)


@pytest.fixture
def canary2() -> Iterator[TestServer]:
    """Canary on 127.0.0.2, a loopback address other than the trusted one."""
    yield from _canary("127.0.0.2")


@pytest.fixture
def trust_first_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vet addresses for real, except that exactly 127.0.0.1 counts as public.

    With ``allow_private_urls`` left False, the test server on 127.0.0.1 is
    reachable while every redirect target still goes through the real checks.
    """
    real_check = inputs._blocked_reason
    trusted = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setattr(inputs, "_blocked_reason", lambda ip: None if ip == trusted else real_check(ip))


# --------------------------------------------------------------------------- #
# Input types that work
# --------------------------------------------------------------------------- #


def test_str_path_and_pathlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cat.png"
    target.write_bytes(PNG_BYTES)
    for item in (str(target), target):
        image = resolve_image(item)
        assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (10, 20, 30))
    monkeypatch.chdir(tmp_path)
    assert resolve_image("cat.png").size == (8, 6)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: PNG_BYTES, id="bytes"),
        pytest.param(lambda: bytearray(PNG_BYTES), id="bytearray"),
        pytest.param(lambda: memoryview(PNG_BYTES), id="memoryview"),
        pytest.param(lambda: io.BytesIO(PNG_BYTES), id="BytesIO"),
        pytest.param(lambda: base64.b64encode(PNG_BYTES).decode(), id="base64"),
        pytest.param(lambda: base64.encodebytes(PNG_BYTES).decode(), id="base64-with-newlines"),
        pytest.param(lambda: "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode(), id="data-uri"),
        pytest.param(
            lambda: "  DATA:Image/PNG;name=x.png;base64," + base64.b64encode(PNG_BYTES).decode(),
            id="data-uri-params",
        ),
        pytest.param(lambda: Image.open(io.BytesIO(PNG_BYTES)), id="lazy-PIL-file"),
        pytest.param(lambda: np.full((6, 8, 3), (10, 20, 30), dtype=np.uint8), id="ndarray-rgb"),
    ],
)
def test_encoded_and_in_memory_inputs(make: Callable[[], object]) -> None:
    image = resolve_image(make())  # type: ignore[arg-type]
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (10, 20, 30))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_default_formats_decode(fmt: str) -> None:
    assert resolve_image(encode(Image.new("RGB", (9, 7), (255, 0, 0)), fmt)).size == (9, 7)


def test_mpo_counts_as_jpeg() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    red, _green, blue = resolve_image(data, limits=ImageLimits(formats=frozenset({"JPEG"}))).getpixel((4, 4))
    assert red > 200 and blue < 60


def test_open_binary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(PNG_BYTES)
    with target.open("rb") as handle:
        assert resolve_image(handle).size == (8, 6)


def test_numpy_rgba_and_gray() -> None:
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red; the rest fully transparent black
    image = resolve_image(rgba)
    assert image.size == (5, 4)
    assert image.getpixel((0, 0)) == (200, 0, 0)
    assert image.getpixel((1, 1)) == (255, 255, 255)
    gray = np.full((4, 5), 77, dtype=np.uint8)
    assert resolve_image(gray).getpixel((2, 2)) == (77, 77, 77)


def test_pil_input_is_not_mutated_or_returned() -> None:
    original = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image = resolve_image(original)
    assert image is not original and original.mode == "RGBA"
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_url_via_local_server(server: TestServer) -> None:
    image = resolve_image(server.url("/img.png"), limits=PRIVATE_OK)
    assert image.size == (8, 6)
    assert resolve_image(server.url("/redirect"), limits=PRIVATE_OK).size == (8, 6)
    assert server.hits == ["/img.png", "/redirect", "/img.png"]


def test_url_sends_original_host_header(server: TestServer) -> None:
    resolve_image(server.url("/img.png", host="localhost"), limits=PRIVATE_OK)
    assert server.hosts == [f"localhost:{server.port}"]


def test_https_uses_sni_of_original_host(
    server: TestServer, monkeypatch: pytest.MonkeyPatch, connect_log: list
) -> None:
    seen: list[str | None] = []

    def fake_wrap(self: ssl.SSLContext, sock: socket.socket, server_hostname: str | None = None, **_: object) -> None:
        seen.append(server_hostname)
        raise ssl.SSLError("test: no TLS here")

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", fake_wrap)
    with pytest.raises(ImageInputError, match="cannot fetch https://localhost"):
        resolve_image(f"https://localhost:{server.port}/img.png", limits=PRIVATE_OK)
    assert seen == ["localhost"]
    assert connect_log and all(ipaddress.ip_address(host).is_loopback for host, _ in connect_log)


# --------------------------------------------------------------------------- #
# Decoding and colour conversion
# --------------------------------------------------------------------------- #


def test_exif_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(Image.new("RGB", (20, 10), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    assert resolve_image(data).size == (10, 20)
    assert resolve_image(Image.open(io.BytesIO(data))).size == (10, 20)


def test_rgba_transparent_pixel_becomes_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    resolved = resolve_image(encode(image))
    assert resolved.getpixel((1, 1)) == (255, 255, 255)
    assert resolved.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    resolved = resolve_image(encode(image, transparency=0))
    assert resolved.getpixel((0, 0)) == (255, 0, 0)
    assert resolved.getpixel((2, 2)) == (255, 255, 255)


def test_la_composited_on_white() -> None:
    image = Image.new("LA", (4, 4), (0, 0))
    image.putpixel((0, 0), (0, 255))
    resolved = resolve_image(encode(image))
    assert resolved.getpixel((0, 0)) == (0, 0, 0)
    assert resolved.getpixel((3, 3)) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    red, green, blue = resolve_image(data).getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32768, 65535]] * 3, dtype=np.uint16)
    data = encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    row = [resolve_image(data).getpixel((x, 0))[0] for x in range(4)]
    assert row == [0, 1, 128, 255]


def test_float_tiff_in_unit_range_is_scaled() -> None:
    values = np.array([[0.0, 0.5, 1.0]] * 3, dtype=np.float32)
    row = [resolve_image(encode(Image.fromarray(values), "TIFF")).getpixel((x, 0))[0] for x in range(3)]
    assert row == [0, 128, 255]


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert resolve_image(data).getpixel((1, 1)) == (255, 0, 0)


# --------------------------------------------------------------------------- #
# Bad data
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(noisy_jpeg()[:1500], "cannot decode image", id="truncated-jpeg"),
        pytest.param(PNG_BYTES[:-30], "cannot decode image", id="truncated-png"),
        pytest.param(np.random.default_rng(1).bytes(2000), "cannot decode image", id="random-bytes"),
        pytest.param(b"", "empty input (0 bytes)", id="zero-bytes"),
        pytest.param(png((1, 1)), "at least 3 pixels", id="1x1"),
        pytest.param(png((40, 2)), "at least 3 pixels", id="40x2"),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "unsupported image format 'PDF'", id="pdf"),
    ],
)
def test_bad_image_data(data: bytes, expected: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(data)
    assert expected in reason_of(excinfo)


def test_eps_refused_without_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an external program was started")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "check_call", forbidden)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"
    with pytest.raises(ImageInputError, match="unsupported image format 'EPS'"):
        resolve_image(eps)
    with pytest.raises(ValueError, match="EPS"):
        ImageLimits(formats=frozenset({"PNG", "eps"}))


def test_formats_restrict_decoding() -> None:
    limits = ImageLimits(formats=frozenset({"png"}))
    assert limits.formats == frozenset({"PNG"})
    with pytest.raises(ImageInputError, match="unsupported image format 'JPEG'"):
        resolve_image(noisy_jpeg(), limits=limits)


def test_header_claiming_40000x40000_fails_fast() -> None:
    data = png_header_only(40000, 40000)
    assert len(data) < 100
    started = time.monotonic()
    with pytest.raises(ImageInputError, match="pixels"):
        resolve_image(data)
    assert time.monotonic() - started < 0.5


def test_pixel_cap_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self))
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(png_header_only(2000, 2000), limits=ImageLimits(max_pixels=1_000_000))
    assert "over max_pixels=1000000" in reason_of(excinfo)
    assert loads == []


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(np.zeros((4, 4, 3), dtype=np.float64), "dtype float64", id="float"),
        pytest.param(np.zeros((4, 4, 2), dtype=np.uint8), "shape (4, 4, 2)", id="two-channels"),
        pytest.param(np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape (2, 4, 4, 3)", id="4d"),
        pytest.param(np.zeros((2, 9, 3), dtype=np.uint8), "at least 3 pixels", id="too-small"),
        pytest.param(Image.new("RGB", (1, 1)), "at least 3 pixels", id="pil-1x1"),
        pytest.param(42, "unsupported image input type 'int'", id="int"),
        pytest.param(None, "unsupported image input type 'NoneType'", id="none"),
        pytest.param(io.StringIO("abc"), "binary mode", id="text-file"),
    ],
)
def test_unsupported_objects(item: object, expected: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(item)  # type: ignore[arg-type]
    assert expected in reason_of(excinfo)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda data: data, id="bytes"),
        pytest.param(lambda data: io.BytesIO(data), id="BytesIO"),
        pytest.param(lambda data: base64.b64encode(data).decode(), id="base64"),
        pytest.param(lambda data: "data:image/png;base64," + base64.b64encode(data).decode(), id="data-uri"),
    ],
)
def test_max_bytes(make: Callable[[bytes], object]) -> None:
    item = make(png((64, 64)) + b"\0" * 200)
    with pytest.raises(ImageInputError, match="larger than max_bytes=100 bytes"):
        resolve_image(item, limits=ImageLimits(max_bytes=100))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# The string rule
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file:///etc/passwd", "unsupported URL scheme 'file'; only http and https are fetched"),
        ("file:/etc/passwd", "unsupported URL scheme 'file'"),
        ("FILE://localhost/etc/passwd", "unsupported URL scheme 'file'"),
        ("ftp://example.invalid/a.png", "unsupported URL scheme 'ftp'"),
        ("gopher://example.invalid/", "unsupported URL scheme 'gopher'"),
        ("not base64!!", "not a URL, data URI, existing file or valid base64"),
        ("iVBORw0KGgo", "not a URL, data URI, existing file or valid base64"),
        ("missing/cat.png", "file not found: missing/cat.png"),
        ("typo.jpg", "file not found: typo.jpg"),
        ("C:\\nope\\img.png", "file not found"),
        ("data:image/png,rawdata", "must be base64-encoded"),
        ("data:text/plain;base64,aGVsbG8=", "media type must be image/*"),
        ("data:image/png;base64,@@@@", "payload is not valid base64"),
        ("data:image/png;base64", "malformed data URI"),
        ("http://", "no host name"),
    ],
)
def test_string_rule_errors(text: str, expected: str, connect_log: list) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(text)
    assert expected in reason_of(excinfo)
    assert connect_log == []


def test_missing_pathlib_path(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="file not found"):
        resolve_image(tmp_path / "nope.png")


def test_directory_and_fifo_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="not a regular file"):
        resolve_image(tmp_path)
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageInputError, match="not a regular file"):
        resolve_image(fifo)  # must not block waiting for a writer


def test_file_over_max_bytes(tmp_path: Path) -> None:
    target = tmp_path / "big.png"
    target.write_bytes(PNG_BYTES)
    with pytest.raises(ImageInputError, match="max_bytes"):
        resolve_image(target, limits=ImageLimits(max_bytes=10))


def test_local_paths_disabled_reveals_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "cat.png"
    existing.write_bytes(PNG_BYTES)
    limits = ImageLimits(allow_local_paths=False)
    reasons = []
    for item in (str(existing), existing, str(tmp_path / "missing.png")):
        with pytest.raises(ImageInputError) as excinfo:
            resolve_image(item, limits=limits)
        reasons.append(reason_of(excinfo).split(":")[0])
    assert reasons == ["local file paths are disabled (ImageLimits.allow_local_paths=False)"] * 3
    # base64 and bytes still work
    assert resolve_image(base64.b64encode(PNG_BYTES).decode(), limits=limits).size == (8, 6)


def test_local_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "in.png").write_bytes(PNG_BYTES)
    (tmp_path / "out.png").write_bytes(PNG_BYTES)
    limits = ImageLimits(local_root=root)
    assert resolve_image(root / "in.png", limits=limits).size == (8, 6)
    escapes = [str(root / ".." / "out.png"), root / ".." / "out.png", str(tmp_path / "missing.png")]
    if hasattr(os, "symlink"):
        (root / "link.png").symlink_to(tmp_path / "out.png")
        (root / "inner-link.png").symlink_to(root / "in.png")
        escapes.append(str(root / "link.png"))
        assert resolve_image(root / "inner-link.png", limits=limits).size == (8, 6)
    for item in escapes:
        with pytest.raises(ImageInputError, match="outside ImageLimits.local_root"):
            resolve_image(item, limits=limits)


# --------------------------------------------------------------------------- #
# URLs: SSRF guard, limits, errors
# --------------------------------------------------------------------------- #

LOOPBACK_SPELLINGS = ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1"]


@pytest.mark.parametrize("host", [*LOOPBACK_SPELLINGS, "0.0.0.0", "0", "[::ffff:127.0.0.1]"])
def test_loopback_refused_before_connecting(canary: TestServer, connect_log: list, host: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(canary.url("/canary.png", host=host))
    assert "pass allow_private_urls=True (ImageLimits) to allow private addresses" in reason_of(excinfo)
    assert reason_of(excinfo).startswith("refused to fetch http://")
    assert canary.hits == [] and connect_log == []


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_spellings_reach_the_canary_when_allowed(canary: TestServer, host: str) -> None:
    """Control: the same URLs do reach the canary, so zero hits above means something."""
    assert resolve_image(canary.url("/canary.png", host=host), limits=PRIVATE_OK).size == (8, 6)
    assert canary.hits == ["/canary.png"]


def test_ipv6_loopback_refused(canary6: TestServer, connect_log: list) -> None:
    with pytest.raises(ImageInputError, match="address ::1 is loopback"):
        resolve_image(canary6.url("/canary.png"))
    assert canary6.hits == [] and connect_log == []
    assert resolve_image(canary6.url("/canary.png"), limits=PRIVATE_OK).size == (8, 6)
    assert canary6.hits == ["/canary.png"]


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("http://10.0.0.1/x.png", "private"),
        ("http://192.168.1.1/x.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x.png", "link-local"),
        ("http://[fd00::1]/x.png", "private"),
        ("http://224.0.0.1/x.png", "multicast"),
        ("http://100.64.0.1/x.png", "not globally routable"),
        ("http://[::ffff:10.0.0.1]/x.png", "private"),
        ("http://[64:ff9b::7f00:1]/x.png", "loopback"),
    ],
)
def test_private_addresses_refused(url: str, category: str, connect_log: list) -> None:
    with pytest.raises(ImageInputError, match=f"is {category};"):
        resolve_image(url)
    assert connect_log == []


def test_redirect_to_private_address_is_rechecked(server: TestServer, trust_first_hop: None, connect_log: list) -> None:
    assert resolve_image(server.url("/redirect")).size == (8, 6)  # control: first hop trusted
    connect_log.clear()
    expected = "refused to fetch http://10.0.0.1/x.png: address 10.0.0.1 is private"
    with pytest.raises(ImageInputError, match=expected):
        resolve_image(server.url("/to-10"))
    assert connect_log == [("127.0.0.1", server.port)]


def test_redirect_to_other_loopback_is_rechecked(
    server: TestServer, canary2: TestServer, trust_first_hop: None, connect_log: list
) -> None:
    server.routes["/to-canary"] = redirect(canary2.url("/canary.png"))
    with pytest.raises(ImageInputError, match="address 127.0.0.2 is loopback"):
        resolve_image(server.url("/to-canary"))
    assert canary2.hits == []
    assert connect_log == [("127.0.0.1", server.port)]


def test_redirect_to_file_url_refused(server: TestServer) -> None:
    with pytest.raises(ImageInputError, match="unsupported URL scheme 'file'"):
        resolve_image(server.url("/to-file"), limits=PRIVATE_OK)


def test_redirect_limit(server: TestServer) -> None:
    limits = ImageLimits(allow_private_urls=True, max_redirects=2)
    with pytest.raises(ImageInputError, match="too many redirects .*more than 2"):
        resolve_image(server.url("/loop"), limits=limits)
    assert server.hits == ["/loop"] * 3


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing", "HTTP 404"),
        ("/stream", "larger than max_bytes=10000 bytes"),
        ("/declared-huge", "1000000000 bytes declared"),
        ("/short", "incomplete: got 10 of 1000 bytes"),
    ],
)
def test_http_failures(server: TestServer, path: str, expected: str) -> None:
    limits = ImageLimits(allow_private_urls=True, max_bytes=10_000, timeout=5.0)
    started = time.monotonic()
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(server.url(path), limits=limits)
    assert expected in reason_of(excinfo)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("path", ["/slow-headers", "/drip", "/drip-headers"])
def test_total_timeout(server: TestServer, path: str) -> None:
    limits = ImageLimits(allow_private_urls=True, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ImageInputError, match="timed out fetching"):
        resolve_image(server.url(path), limits=limits)
    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------------- #
# Batches, descriptions, sources
# --------------------------------------------------------------------------- #


def test_batch_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "ok.png"
    target.write_bytes(PNG_BYTES)
    good = [PNG_BYTES, target, np.zeros((4, 4, 3), dtype=np.uint8)]
    assert [image.size for image in resolve_images(good)] == [(8, 6), (8, 6), (4, 4)]
    with pytest.raises(ImageInputError) as excinfo:
        resolve_images([PNG_BYTES, target, "garbage!!", PNG_BYTES])
    assert excinfo.value.index == 2
    assert str(excinfo.value).startswith("image 2 (")
    with pytest.raises(ImageInputError, match="sequence"):
        resolve_images(str(target))  # type: ignore[arg-type]
    assert resolve_images([]) == []


def test_describe_image_input() -> None:
    long_b64 = base64.b64encode(b"\0" * 7500).decode()
    assert describe_image_input(long_b64) == "base64 string (10000 chars)"
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    assert describe_image_input(data_uri) == f"data URI (image/png, {len(data_uri)} chars)"
    signed = "https://user:pw@example.com/a.png?X-Sig=secret"
    assert describe_image_input(signed) == "https://example.com/a.png?..."
    assert describe_image_input("photos/cat.jpg") == "photos/cat.jpg"
    assert describe_image_input(Path("/x/y.png")) == "/x/y.png"
    assert describe_image_input(PNG_BYTES) == f"bytes ({len(PNG_BYTES)})"
    assert describe_image_input(Image.new("RGB", (640, 480))) == "PIL.Image 640x480 RGB"
    assert describe_image_input(np.zeros((480, 640, 3), dtype=np.uint8)) == "ndarray (480, 640, 3) uint8"
    assert describe_image_input(io.BytesIO()) == "file-like BytesIO"
    assert describe_image_input(3) == "int"


def test_errors_never_dump_base64() -> None:
    garbage = base64.b64encode(np.random.default_rng(2).bytes(6000)).decode()[:-3]  # bad padding
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(garbage)
    assert len(str(excinfo.value)) < 200
    assert "base64 string (7997 chars)" in str(excinfo.value)


def test_image_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cat.png"
    target.write_bytes(PNG_BYTES)
    monkeypatch.chdir(tmp_path)
    assert image_source("cat.png") == str(target)
    assert image_source(str(target)) == str(target)
    assert image_source(Path("cat.png")) == str(target)
    assert image_source(" https://example.com/a.png?x=1 ") == "https://example.com/a.png?x=1"
    for item in (
        "missing.png",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        base64.b64encode(PNG_BYTES).decode(),
        PNG_BYTES,
        Image.new("RGB", (3, 3)),
        io.BytesIO(),
    ):
        assert image_source(item) is None


def test_is_url_and_read_image_bytes() -> None:
    assert is_url("HTTPS://example.com/a.png") and is_url("http://x")
    assert not is_url("file:///a.png") and not is_url("cat.png") and not is_url("data:image/png;base64,")
    assert read_image_bytes(base64.b64encode(PNG_BYTES).decode()) == PNG_BYTES
    assert read_image_bytes(Image.new("RGB", (3, 3))) is None
    with pytest.raises(ImageInputError) as excinfo:
        read_image_bytes(b"x" * 20, limits=ImageLimits(max_bytes=10), index=4)
    assert excinfo.value.index == 4


def test_limits_validation() -> None:
    for bad in ({"max_bytes": 0}, {"timeout": 0}, {"max_redirects": -1}, {"formats": frozenset()}):
        with pytest.raises(ValueError):
            ImageLimits(**bad)  # type: ignore[arg-type]
