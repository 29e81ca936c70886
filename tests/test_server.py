"""The HTTP service: real uvicorn processes on 127.0.0.1, spoken to over HTTP.

Two servers run for the module, started together to overlap their startup:

* ``main``: no store, no local root, 1 MB bodies, 16 items per request; run
  through the connect-guard launcher (tests/server_helpers.py), which logs
  every outgoing connection of the server process and treats 127.0.0.3 as a
  "public" address for the redirect test;
* ``aux``: started plainly with ``python -m mmrag.server``, with ``--db``
  (indexed here first), ``--allow-local-root`` and a queue of 4. The last
  test stops it with SIGTERM.

Nothing here connects outside loopback: URLs that name private networks are
refused by the server before it connects, and the guard would refuse (and the
test would see) any connection that got that far.
"""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from server_helpers import CanaryServer, ServerProcess, error_of, send, serving

from mmrag.batching import QueueFullError
from mmrag.errors import (
    ImageInputError,
    InvalidFilterError,
    MmragError,
    ModelNotAvailableError,
    NotASequenceError,
    TextInputError,
)
from mmrag.server.errors import ServerDependencyError
from mmrag.store import MultimodalStore

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}


def png(colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (16, 12), seed: int = 0) -> bytes:
    """A small PNG with a little noise (so different seeds give different vectors)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0], 3), colour, dtype=np.uint8)
    pixels[rng.integers(0, size[1], 12), rng.integers(0, size[0], 12)] = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


PNG = png()
PNG_B64 = b64(PNG)


@dataclass
class Fleet:
    main: ServerProcess
    aux: ServerProcess
    root: Path
    outside: Path
    indexed: dict[str, str]


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tiny_model_dirs: dict[str, Path], tmp_path_factory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("server")
    model = str(tiny_model_dirs["clip"])
    main = ServerProcess(
        ["--model", model, "--max-body-bytes", "1000000", "--max-items", "16"],
        work,
        name="main",
        trusted_ip="127.0.0.3",
    )
    servers = [main]
    try:
        # While it loads, build the store the other one serves (the server
        # holds the embedded Chroma path, so it is closed first).
        clip_encoder = request.getfixturevalue("clip_encoder")
        root, outside, db = work / "root", work / "outside.png", work / "db"
        root.mkdir()
        outside.write_bytes(png((10, 10, 10), seed=9))
        (root / "inside.png").write_bytes(png((30, 60, 220), seed=3))
        (root / "link.png").symlink_to(outside)
        files = []
        for n, (name, colour) in enumerate(COLOURS.items()):
            files.append(work / f"{name}.png")
            files[-1].write_bytes(png(colour, size=(24, 24), seed=n))
        with MultimodalStore(clip_encoder, path=db) as store:
            report = store.add_images([str(f) for f in files], metadatas=[{"colour": c} for c in COLOURS])
            store.add_texts(
                ["a red circle", "a green square", "a blue star"], metadatas=[{"colour": c} for c in COLOURS]
            )
        indexed = dict(zip(COLOURS, report.ids))
        aux = ServerProcess(
            ["--model", model, "--db", str(db), "--allow-local-root", str(root), "--max-queue", "4",
             "--batch-size", "4", "--graceful-timeout", "10", "--no-access-log"],
            work, name="aux", guarded=False,
        )  # fmt: skip  # aligned by hand
        servers.append(aux)
        yield Fleet(main, aux, root, outside, indexed)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def main(fleet: Fleet) -> ServerProcess:
    return fleet.main.wait_ready()


@pytest.fixture(scope="module")
def aux(fleet: Fleet) -> ServerProcess:
    return fleet.aux.wait_ready()


@pytest.fixture(scope="module")
def client(main: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=main.base_url, timeout=30.0) as opened:
        yield opened


@pytest.fixture(scope="module")
def aux_client(aux: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=aux.base_url, timeout=30.0) as opened:
        yield opened


def vec(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# ----------------------------------------------------------------- probes
def test_health_answers_while_loading_and_ready_turns_200(main: ServerProcess, client: httpx.Client) -> None:
    assert main.loading_responses, "the model loaded before the first /ready poll"
    status, body, health = main.loading_responses[0]
    assert (status, health) == (503, 200)
    assert body["error"]["type"] == "not_ready"
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["dimension"] == 32
    metrics = client.get("/metrics").json()
    for key in ("forward_passes", "queue_depth", "requests_served", "responses_by_status", "model_id"):
        assert key in metrics


# ----------------------------------------------------------------- /embed
def test_embed_text_image_and_fused_match_the_library(client: httpx.Client, clip_encoder) -> None:
    text = client.post("/embed", json={"text": "a red circle"}).json()
    assert set(text) == {"text_embedding", "dimension", "model_id"}
    image = client.post("/embed", json={"image_base64": PNG_B64}).json()
    assert set(image) == {"image_embedding", "dimension", "model_id"}
    both = client.post("/embed", json={"image": f"data:image/png;base64,{PNG_B64}", "text": "a red circle"}).json()
    assert set(both) == {"fused_embedding", "image_embedding", "text_embedding", "dimension", "model_id"}
    assert both["dimension"] == 32 and both["model_id"] == clip_encoder.model_id

    expected_text = clip_encoder.embed_texts(["a red circle"])[0]
    expected_image = clip_encoder.embed_images([PNG])[0]
    np.testing.assert_allclose(vec(text["text_embedding"]), expected_text, atol=1e-5)
    np.testing.assert_allclose(vec(image["image_embedding"]), expected_image, atol=1e-5)
    np.testing.assert_allclose(vec(both["image_embedding"]), expected_image, atol=1e-5)
    fused = expected_image + expected_text
    np.testing.assert_allclose(vec(both["fused_embedding"]), fused / np.linalg.norm(fused), atol=1e-5)
    family_fused = clip_encoder.embed_fused([PNG], ["a red circle"]).fused[0]  # what add_pairs stores
    np.testing.assert_allclose(vec(both["fused_embedding"]), family_fused, atol=1e-5)


def test_embed_needs_exactly_one_image_field_and_something(client: httpx.Client) -> None:
    nothing = client.post("/embed", json={})
    assert nothing.status_code == 422 and error_of(nothing)["type"] == "validation_error"
    twice = client.post("/embed", json={"image": PNG_B64, "image_base64": PNG_B64})
    assert twice.status_code == 422 and "not both" in error_of(twice)["message"]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (b64(b"this is not an image at all"), "not a recognised image format"),
        (b64(PNG[: len(PNG) // 2]), "cannot decode image"),
        (b64(png(size=(1, 1))), "image is 1x1"),
        ("@@not base64@@" * 1000, "not a URL, data URI, existing file or valid base64"),
    ],
    ids=["garbage", "truncated-png", "1x1", "not-base64"],
)
def test_bad_images_are_400_naming_the_item(client: httpx.Client, image: str, reason: str) -> None:
    response = client.post("/embed", json={"image": image, "text": "x"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == error["code"] == "invalid_image" and reason in error["message"]
    assert error["message"].startswith("image (")
    assert len(error["message"]) < 300 and image[:60] not in error["message"]


# ----------------------------------------------------------------- /similarity
def test_similarity_ranks_texts_best_first_in_one_batch(
    main: ServerProcess, client: httpx.Client, clip_encoder
) -> None:
    candidates = [f"a photo of {n} cats" for n in range(12)] + ["a red circle", "a red circle on the left"]
    before = main.metrics()["forward_passes"]
    body = client.post("/similarity", json={"query": "a red circle", "candidates": candidates}).json()
    forwards = main.metrics()["forward_passes"] - before
    assert forwards <= 2, f"{len(candidates)} candidates took {forwards} forward passes"

    ranked = body["similarities"]
    assert len(ranked) == len(candidates) and ranked[0] == ["a red circle", pytest.approx(1.0, abs=1e-4)]
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    query = clip_encoder.embed_texts(["a red circle"])[0]
    expected = clip_encoder.embed_texts(candidates) @ query
    for (candidate, score), index in zip(ranked, body["indices"]):
        assert candidates[index] == candidate and score == pytest.approx(float(expected[index]), abs=1e-4)
    top = client.post("/similarity", json={"query": "a red circle", "candidates": candidates, "top_k": 3}).json()
    assert top["similarities"] == ranked[:3]


def test_similarity_with_images_both_ways(client: httpx.Client, clip_encoder) -> None:
    images = [b64(png(colour, seed=n)) for n, colour in enumerate(COLOURS.values())]
    body = client.post(
        "/similarity", json={"query": images[1], "query_type": "image", "candidates": images, "candidate_type": "image"}
    ).json()
    assert body["similarities"][0] == [images[1], pytest.approx(1.0, abs=1e-4)]
    to_text = client.post(
        "/similarity", json={"query": images[0], "query_type": "image", "candidates": ["red", "green", "blue"]}
    ).json()
    expected = (
        clip_encoder.embed_texts(["red", "green", "blue"]) @ clip_encoder.embed_images([base64.b64decode(images[0])])[0]
    )
    assert to_text["indices"] == list(np.argsort(-expected, kind="stable"))


def test_similarity_bad_candidate_is_400_or_skipped(client: httpx.Client) -> None:
    candidates = [PNG_B64, b64(b"garbage bytes"), b64(png(seed=5)), b64(PNG[:40])]
    request = {"query": "red", "candidates": candidates, "candidate_type": "image"}
    refused = client.post("/similarity", json=request)
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["index"] == 1 and error["message"].startswith("candidate 1 (base64 string")
    assert PNG_B64[:40] not in error["message"]

    skipped = client.post("/similarity", json={**request, "skip_invalid": True}).json()
    assert sorted(skipped["indices"]) == [0, 2]
    assert [item["index"] for item in skipped["errors"]] == [1, 3]
    assert all(item["message"].startswith(f"candidate {item['index']} (") for item in skipped["errors"])


# ----------------------------------------------------------------- /v1/embeddings
def test_openai_embeddings_contract(client: httpx.Client, clip_encoder) -> None:
    texts = ["a red circle", "一只猫"]
    floats = client.post("/v1/embeddings", json={"model": "whatever", "input": texts, "user": "u1"}).json()
    assert set(floats) == {"object", "data", "model", "usage"} and floats["object"] == "list"
    assert [set(item) for item in floats["data"]] == [{"object", "index", "embedding"}] * 2
    assert [item["index"] for item in floats["data"]] == [0, 1] and floats["data"][0]["object"] == "embedding"
    assert floats["model"] == clip_encoder.model_id
    usage = floats["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0
    np.testing.assert_allclose(
        [vec(d["embedding"]) for d in floats["data"]], clip_encoder.embed_texts(texts), atol=1e-5
    )

    packed = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64", "dimensions": 32}).json()
    for plain, item in zip(floats["data"], packed["data"]):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, vec(plain["embedding"]))

    single = client.post("/v1/embeddings", json={"input": "a red circle"}).json()
    assert len(single["data"]) == 1
    images = client.post("/v1/embeddings", json={"input": [PNG_B64], "modality": "image"}).json()
    np.testing.assert_allclose(vec(images["data"][0]["embedding"]), clip_encoder.embed_images([PNG])[0], atol=1e-5)
    assert images["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"input": ["x"], "dimensions": 16}, 400, "dimensions=16 is not supported"),
        ({"input": [[1, 2, 3]]}, 400, "token-id arrays are not supported"),
        ({"input": []}, 422, "must not be empty"),
        ({"input": ["x"], "encoding_format": "int8"}, 422, "encoding_format"),
        ({"input": ["ok", b64(b"nope")], "modality": "image"}, 400, "input 0 ("),
    ],
)
def test_openai_embeddings_errors(client: httpx.Client, body: dict, status: int, needle: str) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert needle in error_of(response)["message"]


def test_official_openai_client(main: ServerProcess, clip_encoder) -> None:
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{main.base_url}/v1", api_key="x", max_retries=0)
    texts = ["a red circle", "a blue square"]
    as_floats = api.embeddings.create(model="mmrag", input=texts, encoding_format="float")
    by_default = api.embeddings.create(model="mmrag", input=texts)  # the client asks for base64 and decodes it
    expected = clip_encoder.embed_texts(texts)
    for result in (as_floats, by_default):
        assert [item.index for item in result.data] == [0, 1]
        np.testing.assert_allclose([item.embedding for item in result.data], expected, atol=1e-5)
        assert result.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError):
        api.embeddings.create(model="mmrag", input=texts, dimensions=8)


# ----------------------------------------------------------------- /search
def test_search_without_db_says_to_use_db(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "a red circle"})
    assert response.status_code == 409
    error = error_of(response)
    assert error["type"] == "store_not_configured" and "--db" in error["message"]


def test_search_with_db(fleet: Fleet, aux_client: httpx.Client) -> None:
    by_text = aux_client.post("/search", json={"query": "a red circle", "k": 2, "modality": "text"}).json()
    assert by_text["query_type"] == "text" and len(by_text["results"]) == 2
    top = by_text["results"][0]
    assert set(top) == {"id", "modality", "source", "text", "score", "metadata"}
    assert (top["modality"], top["text"], top["metadata"]) == ("text", "a red circle", {"colour": "red"})
    assert top["score"] == pytest.approx(1.0, abs=1e-4)

    blue = b64(png(COLOURS["blue"], size=(24, 24), seed=2))
    by_image = aux_client.post("/search", json={"image": blue, "modality": "image", "k": 3}).json()
    assert by_image["results"][0]["id"] == fleet.indexed["blue"]
    assert by_image["results"][0]["source"].endswith("blue.png")
    both = aux_client.post("/search", json={"query": "a green square", "k": 10}).json()
    assert {hit["modality"] for hit in both["results"]} == {"image", "text"} and len(both["results"]) == 6
    filtered = aux_client.post("/search", json={"query": "x", "where": {"colour": "green"}, "k": 10}).json()
    assert {hit["metadata"]["colour"] for hit in filtered["results"]} == {"green"}

    bad_where = aux_client.post("/search", json={"query": "x", "where": {"colour": {"$bogus": 1}}})
    assert bad_where.status_code == 400 and error_of(bad_where)["code"] == "invalid_filter"
    assert "where['colour']: unknown operator" in error_of(bad_where)["message"]
    for body in ({}, {"query": " ", "image": blue}, {"query": "x", "k": 0}, {"query": "x", "modality": "video"}):
        response = aux_client.post("/search", json=body)
        assert response.status_code == 422 and error_of(response)["type"] == "validation_error"


def test_search_with_a_query_and_an_image_is_a_composed_query(aux_client: httpx.Client, clip_encoder) -> None:
    red = png(COLOURS["red"], size=(24, 24), seed=0)
    composed = aux_client.post("/search", json={"query": "a blue star", "image": b64(red), "k": 10}).json()
    assert composed["query_type"] == "composed" and len(composed["results"]) == 6
    fused = clip_encoder.embed_fused([red], ["a blue star"]).fused[0]
    for hit in composed["results"]:
        stored = clip_encoder.embed_texts([hit["text"]]) if hit["modality"] == "text" else None
        if stored is not None:  # the score is the cosine with the family's fused vector of the pair
            assert hit["score"] == pytest.approx(float(stored[0] @ fused), abs=1e-4)
    images = aux_client.post("/search", json={"query": "a blue star", "image": b64(red), "modality": "image"}).json()
    stored = clip_encoder.embed_images([png(c, size=(24, 24), seed=n) for n, c in enumerate(COLOURS.values())])
    expected = sorted(zip(stored @ fused, COLOURS), reverse=True)
    assert [Path(hit["source"]).stem for hit in images["results"]] == [name for _, name in expected]
    assert [hit["score"] for hit in images["results"]] == pytest.approx([float(v) for v, _ in expected], abs=1e-4)
    none = aux_client.post("/search", json={"query": "a blue star", "image": b64(red), "modality": "pair"})
    assert none.status_code == 200 and none.json()["results"] == []  # this store holds no pairs


# ----------------------------------------------------------------- batching and overload
def test_64_concurrent_single_image_requests_share_forward_passes(main: ServerProcess, clip_encoder) -> None:
    images = [png(seed=100 + n) for n in range(64)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=main.base_url, timeout=60.0) as session:
            return await asyncio.gather(*(session.post("/embed", json={"image": b64(i)}) for i in images))

    before = main.metrics()["forward_passes"]
    responses = asyncio.run(fire())
    forwards = main.metrics()["forward_passes"] - before
    assert [r.status_code for r in responses] == [200] * 64
    assert forwards <= 16, f"64 concurrent single-image requests ran {forwards} forward passes"
    expected = clip_encoder.embed_images(images[:4])
    np.testing.assert_allclose([vec(r.json()["image_embedding"]) for r in responses[:4]], expected, atol=1e-5)


def test_concurrent_composed_requests_share_forward_passes(main: ServerProcess, clip_encoder) -> None:
    images, texts = [png(seed=300 + n) for n in range(32)], [f"caption {n}" for n in range(32)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=main.base_url, timeout=60.0) as session:
            bodies = [{"image": b64(image), "text": text} for image, text in zip(images, texts)]
            return await asyncio.gather(*(session.post("/embed", json=body) for body in bodies))

    before = main.metrics()["forward_passes"]
    responses = asyncio.run(fire())
    forwards = main.metrics()["forward_passes"] - before
    assert [r.status_code for r in responses] == [200] * 32
    assert forwards <= 16, f"32 concurrent image+text requests ran {forwards} forward passes"  # one by one: 64
    expected = clip_encoder.embed_fused(images[:4], texts[:4])
    np.testing.assert_allclose([vec(r.json()["fused_embedding"]) for r in responses[:4]], expected.fused, atol=1e-5)
    np.testing.assert_allclose([vec(r.json()["image_embedding"]) for r in responses[:4]], expected.image, atol=1e-5)
    np.testing.assert_allclose([vec(r.json()["text_embedding"]) for r in responses[:4]], expected.text, atol=1e-5)


def test_overload_gives_429_with_retry_after_never_5xx(aux: ServerProcess) -> None:
    images = [b64(png(seed=200 + n, size=(64, 64))) for n in range(48)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=aux.base_url, timeout=60.0) as session:
            return await asyncio.gather(*(session.post("/embed", json={"image": image}) for image in images))

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert refused and statuses.count(200) >= 1, statuses
    assert all(r.headers["retry-after"] == "1" and error_of(r)["type"] == "overloaded" for r in refused)
    metrics = aux.metrics()
    assert metrics["queue_depth"] == 0 and metrics["requests_refused_overload"] >= len(refused)
    # A request larger than the whole queue (6 > 4) still gets in when the queue is empty.
    larger = httpx.post(f"{aux.base_url}/v1/embeddings", json={"input": [f"t{n}" for n in range(6)]}, timeout=30)
    assert larger.status_code == 200 and len(larger.json()["data"]) == 6


# ----------------------------------------------------------------- SSRF
@pytest.fixture(scope="module")
def canary() -> Iterator[CanaryServer]:
    with serving("127.0.0.1") as server:
        server.routes["/canary.png"] = lambda handler: send(handler, 200, PNG)
        yield server


@pytest.fixture(scope="module")
def redirector(canary: CanaryServer) -> Iterator[CanaryServer]:
    """A server on 127.0.0.3, which the main server's SSRF check treats as public."""
    try:
        context = serving("127.0.0.3")
        server = context.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.3: {exc}")
    server.routes["/ok.png"] = lambda handler: send(handler, 200, PNG)
    server.routes["/to-canary"] = lambda handler: send(handler, 302, headers={"Location": canary.url("/canary.png")})
    server.routes["/to-localhost"] = lambda handler: send(
        handler, 302, headers={"Location": canary.url("/canary.png", host="localhost")}
    )
    yield server
    context.__exit__(None, None, None)


