"""The service decodes (and fetches) each request image exactly once, end to end.

The app runs in-process (Starlette's TestClient runs its lifespan, so the model
loads as in ``mmrag serve``); the decode, copy and fetch steps of
:mod:`mmrag.inputs` are counted by wrapping them where the resolver calls
them. Vectors are compared with the library's, so counting never replaces
checking the answer.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from mmrag.inputs import decode, resolve
from mmrag.server import ServerSettings, create_app
from mmrag.store import MultimodalStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def png(colour: tuple[int, int, int], seed: int) -> bytes:
    """A small PNG with a little noise, so different seeds give different vectors."""
    rng = np.random.default_rng(seed)
    pixels = np.full((12, 16, 3), colour, dtype=np.uint8)
    pixels[rng.integers(0, 12, 10), rng.integers(0, 16, 10)] = rng.integers(0, 256, (10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


PNGS = [png(colour, seed) for seed, colour in enumerate([(220, 30, 30), (30, 200, 60), (30, 60, 220), (90, 90, 90)])]
B64 = [base64.b64encode(data).decode("ascii") for data in PNGS]


class ImageServer(ThreadingHTTPServer):
    """A loopback server answering every GET with ``PNGS[0]``; ``hits`` records the paths."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHandler)
        self.hits: list[str] = []


class _ImageHandler(BaseHTTPRequestHandler):
    server: ImageServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNGS[0])))
        self.end_headers()
        self.wfile.write(PNGS[0])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    """The loopback image server, running for the module."""
    server = ImageServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


@pytest.fixture(scope="module")
def client(
    tiny_model_dirs: dict[str, Path], clip_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app with a store (two texts, two images) and private URLs allowed (for the loopback server)."""
    db = tmp_path_factory.mktemp("server_images") / "db"
    with MultimodalStore(clip_encoder, path=db) as store:
        store.add_texts(["a red circle", "a green square"])
        store.add_images([PNGS[0], PNGS[1]])
    settings = ServerSettings(
        model=str(tiny_model_dirs["clip"]), db=str(db), device="cpu", allow_private_urls=True, access_log=False
    )
    app = create_app(settings)
    with TestClient(app) as opened:
        deadline = time.monotonic() + 120
        while opened.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)
        yield opened


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count decodes of encoded bytes, copies of PIL images, array conversions and URL fetches."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            with lock:
                counts[name] += 1
            return real(*args)

        return wrapper

    for name in ("decode_image", "from_pil", "from_array"):
        monkeypatch.setattr(decode, name, counting(name, getattr(decode, name)))
    monkeypatch.setattr(resolve, "fetch_url", counting("fetch_url", resolve.fetch_url))
    return counts


def _vector(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_embed_decodes_the_image_once(client: TestClient, counted: Counter[str], clip_encoder: Any) -> None:
    body = client.post("/embed", json={"image": B64[0], "text": "a red circle"}).json()
    assert counted == {"decode_image": 1}
    np.testing.assert_allclose(_vector(body["image_embedding"]), clip_encoder.embed_images([PNGS[0]])[0], atol=1e-5)


def test_embed_fetches_a_url_once(
    client: TestClient, counted: Counter[str], image_server: ImageServer, clip_encoder: Any
) -> None:
    hits_before = len(image_server.hits)
    url = f"http://127.0.0.1:{image_server.server_address[1]}/cat.png"
    body = client.post("/embed", json={"image": url}).json()
    assert image_server.hits[hits_before:] == ["/cat.png"]
    assert counted == {"fetch_url": 1, "decode_image": 1}
    np.testing.assert_allclose(_vector(body["image_embedding"]), clip_encoder.embed_images([PNGS[0]])[0], atol=1e-5)


def test_similarity_decodes_query_and_candidates_once_each(
    client: TestClient, counted: Counter[str], clip_encoder: Any
) -> None:
    request = {"query": B64[0], "query_type": "image", "candidates": B64[1:], "candidate_type": "image"}
    body = client.post("/similarity", json=request).json()
    assert counted == {"decode_image": 4}
    vectors = clip_encoder.embed_images(PNGS)
    expected = vectors[1:] @ vectors[0]
    assert body["indices"] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose([score for _, score in body["similarities"]], np.sort(expected)[::-1], atol=1e-5)


def test_similarity_skipping_a_bad_candidate_still_decodes_once(client: TestClient, counted: Counter[str]) -> None:
    request = {
        "query": "a red circle",
        "candidates": [B64[1], "bm90IGFuIGltYWdl", B64[2]],
        "candidate_type": "image",
        "skip_invalid": True,
    }
    body = client.post("/similarity", json=request).json()
    assert sorted(body["indices"]) == [0, 2] and [error["index"] for error in body["errors"]] == [1]
    assert counted == {"decode_image": 3}  # the bad one was tried once, and nothing was decoded twice


def test_openai_image_embeddings_decode_each_input_once(
    client: TestClient, counted: Counter[str], clip_encoder: Any
) -> None:
    body = client.post("/v1/embeddings", json={"input": B64[:3], "modality": "image"}).json()
    assert counted == {"decode_image": 3}
    vectors = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(vectors, clip_encoder.embed_images(PNGS[:3]), atol=1e-5)


def test_search_by_image_decodes_it_once(client: TestClient, counted: Counter[str]) -> None:
    body = client.post("/search", json={"image": B64[1], "modality": "image", "k": 2}).json()
    assert counted == {"decode_image": 1}
    assert body["query_type"] == "image" and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
