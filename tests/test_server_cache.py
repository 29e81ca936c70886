"""The service's embedding cache: MMRAG_CACHE_PATH / --cache / cache_path, repeated inputs cost no forward pass."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from mmrag.server import ServerSettings, create_app
from mmrag.server.arguments import add_server_arguments, settings_from_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


def test_settings_take_the_cache_from_the_environment_or_the_argument(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MMRAG_CACHE_PATH", raising=False)
    assert ServerSettings().cache_path is None
    monkeypatch.setenv("MMRAG_CACHE_PATH", str(tmp_path / "env.sqlite"))
    assert ServerSettings().cache_path == str(tmp_path / "env.sqlite")
    assert ServerSettings(cache_path=":memory:").cache_path == ":memory:"
    with pytest.raises(ValueError, match="cache-max-entries"):
        ServerSettings(cache_max_entries=0)
    import argparse

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    assert settings_from_args(parser.parse_args(["--cache", str(tmp_path)])).cache_path == str(tmp_path)


def test_a_repeated_text_is_answered_by_the_cache_and_metrics_show_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MMRAG_CACHE_PATH", raising=False)
    path = tmp_path / "cache.sqlite"
    settings: dict[str, Any] = {"model": "demo", "device": "cpu", "access_log": False, "cache_path": str(path)}
    with TestClient(create_app(ServerSettings(**settings))) as client:
        _ready(client)
        first = client.post("/embed", json={"text": "a red circle"}).json()
        before = client.get("/metrics").json()
        again = client.post("/embed", json={"text": "a red circle"}).json()
        after = client.get("/metrics").json()
    assert again == first
    assert after["forward_passes"] == before["forward_passes"]
    assert after["cache"]["hits"] == before["cache"]["hits"] + 1 and after["cache"]["path"] == str(path)
    assert path.exists()
    with TestClient(create_app(ServerSettings(model="demo", device="cpu", access_log=False))) as plain:
        _ready(plain)
        assert plain.get("/metrics").json()["cache"] is None
