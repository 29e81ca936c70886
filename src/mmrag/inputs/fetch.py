"""The SSRF-guarded URL fetcher: vetted addresses, pinned connections, redirects, deadlines, size caps.

Only ``http`` and ``https`` are fetched, by :func:`fetch_url` (see
:mod:`mmrag.inputs` for the guarantees). Everything here is internal to
:mod:`mmrag.inputs`; tests patch ``_blocked_reason`` in this module to treat
one loopback address as public.

Why :mod:`http.client` on raw sockets instead of urllib or httpx: the request
must go to the address that was vetted, not to whatever a second DNS lookup
returns, while the Host header, SNI and certificate check use the URL's host
name. http.client lets us supply the connected socket ourselves (and it
ignores proxy environment variables and never asks for compressed bodies),
which keeps that guarantee in a few lines of stdlib code with no extra
dependency.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from mmrag.errors import ImageInputError
from mmrag.inputs.limits import ImageLimits, too_large
from mmrag.inputs.strings import redact_url, scheme_of

__all__: list[str] = []

_READ_CHUNK = 1 << 16
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_BLOCKED_IP_CATEGORIES = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
    ("site-local", "is_site_local"),
)


@dataclass(frozen=True)
class _Url:
    """A parsed, fetchable URL."""

    scheme: str
    host: str
    port: int
    target: str
    text: str


@dataclass(frozen=True)
class _Address:
    """One vetted address to connect to."""

    family: int
    sockaddr: tuple[object, ...]


def _parse_url(url: str) -> _Url:
    """Parse an http(s) URL, refusing other schemes and malformed URLs."""
    scheme = scheme_of(url)
    if scheme not in ("http", "https"):
        raise ImageInputError(f"unsupported URL scheme {scheme!r}; only http and https are fetched")
    parts = urlsplit(url)
    text = redact_url(url)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ImageInputError(f"malformed URL {text}: {exc}") from exc
    host = parts.hostname
    if not host:
        raise ImageInputError(f"malformed URL {text}: no host name")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ImageInputError(f"malformed URL {text}: invalid host name") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Url(scheme=scheme, host=host, port=port, target=target, text=text)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address string from getaddrinfo (dropping any ``%scope``)."""
    return ipaddress.ip_address(address.split("%", 1)[0])


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def _blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Say why an address may not be fetched without ``allow_private_urls``, or ``None``."""
    for embedded in _embedded_ipv4(ip):
        reason = _blocked_reason(embedded)
        if reason is not None:
            return reason
    for label, attribute in _BLOCKED_IP_CATEGORIES:
        if getattr(ip, attribute, False):
            return label
    return None if ip.is_global else "not globally routable"


def _vetted_addresses(url: _Url, limits: ImageLimits) -> list[_Address]:
    """Resolve the URL's host and refuse it if any address is not allowed."""
    try:
        infos = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageInputError(f"cannot resolve host {url.host!r} of {url.text}: {exc}") from exc
    addresses: list[_Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        ip = _ip(str(sockaddr[0]))
        reason = None if limits.allow_private_urls else _blocked_reason(ip)
        if reason is not None:
            raise ImageInputError(
                f"refused to fetch {url.text}: address {ip} is {reason};"
                " pass allow_private_urls=True (ImageLimits) to allow private addresses"
            )
        address = _Address(family, tuple(sockaddr))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageInputError(f"cannot resolve host {url.host!r} of {url.text}: no addresses")
    return addresses


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; raise :class:`TimeoutError` if none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _connect_vetted(addresses: Sequence[_Address], connect_timeout: float, deadline: float) -> socket.socket:
    """Connect to the first reachable vetted address (never re-resolving the name)."""
    last_error: OSError = OSError("no address to connect to")
    for address in addresses:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(connect_timeout, _remaining(deadline)))
            sock.connect(address.sockaddr)
            sock.settimeout(_remaining(deadline))
        except OSError as exc:  # TimeoutError and ConnectionError included
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to pre-vetted addresses; the host name is only sent as ``Host``."""

    def __init__(self, url: _Url, addresses: Sequence[_Address], limits: ImageLimits, deadline: float) -> None:
        """Remember where to connect; nothing is opened yet."""
        super().__init__(url.host, url.port, timeout=limits.connect_timeout)
        self._addresses = tuple(addresses)
        self._connect_timeout = limits.connect_timeout
        self._deadline = deadline
        # http.client drops ``self.sock`` once a response will close the
        # connection, while the response keeps reading from the socket; keep
        # our own reference so timeouts and the hard deadline still reach it.
        self.active_socket: socket.socket | None = None

    def connect(self) -> None:
        """Open the socket to a vetted address."""
        self.sock = self.active_socket = _connect_vetted(self._addresses, self._connect_timeout, self._deadline)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The TLS variant: SNI and certificate checks use the URL's host name."""

    default_port = 443

    def connect(self) -> None:
        """Open the socket to a vetted address and wrap it in verified TLS."""
        super().connect()
        context = ssl.create_default_context()
        self.sock = self.active_socket = context.wrap_socket(self.sock, server_hostname=self.host)


