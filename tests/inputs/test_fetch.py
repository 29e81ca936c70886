"""The URL fetcher: loopback servers only; the SSRF guard, redirects, deadlines and size caps."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time

import pytest
from input_helpers import (
    PRIVATE_OK,
    TestServer,
    reason_of,
    redirect,
)

from mmrag.errors import ImageInputError
from mmrag.inputs import (
    ImageLimits,
    resolve_image,
)


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
