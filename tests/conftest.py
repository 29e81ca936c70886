"""Shared fixtures: no network, tiny real-architecture models built once per session.

Network: every test runs with outbound connections blocked. ``socket.socket.connect`` and
``connect_ex`` (which ``socket.create_connection``, ``http.client``, httpx, requests and asyncio
all go through) refuse any address that is not loopback (127.0.0.0/8, ``::1``, ``localhost``) or a
unix socket, with :class:`NetworkBlockedError`; loopback servers (Chroma, uvicorn, the test HTTP
servers) keep working. Host names other than ``localhost`` are refused without being resolved.
``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are forced to 1 before any hub client is imported.

Slow tests: the genuinely long tests (a minute or more on a 2-core machine: notebooks, the demo
model's training script, the CLI demo, the demo reranker over held-out images) are marked
``@pytest.mark.slow``. They are NOT skipped by default: CI runs everything. ``pytest -m "not slow"``
is a developer's quick loop.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Keep every hub client offline and away from the user's caches; no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ("clip", "siglip", "siglip2", "chinese_clip")


class NetworkBlockedError(RuntimeError):
    """A test tried to reach a non-loopback address."""


def _is_loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it is not allowed to leave the machine


def _refuse_remote(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise NetworkBlockedError(
            f"test tried to connect to {address!r}: tests must not use the network "
            "(only loopback addresses and unix sockets are allowed; see tests/conftest.py)"
        )


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: Any, address: Any) -> None:  # Any: stands in for socket.socket.connect
    _refuse_remote(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: Any, address: Any) -> int:  # Any: stands in for socket.socket.connect_ex
    _refuse_remote(self, address)
    return _real_connect_ex(self, address)


_guard_wanted = False


def _install_guard() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]  # the guard is the point
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]  # the guard is the point


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    """Fail any test that connects to a non-loopback address (see the module docstring)."""
    global _guard_wanted
    _guard_wanted = True
    _install_guard()
    yield
    _guard_wanted = False
    socket.socket.connect = _real_connect  # type: ignore[method-assign]  # restore
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]  # restore


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Put the guard back after each test's teardown.

    pytest-socket (installed with langchain-tests) resets ``socket.socket.connect`` to the real
    one in its teardown hook after every test, used or not; without this only the first test of a
    session would be guarded.
    """
    try:
        return (yield)
    finally:
        if _guard_wanted:
            _install_guard()


@pytest.fixture(autouse=True, scope="session")
def _isolated_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the hub cache at an empty temp dir so no user cache leaks in."""
    previous = os.environ.get("HF_HOME")
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    yield
    if previous is None:
        os.environ.pop("HF_HOME", None)
    else:
        os.environ["HF_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random-weight model of every family, saved with save_pretrained."""
    from mmrag.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_encoders(tiny_model_dirs: dict[str, Path]) -> dict[str, object]:
    """Each tiny model loaded through mmrag.load_encoder on the CPU."""
    import mmrag

    return {family: mmrag.load_encoder(path, device="cpu", batch_size=4) for family, path in tiny_model_dirs.items()}


@pytest.fixture(scope="session")
def clip_encoder(tiny_encoders: dict[str, object]) -> object:
    """The tiny CLIP encoder (batch_size 4)."""
    return tiny_encoders["clip"]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    Tiny models on a shared 2-core machine: intra-op threads only add sync overhead (10-100x).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ``Blip2ForImageTextRetrieval`` (randomised query tokens), saved with save_pretrained."""
    from mmrag.testing import build_tiny_blip2_itm

    return build_tiny_blip2_itm(tmp_path_factory.mktemp("tiny_blip2") / "blip2")


@pytest.fixture(scope="session")
def blip2_encoder(tiny_blip2_dir: Path) -> object:
    """The tiny BLIP-2 feature encoder, loaded by path through mmrag.load_encoder on the CPU (batch_size 3)."""
    import mmrag

    return mmrag.load_encoder(tiny_blip2_dir, device="cpu", batch_size=3)
