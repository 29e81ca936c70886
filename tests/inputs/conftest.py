"""Fixtures for tests/inputs: a connect guard (autouse), loopback servers and canaries.

No test here touches the network: HTTP tests talk to servers on loopback
started here, and the autouse guard makes any connect to a non-loopback
address fail (and records every connect attempt, so refusals can assert "no
connection").
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest
from input_helpers import (
    PNG_BYTES,
    TestServer,
    declare_huge,
    drip,
    drip_headers,
    redirect,
    send,
    serving,
    short_body,
    slow_headers,
    stream_without_length,
)

from mmrag.inputs import fetch


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
    real_check = fetch._blocked_reason
    trusted = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setattr(fetch, "_blocked_reason", lambda ip: None if ip == trusted else real_check(ip))
