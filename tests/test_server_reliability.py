"""The service under bad input, stalled clients and load: one real ``mmrag serve`` process on 127.0.0.1.

Started plainly (``python -m mmrag.server``) with a store and small limits so that each rule shows with
small inputs: a queue of 16 places, batches of 16 with a 50 ms window, 2 s for a request body,
200,000 characters per text and 1,000,000 pixels decoded at once. Tests that stall connections or
fill the queue wait until the pipeline is empty again before they return.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from server_helpers import RawConnection, ServerProcess, error_of, rss_mb

from mmrag.store import MultimodalStore

QUEUE = 16
BODY_TIMEOUT = 2.0
MAX_TEXT_CHARS = 200_000
DECODE_PIXELS = 1_000_000


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A smooth gradient PNG with a few flat discs (like a photo: little high-frequency detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 100 // (width + height) + 80], -1)
    for _ in range(6):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(width // 12, width // 4)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dumps(payload: object) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def server(clip_encoder, tiny_model_dirs: dict[str, Path], tmp_path_factory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("reliability")
    with MultimodalStore(clip_encoder, path=work / "db") as store:
        store.add_texts(["a red circle", "a green square", "a blue star"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
    process = ServerProcess(
        ["--model", str(tiny_model_dirs["clip"]), "--db", str(work / "db"), "--max-queue", str(QUEUE),
         "--batch-size", "16", "--max-wait-ms", "50", "--body-timeout", str(BODY_TIMEOUT),
         "--max-text-chars", str(MAX_TEXT_CHARS), "--max-decode-pixels", str(DECODE_PIXELS), "--no-access-log"],
        work, name="reliability", guarded=False,
    )  # fmt: skip
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60.0) as opened:
        yield opened


def wait_until_idle(server: ServerProcess, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = server.metrics()
        if metrics["queue_depth"] == 0 or time.monotonic() > deadline:
            return metrics
        time.sleep(0.05)


# ----------------------------------------------------------------- bad filters: 400, connection kept
def nested(operator: str, depth: int) -> dict:
    where: dict = {"n": 1}
    for _ in range(depth):
        where = {operator: [where, {"n": 2}]}
    return where


BAD_WHERE = {
    "$where": '{"$where": "this.n > 1"}',
    "infinity": '{"n": Infinity}',
    "-infinity": '{"n": -Infinity}',
    "nan": '{"n": NaN}',
    "gt-infinity": '{"n": {"$gt": Infinity}}',
    "eq-nan": '{"n": {"$eq": NaN}}',
    "in-nan": '{"n": {"$in": [NaN]}}',
    "nin-infinity": '{"n": {"$nin": [1, Infinity]}}',
    "key-$": '{"$": 1}',
    "key-$-operator": '{"$": {"$eq": 1}}',
    "and-100-deep": json.dumps(nested("$and", 100)),
    "or-300-deep": json.dumps(nested("$or", 300)),
    "unknown-operator": '{"n": {"$near": 1}}',
    "empty-and": '{"$and": []}',
    "empty-in": '{"n": {"$in": []}}',
    "null-value": '{"n": null}',
    "list-value": '{"n": [1, 2]}',
    "gt-string": '{"n": {"$gt": "x"}}',
    "int-beyond-64-bits": '{"n": 100000000000000000000000000000}',
    "empty-key": '{"": 1}',
    "lone-surrogate": '{"n": "\\ud800"}',
}


@pytest.mark.parametrize("where", BAD_WHERE.values(), ids=BAD_WHERE.keys())
def test_bad_where_is_400_and_the_kept_alive_connection_serves_the_next_request(
    server: ServerProcess, where: str
) -> None:
    connection = RawConnection(server.base_url)
    try:
        status, headers, body = connection.request("/search", b'{"query": "red", "where": %s}' % where.encode())
        error = json.loads(body)["error"]
        assert (status, error["code"]) == (400, "invalid_filter"), body
        assert error["message"].startswith("where")  # names the part that is wrong
        assert headers.get("connection") != "close"
        status, _, body = connection.request("/search", dumps({"query": "red", "where": {"n": 1}}))
        assert status == 200 and [hit["metadata"] for hit in json.loads(body)["results"]] == [{"n": 1}]
    finally:
        connection.close()


def test_json_nested_too_deeply_is_400_invalid_json(client: httpx.Client) -> None:
    body = b'{"query": "x", "where": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"
    assert "nested too deeply" in error_of(response)["message"]


# ----------------------------------------------------------------- bodies that never arrive
def test_a_body_that_never_arrives_gets_408_and_the_connection_is_closed(server: ServerProcess) -> None:
    connection = RawConnection(server.base_url)
    try:
        connection.send_head("/embed", content_length=100)
        connection.send(b'{"text": "only part')
        started = time.monotonic()
        status, headers, body = connection.read_response()
        waited = time.monotonic() - started
        assert (status, json.loads(body)["error"]["code"]) == (408, "body_timeout")
        assert f"{BODY_TIMEOUT:g} s" in json.loads(body)["error"]["message"]
        assert headers["connection"] == "close" and connection.closed_by_server()
        assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + 5
    finally:
        connection.close()
    assert wait_until_idle(server)["queue_depth"] == 0


# ----------------------------------------------------------------- admission counts waiting requests
def test_requests_still_sending_their_body_count_toward_the_queue(server: ServerProcess) -> None:
    stalled = [RawConnection(server.base_url) for _ in range(QUEUE)]
    try:
        for connection in stalled:
            connection.send_head("/embed", content_length=50)
            connection.send(b'{"text": "')
        deadline = time.monotonic() + 10
        while server.metrics()["queue_depth"] < QUEUE and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        refused = httpx.post(f"{server.base_url}/embed", json={"text": "one more"}, timeout=30)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert error_of(refused)["code"] == "overloaded" and "--max-queue" in error_of(refused)["message"]
        assert time.monotonic() - started < 2.0  # refused at once, before its body is read
        assert all(connection.read_response()[0] == 408 for connection in stalled)
    finally:
        for connection in stalled:
            connection.close()
    assert wait_until_idle(server)["queue_depth"] == 0
    assert httpx.post(f"{server.base_url}/embed", json={"text": "now there is room"}, timeout=30).status_code == 200


def test_overload_answers_429_with_retry_after_quickly_and_never_5xx(server: ServerProcess) -> None:
    async def fire() -> list[tuple[int, float, str | None]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as session:

            async def one(n: int) -> tuple[int, float, str | None]:
                started = time.monotonic()
                response = await session.post("/embed", json={"text": f"request {n}"})
                return response.status_code, time.monotonic() - started, response.headers.get("retry-after")

            return await asyncio.gather(*(one(n) for n in range(8 * QUEUE)))

    answers = asyncio.run(fire())
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= QUEUE // 2 and statuses.count(429) >= QUEUE
    assert all(retry == "1" for status, _, retry in answers if status == 429)
    assert max(seconds for status, seconds, _ in answers if status == 429) < 10.0
    assert wait_until_idle(server)["queue_depth"] == 0


def test_concurrent_single_item_requests_fill_batches(server: ServerProcess) -> None:
    async def fire() -> list[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as session:
            responses = await asyncio.gather(
                *(session.post("/embed", json={"text": f"batch me {n}"}) for n in range(QUEUE))
            )
            return [response.status_code for response in responses]

    before = server.metrics()["forward_passes"]
    assert asyncio.run(fire()) == [200] * QUEUE
    forwards = server.metrics()["forward_passes"] - before
    assert forwards <= 4, f"{QUEUE} concurrent single-text requests took {forwards} forward passes (batch size 16)"


# ----------------------------------------------------------------- long texts
@pytest.mark.parametrize(
    ("path", "payload", "index"),
    [
        ("/embed", {"text": "x" * (MAX_TEXT_CHARS + 1)}, None),
        ("/v1/embeddings", {"input": ["short", "x" * (MAX_TEXT_CHARS + 1)]}, 1),
        ("/similarity", {"query": "q", "candidates": ["a", "b", "x" * (MAX_TEXT_CHARS + 1)]}, 2),
        ("/search", {"query": "x" * (MAX_TEXT_CHARS + 1)}, None),
    ],
    ids=["embed", "openai", "similarity", "search"],
)
def test_text_over_the_limit_is_422_naming_the_limit(client: httpx.Client, path: str, payload: dict, index) -> None:
    response = client.post(path, json=payload)
    error = error_of(response)
    assert (response.status_code, error["code"], error.get("index")) == (422, "text_too_long", index)
    assert f"at most {MAX_TEXT_CHARS} characters" in error["message"] and "--max-text-chars" in error["message"]


def test_a_long_text_embeds_like_the_whole_text_and_costs_little(client: httpx.Client, clip_encoder) -> None:
    text = " ".join(f"word{n % 97} and more" for n in range(12_000))[: MAX_TEXT_CHARS - 1]
    started = time.monotonic()
    body = client.post("/v1/embeddings", json={"input": [text, "a red circle"]}).json()
    assert time.monotonic() - started < 10.0
    expected = clip_encoder.embed_texts([text, "a red circle"])
    got = np.asarray([item["embedding"] for item in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == clip_encoder.max_text_length + len(
        clip_encoder.tokenizer(["a red circle"])["input_ids"][0]
    )


def test_small_requests_answer_while_a_huge_text_is_handled(server: ServerProcess) -> None:
    huge = dumps({"text": "lorem ipsum dolor sit amet " * 390_000})  # 10.5 MB, under the 16 MiB body limit
    small_latencies: list[float] = []
    done = threading.Event()

    def small_requests() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30.0) as session:
            while not done.is_set():
                started = time.monotonic()
                assert session.post("/embed", json={"text": "small"}).status_code == 200
                small_latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    rss_before = rss_mb(server.process.pid)
    worker = threading.Thread(target=small_requests)
    worker.start()
    try:
        started = time.monotonic()
        response = httpx.post(
            f"{server.base_url}/embed", content=huge, headers={"content-type": "application/json"}, timeout=60
        )
        big_seconds = time.monotonic() - started
    finally:
        done.set()
        worker.join(30)
    assert response.status_code == 422 and error_of(response)["code"] == "text_too_long"
    assert big_seconds < 5.0
    assert small_latencies and max(small_latencies) < 2.0, small_latencies
    assert rss_mb(server.process.pid) - rss_before < 200


# ----------------------------------------------------------------- images: the decode budget
def test_concurrent_large_images_are_decoded_within_the_pixel_budget(server: ServerProcess, clip_encoder) -> None:
    images = [png(1000, 800, seed=n) for n in range(4)]  # 800,000 pixels each: one at a time in the budget
    larger = png(1500, 1000, seed=9)  # 1,500,000 pixels: over the budget, decoded alone

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as session:
            return await asyncio.gather(*(session.post("/embed", json={"image": b64(i)}) for i in [*images, larger]))

    before = server.metrics()
    responses = asyncio.run(fire())
    after = wait_until_idle(server)
    assert [response.status_code for response in responses] == [200] * 5
    assert after["decode_pixels_peak"] <= DECODE_PIXELS and after["decode_pixels_in_use"] == 0
    assert after["decode_waits"] > before["decode_waits"]
    assert after["images_shrunk"] - before["images_shrunk"] == 5  # far larger than the model's 32 px input
    got = np.asarray([response.json()["image_embedding"] for response in responses], dtype=np.float32)
    expected = clip_encoder.embed_images([*images, larger])  # the full images, resized by the model's processor
    assert np.min(np.sum(got * expected, axis=1)) > 0.99


# ----------------------------------------------------------------- soak
def test_soak_mixed_requests_keep_memory_bounded_and_never_fail(server: ServerProcess) -> None:
    image = b64(png(600, 400, seed=3))
    bodies = [
        ("/embed", {"text": "a red circle"}),
        ("/embed", {"image": image, "text": "fused"}),
        ("/v1/embeddings", {"input": ["one", "two", "three"]}),
        ("/similarity", {"query": "red", "candidates": ["a red circle", "a blue star"]}),
        ("/search", {"query": "green", "k": 2, "where": {"n": {"$gte": 2}}}),
        ("/search", {"query": "green", "where": {"n": {"$gt": float("inf")}}}),  # 400, sent as Infinity
        ("/embed", {"image": b64(b"not an image")}),  # 400
        ("/embed", {"text": "x" * (MAX_TEXT_CHARS + 1)}),  # 422
    ]
    encoded = [(path, json.dumps(body).encode()) for path, body in bodies]

    async def run(rounds: int) -> list[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as session:
            statuses: list[int] = []
            for _ in range(rounds):
                answers = await asyncio.gather(
                    *(session.post(p, content=b, headers={"content-type": "application/json"}) for p, b in encoded)
                )
                statuses += [answer.status_code for answer in answers]
            return statuses

    asyncio.run(run(5))  # warm up: the allocator's arenas, the tokenizer's caches
    wait_until_idle(server)
    rss_warm = rss_mb(server.process.pid)
    statuses = asyncio.run(run(40))  # 320 requests
    wait_until_idle(server)
    time.sleep(0.3)  # the memory trim runs on a thread once the pipeline is empty
    growth = rss_mb(server.process.pid) - rss_warm
    assert set(statuses) == {200, 400, 422} and len(statuses) == 40 * len(bodies)
    assert growth < 64, f"RSS grew {growth:.0f} MiB over 320 mixed requests"
    metrics = server.metrics()
    assert not [code for code in metrics["responses_by_status"] if code.startswith("5") and code != "503"], metrics
    assert "Traceback" not in server.log, server.log[-3000:]
