"""Helpers for tests/test_server.py: real ``mmrag.server`` processes on loopback, and canary HTTP servers.

Run as a script, this file is a launcher: it installs a connect guard in the
server process and then runs ``python -m mmrag.server`` with the same
arguments. The guard appends every outgoing ``connect`` of the server process
to ``$MMRAG_TEST_CONNECT_LOG`` and refuses any to a non-loopback address, so
a test can assert that an SSRF attempt was refused *before* any connection,
and nothing can leave the machine even if the server's own guard failed.
``$MMRAG_TEST_TRUSTED_IP`` names one loopback address the server's SSRF
check treats as public (to test redirects from a "public" first hop).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

__all__ = ["CanaryServer", "RawConnection", "ServerProcess", "error_of", "rss_mb", "send", "serving"]

LAUNCHER = Path(__file__).resolve()
_LISTENING = re.compile(r"listening on (http://\S+) ")


class ServerProcess:
    """One server subprocess on 127.0.0.1 with a free port, logging to a file.

    Args:
        args: ``mmrag serve`` options (``--port 0`` is added).
        workdir: Where the log and connect log go.
        name: Short name for the files.
        guarded: Start through this launcher (connect guard) rather than
            plainly with ``python -m mmrag.server``.
        trusted_ip: An address the server's SSRF check treats as public.
    """

    def __init__(
        self,
        args: Sequence[str],
        workdir: Path,
        *,
        name: str,
        guarded: bool = True,
        trusted_ip: str | None = None,
    ) -> None:
        self.args = [*args, "--port", "0", "--host", "127.0.0.1"]
        self.log_path = workdir / f"{name}.log"
        self.connect_log = workdir / f"{name}.connects"
        self.connect_log.write_text("")
        env = dict(os.environ, MMRAG_TEST_CONNECT_LOG=str(self.connect_log), PYTHONUNBUFFERED="1")
        if trusted_ip:
            env["MMRAG_TEST_TRUSTED_IP"] = trusted_ip
        command = [sys.executable, str(LAUNCHER)] if guarded else [sys.executable, "-m", "mmrag.server"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([*command, *self.args], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.base_url = ""
        self.loading_responses: list[tuple[int, dict, int]] = []  # (/ready status, body, /health status)
        # Probe /ready and /health as soon as the port is bound, while the model surely still loads.
        self._probe = threading.Thread(target=self._probe_loading, daemon=True)
        self._probe.start()

    def _probe_loading(self) -> None:
        with contextlib.suppress(Exception):  # a failed start is reported by wait_ready
            base_url = self.wait_listening()
            ready = httpx.get(f"{base_url}/ready", timeout=30.0)
            health = httpx.get(f"{base_url}/health", timeout=30.0)
            self.loading_responses.insert(0, (ready.status_code, ready.json(), health.status_code))

    @property
    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 120.0) -> str:
        """Wait for the "listening on" line and return the base URL."""
        deadline = time.monotonic() + timeout
        while not self.base_url:
            match = _LISTENING.search(self.log)
            if match:
                self.base_url = match.group(1)
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (rc={self.process.poll()}):\n{self.log[-3000:]}")
            time.sleep(0.05)
        return self.base_url

    def wait_ready(self, timeout: float = 180.0) -> ServerProcess:
        """Poll ``/ready`` until 200, recording the answers seen while loading."""
        self.wait_listening()
        self._probe.join(timeout)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while True:
                try:
                    ready = client.get("/ready")
                except httpx.TransportError:
                    ready = None
                if ready is None and self.process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                if ready is not None and ready.status_code == 200:
                    return self
                if ready is not None:
                    health = client.get("/health").status_code
                    self.loading_responses.append((ready.status_code, ready.json(), health))
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server never became ready:\n{self.log[-3000:]}")
                time.sleep(0.1)

    def connects(self) -> list[str]:
        """``host port`` of every outgoing connect the server process made."""
        return [line for line in self.connect_log.read_text().splitlines() if line]

    def metrics(self) -> dict:
        """``GET /metrics``."""
        return httpx.get(f"{self.base_url}/metrics", timeout=10.0).json()

    def terminate(self) -> None:
        """Send SIGTERM if it still runs (no waiting)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; return the exit status."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RawConnection:
    """One HTTP/1.1 connection on a plain socket: exact control of what is sent, and of keep-alive.

    Args:
        base_url: ``http://host:port`` of the server.
        timeout: Socket timeout in seconds.
    """

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parsed = urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._buffer = b""

    def send_head(self, path: str, content_length: int, method: str = "POST") -> None:
        """Send a request line and headers announcing ``content_length`` bytes of JSON."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {content_length}\r\n\r\n"
        )
        self.sock.sendall(head.encode("ascii"))

    def send(self, data: bytes) -> None:
        """Send raw bytes (a body, or part of one)."""
        self.sock.sendall(data)

    def request(self, path: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
        """Send a complete request and read its response."""
        self.send_head(path, len(body), method)
        self.send(body)
        return self.read_response()

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        """Read one response: ``(status, lower-cased headers, body)``; ``ConnectionError`` if the server hung up."""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, headers, body

    def closed_by_server(self, wait: float = 5.0) -> bool:
        """Whether the server closed the connection (reads nothing more within ``wait`` seconds)."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()


# --------------------------------------------------------------------------- canaries
Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    server: CanaryServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
        """Quiet."""


class CanaryServer(ThreadingHTTPServer):
    """A loopback HTTP server that records every request it gets."""

    daemon_threads = True

    def __init__(self, host: str, family: int = socket.AF_INET) -> None:
        self.address_family = family
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.routes: dict[str, Route] = {}
        self.host = host
        self.port = self.server_address[1]

    def url(self, path: str, host: str | None = None) -> str:
        """A URL of this server, optionally spelling its host another way."""
        shown = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{shown}:{self.port}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up early is fine."""


@contextlib.contextmanager
def serving(host: str, family: int = socket.AF_INET) -> Iterator[CanaryServer]:
    """Run a :class:`CanaryServer` on a thread for the block."""
    server = CanaryServer(host, family)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    """Answer with a complete response."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def error_of(response: httpx.Response) -> dict:
    """The ``error`` object of an error response (asserting the JSON shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str), body
    return body["error"]


# --------------------------------------------------------------------------- launcher
def _install_guard() -> None:
    log_path = os.environ.get("MMRAG_TEST_CONNECT_LOG")
    lock = threading.Lock()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: object) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        port = address[1] if isinstance(address, tuple) and len(address) > 1 else ""
        if log_path:
            with lock, open(log_path, "a") as log:
                log.write(f"{host} {port}\n")
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"test guard: connection to {host} blocked")

    def guarded_connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            check(address)
        return real_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: object) -> int:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            check(address)
        return real_connect_ex(sock, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]  # the guard is the point
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]  # the guard is the point

    trusted = os.environ.get("MMRAG_TEST_TRUSTED_IP")
    if trusted:
        from mmrag.inputs import fetch

        real_check = fetch._blocked_reason
        trusted_ip = ipaddress.ip_address(trusted)
        fetch._blocked_reason = lambda ip: None if ip == trusted_ip else real_check(ip)  # type: ignore[assignment]  # test-only patch


if __name__ == "__main__":
    import runpy

    _install_guard()
    sys.argv = ["mmrag.server", *sys.argv[1:]]
    runpy.run_module("mmrag.server", run_name="__main__", alter_sys=True)