SSRF_HOSTS = ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f000001", "127.1", "[::1]", "0.0.0.0"]
PRIVATE_URLS = [
    "http://10.0.0.1/x.png",
    "http://192.168.1.1/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://172.16.0.1/x.png",
    "http://[::ffff:10.0.0.1]/x.png",
    "http://[fd00::1]/x.png",
]


@pytest.mark.parametrize("host", SSRF_HOSTS)
def test_loopback_urls_refused_before_connecting(
    main: ServerProcess, client: httpx.Client, canary: CanaryServer, host: str
) -> None:
    response = client.post("/embed", json={"image": canary.url("/canary.png", host=host)})
    assert response.status_code == 400
    assert "refused to fetch" in error_of(response)["message"]
    assert canary.hits == [] and main.connects() == []


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_urls_refused_before_connecting(main: ServerProcess, client: httpx.Client, url: str) -> None:
    response = client.post("/similarity", json={"query": "x", "candidates": [url], "candidate_type": "image"})
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert message.startswith("candidate 0 (") and "refused to fetch" in message and "--allow-private-urls" in message
    assert main.connects() == []


def test_redirects_to_loopback_refused(
    main: ServerProcess, client: httpx.Client, canary: CanaryServer, redirector: CanaryServer
) -> None:
    control = client.post("/embed", json={"image": redirector.url("/ok.png")})
    assert control.status_code == 200  # the "public" first hop is reachable
    for path in ("/to-canary", "/to-localhost"):
        response = client.post("/embed", json={"image": redirector.url(path)})
        assert response.status_code == 400 and "is loopback" in error_of(response)["message"]
    assert canary.hits == []
    assert {line.split()[0] for line in main.connects()} == {"127.0.0.3"}


