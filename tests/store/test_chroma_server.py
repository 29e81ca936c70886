"""MultimodalStore on a `chroma run` server through chromadb.HttpClient (loopback only)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import COLOURS, image, make_folder

from mmrag.store import MultimodalStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma_server")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("chroma run did not start within 60 s")
    yield port
    process.terminate()
    process.wait(timeout=30)


def test_chroma_server_client(chroma_server, clip_encoder, tmp_path) -> None:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    store = MultimodalStore(clip_encoder, client=client, collection="served")
    folder = make_folder(tmp_path)
    report = store.index_folder(folder)
    assert report.added == 6
    hits = store.search(image(COLOURS["blue"], seed=2), k=1, modality="image")
    assert hits[0].source == str((folder / "blue.png").resolve())
    assert store.search("a note about red things", k=1, modality="text")[0].text == "a note about red things"
    again = MultimodalStore(
        clip_encoder, client=chromadb.HttpClient(host="127.0.0.1", port=chroma_server), collection="served"
    )
    assert again.index_folder(folder).skipped == 6
