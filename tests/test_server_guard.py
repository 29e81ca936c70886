"""An unexpected error answers a clean 500 that closes the connection, and never breaks the next request.

The service's app (``create_app``) plus one route that raises, served by a real uvicorn on
127.0.0.1 in a thread of this process, spoken to over HTTP.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import RawConnection, error_of

from mmrag.server import ServerSettings, create_app


@pytest.fixture(scope="module")
def base_url(tiny_model_dirs: dict[str, Path]) -> Iterator[str]:
    import uvicorn

    app = create_app(ServerSettings(model=str(tiny_model_dirs["clip"]), device="cpu", access_log=False))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of the failure")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the in-process server did not get ready"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_unexpected_error_is_a_json_500_that_closes_the_connection(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    connection = RawConnection(base_url)
    try:
        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            status, headers, body = connection.request("/boom", b"", method="GET")
        assert status == 500 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "internal_error"
        assert b"secret" not in body  # the detail goes to the log, not to the client
        assert connection.closed_by_server()  # closed cleanly after the answer, not reset before it
    finally:
        connection.close()
    assert "secret detail of the failure" in caplog.text and "RuntimeError" in caplog.text


def test_a_kept_alive_client_gets_its_next_request_answered(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.post("/embed", json={"text": "before"}).status_code == 200
        failed = client.get("/boom")
        assert failed.status_code == 500 and error_of(failed)["code"] == "internal_error"
        after = client.post("/embed", json={"text": "after"})  # a new connection: the old one was closed
        assert after.status_code == 200 and len(after.json()["text_embedding"]) == 32