# ----------------------------------------------------------------- local files
def test_server_files_are_never_read_without_a_local_root(client: httpx.Client, fleet: Fleet, tmp_path: Path) -> None:
    readable = tmp_path / "server-side.png"
    readable.write_bytes(PNG)  # a real image: reading it would succeed
    for path in (str(readable), str(fleet.root / "inside.png"), f"file://{readable}", "/etc/hostname"):
        response = client.post("/embed", json={"image": path})
        assert response.status_code == 400, path
        message = error_of(response)["message"]
        assert "local file paths are disabled" in message or "unsupported URL scheme" in message, message


def test_local_root_allows_files_below_it_only(aux_client: httpx.Client, fleet: Fleet) -> None:
    inside = aux_client.post("/embed", json={"image": str(fleet.root / "inside.png")})
    assert inside.status_code == 200 and len(inside.json()["image_embedding"]) == 32
    escapes = [str(fleet.root / ".." / fleet.outside.name), str(fleet.root / "link.png"), str(fleet.outside)]
    for path in escapes:
        response = aux_client.post("/embed", json={"image": path})
        assert response.status_code == 400, path
        assert "outside the server's --allow-local-root" in error_of(response)["message"]
    assert str(fleet.root) not in error_of(response)["message"]  # the root itself is not revealed


