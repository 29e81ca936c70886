"""MultimodalStore on a `chroma run` server through chromadb.HttpClient (loopback only), and that server restarted
in the middle of an index run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import COLOURS, assert_store_matches, image, make_folder

from mmrag.store import MultimodalStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    process = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("chroma run did not start within 60 s")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    port = _free_port()
    process = _start_server(tmp_path_factory.mktemp("chroma_server"), port)
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


@pytest.mark.slow
def test_a_server_restarted_mid_run_is_a_clear_error_and_a_rerun_completes(tmp_path, demo_encoder, monkeypatch) -> None:
    import chromadb

    port, data = _free_port(), tmp_path / "server"
    server = _start_server(data, port)
    try:
        folder = make_folder(tmp_path)
        store = MultimodalStore(
            demo_encoder, client=chromadb.HttpClient(host="127.0.0.1", port=port), collection="kept"
        )
        assert store.index_folder(folder).added == 6
        for i in range(12):
            image((20 * i, 90, 160), seed=20 + i).save(folder / f"more{i:02d}.png")
        embed_images, calls = demo_encoder.embed_images, []

        def server_dies(images):
            calls.append(len(images))
            if len(calls) == 2:  # chunk 1 is being written meanwhile
                server.kill()
                server.wait(timeout=30)
            return embed_images(images)

        monkeypatch.setattr(demo_encoder, "embed_images", server_dies)
        with pytest.raises(ConnectionError, match=rf"the Chroma server at 127.0.0.1:{port} cannot be reached"):
            store.index_folder(folder)
        monkeypatch.undo()
        server = _start_server(data, port)  # the same data, the same port: the client carries on
        report = store.index_folder(folder)
        assert report.skipped >= 6 and report.skipped + report.added == 18
        expected = {
            str(path): "" if path.suffix == ".png" else path.read_text(encoding="utf-8")
            for path in folder.rglob("*")
            if path.suffix in (".png", ".txt", ".md")
        }
        assert_store_matches(store, expected)  # nothing stored before was lost, nothing is there twice
    finally:
        server.terminate()
        server.wait(timeout=30)