@contextlib.contextmanager
def _hard_deadline(connection: _PinnedHTTPConnection, deadline: float) -> Iterator[None]:
    """Shut the connection's socket down when the deadline passes.

    Socket timeouts bound each receive; this bounds the whole exchange even
    when a server trickles header lines one byte at a time.
    """

    def abort() -> None:
        sock = connection.active_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), abort)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download an http(s) URL under the SSRF, redirect, time and size limits.

    Args:
        url: The URL (already stripped).
        limits: ``allow_private_urls``, ``connect_timeout``, ``timeout``,
            ``max_redirects``, ``max_bytes`` and ``user_agent`` apply.

    Returns:
        The response body of the final hop.

    Raises:
        ImageInputError: A refused scheme or address (before any connection
            to it), a network failure or timeout, an HTTP error status, too
            many redirects, or a body over ``max_bytes``.
    """
    deadline = time.monotonic() + limits.timeout
    current = url
    for _hop in range(limits.max_redirects + 1):
        parsed = _parse_url(current)
        addresses = _vetted_addresses(parsed, limits)
        body, location = _get_once(parsed, addresses, limits, deadline)
        if location is None:
            return body
        current = urljoin(current, location)
    raise ImageInputError(
        f"too many redirects fetching {redact_url(url)} (more than {limits.max_redirects});"
        " raise ImageLimits.max_redirects to follow more"
    )


def _get_once(
    url: _Url, addresses: Sequence[_Address], limits: ImageLimits, deadline: float
) -> tuple[bytes, str | None]:
    """Make one GET request; return ``(body, None)`` or ``(b"", redirect_location)``."""
    connection_type = _PinnedHTTPSConnection if url.scheme == "https" else _PinnedHTTPConnection
    connection = connection_type(url, addresses, limits, deadline)
    headers = {"User-Agent": limits.user_agent, "Accept": "image/*", "Connection": "close"}
    response: http.client.HTTPResponse | None = None
    try:
        with _hard_deadline(connection, deadline):
            connection.request("GET", url.target, headers=headers)
            response = connection.getresponse()
            if response.status in _REDIRECT_STATUSES:
                return b"", _redirect_location(response, url)
            if not 200 <= response.status < 300:
                raise ImageInputError(f"HTTP {response.status} {response.reason} fetching {url.text}")
            return _read_body(response, connection, url, limits, deadline), None
    except ImageInputError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _network_error(exc, url, limits, deadline) from exc
    finally:
        if response is not None:
            response.close()  # the response holds the socket open after connection.close()
        connection.close()


def _redirect_location(response: http.client.HTTPResponse, url: _Url) -> str:
    """Return a redirect's ``Location`` header or refuse the response."""
    location = response.getheader("Location")
    if not location:
        raise ImageInputError(f"HTTP {response.status} redirect without a Location header from {url.text}")
    return location.strip()


def _read_body(
    response: http.client.HTTPResponse,
    connection: _PinnedHTTPConnection,
    url: _Url,
    limits: ImageLimits,
    deadline: float,
) -> bytes:
    """Stream a response body, enforcing ``max_bytes`` and the deadline."""
    declared = _content_length(response)
    if declared is not None and declared > limits.max_bytes:
        raise too_large(f"download ({declared} bytes declared by {url.text})", limits)
    chunks: list[bytes] = []
    total = 0
    while True:
        left = _remaining(deadline)
        if connection.active_socket is not None:
            connection.active_socket.settimeout(left)
        chunk = response.read1(_READ_CHUNK)  # at most one recv, so the timeout holds
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise too_large(f"download from {url.text}", limits)
        chunks.append(chunk)
    _remaining(deadline)  # an EOF caused by the hard deadline is a timeout
    if declared is not None and total != declared:
        raise ImageInputError(f"download from {url.text} incomplete: got {total} of {declared} bytes")
    return b"".join(chunks)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """Return the declared ``Content-Length``, or ``None`` if absent or invalid."""
    value = (response.getheader("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _network_error(exc: BaseException, url: _Url, limits: ImageLimits, deadline: float) -> ImageInputError:
    """Word a network failure as an :class:`ImageInputError`."""
    if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
        return ImageInputError(
            f"timed out fetching {url.text} (ImageLimits.timeout={limits.timeout}s,"
            f" connect_timeout={limits.connect_timeout}s)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImageInputError(f"TLS certificate check failed for {url.host}: {exc.verify_message}")
    if isinstance(exc, ConnectionRefusedError):
        return ImageInputError(f"connection refused fetching {url.text}")
    return ImageInputError(f"cannot fetch {url.text}: {type(exc).__name__}: {exc}")