# ----------------------------------------------------------------- limits and error shapes
def test_body_limit_413_by_content_length_and_while_streaming(client: httpx.Client) -> None:
    big = b'{"text": "' + b"x" * 1_200_000 + b'"}'
    declared = client.post("/embed", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and error_of(declared)["type"] == "payload_too_large"
    assert error_of(declared)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(40):
            yield b"x" * 32_768
        yield b'"}'

    streamed = client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413 and error_of(streamed)["type"] == "payload_too_large"
    assert client.post("/embed", json={"text": "still fine"}).status_code == 200


def test_too_many_items_is_422(client: httpx.Client) -> None:
    many = [f"t{n}" for n in range(17)]
    for path, body in (("/similarity", {"query": "x", "candidates": many}), ("/v1/embeddings", {"input": many})):
        response = client.post(path, json=body)
        assert response.status_code == 422 and error_of(response)["type"] == "too_many_items"
        assert "at most 16" in error_of(response)["message"]


def test_error_shapes_for_framework_errors(client: httpx.Client) -> None:
    cases = [
        (client.post("/embed", json={"text": 5}), 422, "validation_error"),
        (client.post("/embed", json=["not", "an", "object"]), 422, "validation_error"),
        (client.post("/similarity", json={"query": "x"}), 422, "validation_error"),
        (
            client.post("/similarity", json={"query": "x", "candidates": ["a"], "query_type": "audio"}),
            422,
            "validation_error",
        ),
        (
            client.post("/embed", content=b'{"text": ', headers={"content-type": "application/json"}),
            400,
            "invalid_json",
        ),
        (
            client.post("/embed", content=b'{"text": "\\ud800"}', headers={"content-type": "application/json"}),
            422,
            "validation_error",
        ),
        (
            client.post(
                "/embed", content=b'{"text": "x"}', headers={"content-type": "application/x-www-form-urlencoded"}
            ),
            422,
            "validation_error",
        ),
        (client.get("/nowhere"), 404, "not_found"),
        (client.get("/embed"), 405, "method_not_allowed"),
    ]
    for response, status, kind in cases:
        assert (response.status_code, error_of(response)["type"]) == (status, kind), response.text
        assert error_of(response)["code"] == kind
    assert "Content-Type: application/json" in error_of(cases[6][0])["message"]
    details = error_of(cases[0][0])["details"]
    assert details == [{"loc": "text", "msg": "Input should be a valid string", "type": "string_type"}]


def test_huge_validation_input_is_not_echoed(client: httpx.Client) -> None:
    response = client.post("/similarity", json={"query": "x", "candidates": "A" * 100_000})
    assert response.status_code == 422 and len(response.content) < 2_000


# ----------------------------------------------------------------- error codes -> HTTP
class _NewFilterError(InvalidFilterError):
    """An error class the table does not know: it answers as its parent does."""

    code = "filter_too_deep"


@pytest.fixture(scope="module")
def raising_client() -> Iterator[Any]:
    """A bare app with the service's error handlers whose routes raise mmrag errors."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mmrag.server.errors import install_error_handlers

    raised = {
        "not-a-sequence": NotASequenceError("texts must be a list of items, not a single str; wrap it in a list"),
        "filter": InvalidFilterError("where: unknown operator '$near' in {'colour': {'$near': 'red'}}"),
        "text": TextInputError("a text must be a string, got int", index=2),
        "image": ImageInputError(
            "local file paths are disabled (ImageLimits.allow_local_paths=False)", index=1, item="'a.png'"
        ),
        "queue": QueueFullError("the batcher holds 8 items (limit 8)"),
        "subclass": _NewFilterError("where: nested 40 levels deep"),
        "model": ModelNotAvailableError("model '/srv/secret/model' is not available offline"),
        "base": MmragError("something mmrag-specific"),
    }
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    async def raise_it(name: str) -> None:
        raise raised[name]

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "status", "kind", "code", "index", "needle"),
    [
        ("not-a-sequence", 400, "invalid_request", "not_a_sequence", None, "wrap it in a list"),
        ("filter", 400, "invalid_request", "invalid_filter", None, "unknown operator '$near'"),
        ("text", 400, "invalid_request", "invalid_text", 2, "text 2: a text must be a string"),
        ("image", 400, "invalid_image", "invalid_image", 1, "image 1 ('a.png'): local file paths are disabled on this"),
        ("queue", 429, "overloaded", "overloaded", None, "(limit 8); retry later"),
        ("subclass", 400, "invalid_request", "filter_too_deep", None, "nested 40 levels"),
        ("model", 503, "unavailable", "model_not_available", None, "temporarily unavailable"),
        ("base", 500, "internal_error", "mmrag_error", None, "internal server error"),
    ],
)
def test_mmrag_errors_answer_by_code(raising_client, name, status, kind, code, index, needle) -> None:
    response = raising_client.get(f"/raise/{name}")
    error = error_of(response)
    assert (response.status_code, error["type"], error["code"], error.get("index")) == (status, kind, code, index)
    assert needle in error["message"]
    assert ("retry-after" in response.headers) == (status in (429, 503))


def test_server_errors_do_not_leak_their_message(raising_client) -> None:
    error = error_of(raising_client.get("/raise/model"))
    assert "/srv/secret" not in error["message"]


def test_error_mapping_walks_the_class_hierarchy() -> None:
    from mmrag.server.errors import ERROR_MAPPINGS, error_mapping

    assert error_mapping(_NewFilterError) is ERROR_MAPPINGS["invalid_filter"]
    assert error_mapping(QueueFullError("full")) is ERROR_MAPPINGS["overloaded"]
    assert error_mapping(ServerDependencyError) is ERROR_MAPPINGS["missing_dependency"]
    assert ERROR_MAPPINGS["overloaded"].status == 429


# ----------------------------------------------------------------- settings
def test_one_load_options_object_from_the_command_line(tmp_path: Path) -> None:
    import argparse

    from mmrag.server.settings import add_server_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args(
        ["--device", "cpu", "--dtype", "bf16", "--batch-size", "8", "--revision", "v2", "--local-files-only",
         "--allow-local-root", str(tmp_path), "--allow-private-urls"]
    )  # fmt: skip  # aligned by hand
    settings = settings_from_args(args)
    options = settings.load_options
    assert (options.device, options.dtype, options.batch_size, options.revision) == ("cpu", "bf16", 8, "v2")
    assert options.local_files_only and options.use_safetensors and not options.trust_remote_code
    assert (settings.device, settings.batch_size) == ("cpu", 8)
    limits = settings.image_limits()
    assert limits is options.image_limits
    assert (limits.allow_local_paths, limits.local_root, limits.allow_private_urls) == (True, str(tmp_path), True)
    defaults = settings_from_args(parser.parse_args([]))
    assert defaults.load_options.batch_size == 64 and defaults.load_options.device is None
    assert not defaults.image_limits().allow_local_paths and not defaults.image_limits().allow_private_urls


def test_server_flags_decide_the_image_policy_of_given_options() -> None:
    from mmrag import ImageLimits, LoadOptions
    from mmrag.server import ServerSettings

    given = LoadOptions(device="cpu", image_limits=ImageLimits(max_bytes=1000, allow_local_paths=True))
    settings = ServerSettings(load_options=given)
    assert settings.image_limits().max_bytes == 1000  # sizes kept
    assert not settings.image_limits().allow_local_paths  # no --allow-local-root: server files stay closed
    assert settings.batch_size == 64 and given.batch_size is None
    with pytest.raises(TypeError, match="load_options must be a mmrag.LoadOptions"):
        ServerSettings(load_options={"device": "cpu"})


def test_device_and_batch_size_are_shorthands_for_the_load_options() -> None:
    import dataclasses

    from mmrag import LoadOptions
    from mmrag.errors import InvalidInputError
    from mmrag.server import ServerSettings

    settings = ServerSettings(device="cpu", batch_size=8, load_options=LoadOptions(device="cuda", dtype="fp16"))
    assert (settings.load_options.device, settings.load_options.batch_size, settings.load_options.dtype) == (
        "cpu", 8, "fp16",
    )  # fmt: skip  # aligned by hand
    assert (settings.device, settings.batch_size) == ("cpu", 8)
    assert "device" not in {field.name for field in dataclasses.fields(settings)}  # one copy: load_options
    moved = dataclasses.replace(settings, load_options=LoadOptions(device="mps"))
    assert (moved.device, moved.batch_size) == ("mps", 64)
    assert dataclasses.replace(settings, device="cuda:1").load_options.device == "cuda:1"
    assert dataclasses.replace(settings, port=9000) == dataclasses.replace(settings, port=9000)
    with pytest.raises(InvalidInputError, match="batch_size must be an integer of at least 1, got 0"):
        ServerSettings(batch_size=0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    ],
)
def test_bad_load_flags_are_usage_errors(argv, needle, capsys: pytest.CaptureFixture[str]) -> None:
    from mmrag.server.main import main as server_main

    with pytest.raises(SystemExit) as info:
        server_main(argv)
    assert info.value.code == 2 and needle in capsys.readouterr().err


# ----------------------------------------------------------------- process level
def test_missing_server_extra_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mmrag.server import ServerDependencyError, create_app

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ServerDependencyError, match=r'pip install "mmrag\[server\]"'):
        create_app()


def test_bad_options_and_unloadable_model_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmrag.server.main import main as server_main

    assert server_main(["--max-queue", "0"]) == 2
    assert server_main(["--allow-local-root", str(tmp_path / "missing")]) == 2
    assert server_main(["--db", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("is not a directory") == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert server_main(["--model", str(tmp_path), "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen on" in capsys.readouterr().err
    # The port is bound at once; the model fails to load in the background; the process stops with 1.
    assert server_main(["--model", str(tmp_path / "no-model"), "--port", "0", "--log-level", "critical"]) == 1
    captured = capsys.readouterr()
    assert "listening on http://127.0.0.1:" in captured.out and "does not exist" in captured.err


def test_no_5xx_no_tracebacks_and_one_model_load(fleet: Fleet) -> None:
    for server in (fleet.main, fleet.aux):
        if not server.base_url or server.process.poll() is not None:
            continue  # not started or already stopped in this run
        statuses = server.metrics()["responses_by_status"]
        assert not [code for code in statuses if code.startswith("5") and code != "503"], statuses  # 503: loading
        assert "Traceback" not in server.log, server.log[-3000:]
        assert server.log.count(" loaded in ") == 1  # the model loads once, at startup


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(aux: ServerProcess) -> None:
    """Runs last: it stops the aux server (started plainly with ``python -m mmrag.server``)."""
    server = aux
    sent_head = threading.Event()
    outcome: dict[str, object] = {}

    def slow_body() -> Iterator[bytes]:
        yield b'{"text": "a slow '
        sent_head.set()
        time.sleep(1.5)  # SIGTERM arrives while this request is in flight
        yield b'request"}'

    def post() -> None:
        try:
            outcome["response"] = httpx.post(
                f"{server.base_url}/embed",
                content=slow_body(),
                headers={"content-type": "application/json"},
                timeout=30,
            )
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=post)
    worker.start()
    assert sent_head.wait(10)
    time.sleep(0.3)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.4)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/health", timeout=2)
    worker.join(20)
    response = outcome.get("response")
    assert isinstance(response, httpx.Response), outcome
    assert response.status_code == 200 and len(response.json()["text_embedding"]) == 32
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 6, server.log[-2000:]
    assert "Traceback" not in server.log, server.log[-3000:]
