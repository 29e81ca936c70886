"""Memory and latency of ``mmrag serve`` under hostile bursts: a huge text, huge images, overload, a soak.

Spawns a real server (``python -m mmrag.server``, see ``benchmarks/server.py``) on 127.0.0.1 and
samples its resident memory (``/proc/PID/status``, Linux) every 20 ms while it runs each scenario:

* ``text``: one ``--text-mb`` MB text to ``/embed`` while small text requests are sent every 20 ms:
  status and seconds of the big one, p50/max latency of the small ones, RSS before/peak/after;
* ``images``: ``--images`` concurrent PNGs of ``--side`` x ``--side`` pixels (flat colour with a
  sparse grid, so each is only ~200 KB): statuses, seconds, RSS before/peak/after;
* ``overload``: ``--overload-requests`` single-text requests from ``--overload-concurrency``
  connections: how many got 429, p50/p99 latency of all;
* ``soak``: ``--soak-requests`` mixed requests (texts, images, similarity, OpenAI, bad inputs) from
  8 connections: RSS after a warm-up and at the end, and any 5xx.

"After" is read 3 s after a burst. Run it against another checkout (``PYTHONPATH=/old/src``) for
before/after figures; ``--server-args`` passes extra ``mmrag serve`` flags (e.g.
``"--max-queue 64"``); flags an older server lacks make it exit at once.

Example:
    python benchmarks/server_bursts.py --scenarios text,images --images 8 --side 8000
    python benchmarks/server_bursts.py --scenarios overload --server-args "--max-queue 64"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import io
import json
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from _common import add_output_args, emit, environment, format_table, latency_ms, log, positive_int
from server import _Connection, _pick_model, _Server

SCENARIOS = ("text", "images", "overload", "soak")


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model alias, hub id or directory (default: demo model, else a tiny CLIP)")
    parser.add_argument("--device", help="device for the server (default: best available)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--server-args", default="", help="extra mmrag serve flags, one string")
    parser.add_argument("--text-mb", type=positive_int, default=10, help="size of the huge text (default 10)")
    parser.add_argument("--images", type=positive_int, default=16, help="concurrent huge images (default 16)")
    parser.add_argument("--side", type=positive_int, default=4000, help="their side in pixels (default 4000)")
    parser.add_argument("--overload-concurrency", type=positive_int, default=256)
    parser.add_argument("--overload-requests", type=positive_int, default=1024)
    parser.add_argument("--soak-requests", type=positive_int, default=2000)
    add_output_args(parser)
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if not set(chosen) <= set(SCENARIOS):
        parser.error(f"--scenarios takes {', '.join(SCENARIOS)}")
    # benchmarks/server.py's server takes these two from the throughput options
    args.batch_size, args.max_wait_ms = 64, 5.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmrag-bench-bursts-") as tmp:
        model, model_note = _pick_model(args.model, Path(tmp))
        if "images" in chosen:
            _image_bodies(args.images, args.side)
        for name in chosen:  # a fresh server per scenario: each starts from the same memory
            server = _Server(model, args, Path(tmp) / f"{name}.log")
            server.command += shlex.split(args.server_args)
            try:
                base_url = server.start()
                assert server.process is not None
                rows.append({"scenario": name, **_measure(server.process.pid, base_url, name, args)})
            finally:
                server.stop()
    result = {"benchmark": "server_bursts", "model_note": model_note, "server_args": args.server_args,
              "environment": environment(), "rows": rows}  # fmt: skip
    columns = [
        ("scenario", "scenario", ""), ("detail", "what", ""), ("rss_before_mb", "RSS before", "d"),
        ("rss_peak_mb", "peak", "d"), ("rss_after_mb", "after", "d"), ("seconds", "seconds", ".2f"),
    ]  # fmt: skip
    emit(result, [format_table(f"mmrag serve under bursts ({model_note})", rows, columns)], args.json_out)
    return 0


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0.0, False

    def run(self) -> None:
        while not self.stopped:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def _measure(pid: int, base_url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    sampler = _RssSampler(pid)
    before = rss_mb(pid)
    sampler.start()
    started = time.perf_counter()
    scenario = {"text": _text, "images": _images, "overload": _overload, "soak": _soak}[name]
    figures = asyncio.run(scenario(base_url, args, pid))
    seconds = time.perf_counter() - started
    time.sleep(3.0)
    sampler.stopped = True
    after = rss_mb(pid)
    log(f"{name}: {figures}")
    detail = ", ".join(f"{key}={value}" for key, value in figures.items() if key != "rss_warm_mb")
    return {"detail": detail, "rss_before_mb": round(before), "rss_peak_mb": round(max(sampler.peak, after)),
            "rss_after_mb": round(after), "seconds": round(seconds, 2), **figures}  # fmt: skip


async def _post(base_url: str, path: str, body: bytes) -> tuple[int, float]:
    parsed = urlsplit(base_url)
    connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80)
    started = time.perf_counter()
    try:
        status = await connection.post_json(path, body)
    finally:
        await connection.close()
    return status, time.perf_counter() - started


async def _text(base_url: str, args: argparse.Namespace, _pid: int) -> dict[str, Any]:
    words = "lorem ipsum dolor sit amet "
    huge = json.dumps({"text": words * (args.text_mb * 1024 * 1024 // len(words))}).encode()
    small = json.dumps({"text": "a small request"}).encode()
    alone = [(await _post(base_url, "/embed", small))[1] for _ in range(10)]
    done = asyncio.Event()
    during: list[float] = []

    async def smalls() -> None:
        while not done.is_set():
            during.append((await _post(base_url, "/embed", small))[1])
            await asyncio.sleep(0.02)

    task = asyncio.create_task(smalls())
    status, seconds = await _post(base_url, "/embed", huge)
    done.set()
    await task
    small_alone, small_during = latency_ms(alone), latency_ms(during)
    return {"big_status": status, "big_s": round(seconds, 2), "small_alone_p50_ms": round(small_alone["p50_ms"], 1),
            "small_during_p50_ms": round(small_during["p50_ms"], 1),
            "small_during_max_ms": round(small_during["max_ms"], 1)}  # fmt: skip


def _huge_png(side: int, seed: int) -> bytes:
    from PIL import Image

    pixels = np.full((side, side, 3), (seed * 40 % 255, 120, 200), np.uint8)
    pixels[::97, ::89] = 7
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def _image_bodies(count: int, side: int) -> list[bytes]:
    log(f"encoding {count} PNGs of {side}x{side}")
    pngs = [_huge_png(side, seed) for seed in range(count)]
    return [json.dumps({"image": base64.b64encode(data).decode("ascii")}).encode() for data in pngs]


async def _images(base_url: str, args: argparse.Namespace, _pid: int) -> dict[str, Any]:
    bodies = _image_bodies(args.images, args.side)  # made before the server starts (see main)
    answers = await asyncio.gather(*(_post(base_url, "/embed", body) for body in bodies))
    statuses = Counter(status for status, _ in answers)
    return {"images": args.images, "side": args.side, "kb_each": len(bodies[0]) * 3 // 4 // 1024,
            "statuses": dict(statuses), "slowest_s": round(max(s for _, s in answers), 2)}  # fmt: skip


async def _overload(base_url: str, args: argparse.Namespace, _pid: int) -> dict[str, Any]:
    parsed = urlsplit(base_url)
    body = json.dumps({"text": "a small request"}).encode()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    left = args.overload_requests

    async def worker() -> None:
        nonlocal left
        connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80)
        try:
            while left > 0:
                left -= 1
                started = time.perf_counter()
                statuses[await connection.post_json("/embed", body)] += 1
                latencies.append(time.perf_counter() - started)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(args.overload_concurrency)))
    figures = latency_ms(latencies)
    return {"statuses": dict(statuses), "p50_ms": round(figures["p50_ms"], 1), "p99_ms": round(figures["p99_ms"], 1)}


async def _soak(base_url: str, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    image = base64.b64encode(_huge_png(640, 1)).decode("ascii")
    mixed = [
        ("/embed", {"text": "a red circle"}), ("/embed", {"image": image, "text": "fused"}),
        ("/v1/embeddings", {"input": ["one", "two", "three"]}),
        ("/similarity", {"query": "red", "candidates": ["a red circle", "a blue star"]}),
        ("/embed", {"image": "bm90IGFuIGltYWdl"}), ("/embed", {"text": "x" * 200_001}),
        ("/v1/embeddings", {"input": "y" * 50_000}), ("/embed", {}),
    ]  # fmt: skip
    bodies = [(path, json.dumps(payload).encode()) for path, payload in mixed]
    statuses: Counter[int] = Counter()
    parsed = urlsplit(base_url)

    async def run(total: int) -> None:
        sent = 0

        async def worker() -> None:
            nonlocal sent
            connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80)
            try:
                while sent < total:
                    path, body = bodies[sent % len(bodies)]
                    sent += 1
                    statuses[await connection.post_json(path, body)] += 1
            finally:
                await connection.close()

        await asyncio.gather(*(worker() for _ in range(8)))

    await run(200)
    await asyncio.sleep(1.0)
    warm = rss_mb(pid)
    await run(args.soak_requests)
    await asyncio.sleep(1.0)
    return {"requests": args.soak_requests, "statuses": dict(statuses), "rss_warm_mb": round(warm),
            "growth_mb": round(rss_mb(pid) - warm)}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
