"""Throughput and latency of ``mmrag serve``: ``POST /embed`` for texts and images at several concurrencies.

Spawns a real server process on 127.0.0.1 (``python -m mmrag.server``), waits for
``/ready``, then for each modality and concurrency level sends a bounded number of
single-item ``/embed`` requests from ``concurrency`` asyncio workers (one
keep-alive connection each, a minimal HTTP/1.1 client so that the load
generator stays cheap next to the server) and
reports requests/s, p50/p99 latency and how many forward passes the server ran
(from ``/metrics``: fewer passes than requests means requests were coalesced).
Only loopback is used; the server is stopped with SIGTERM at the end.

The model is ``--model`` if given, else the bundled demo model when
``src/mmrag/models/demo/config.json`` exists, else a tiny random CLIP built with
``mmrag.testing.build_tiny_model("clip", tmp)`` (figures then measure the
service overhead more than the model).

Example:
    python benchmarks/server.py --requests 256 --concurrency 1,16,64
    python benchmarks/server.py --model clip-vit-b-32 --device cpu --json-out results/server.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from _common import (
    add_output_args,
    emit,
    environment,
    format_table,
    int_list,
    latency_ms,
    log,
    positive_int,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "src" / "mmrag" / "models" / "demo"
_LISTENING = re.compile(r"listening on (http://\S+) ")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model alias, hub id or directory (default: demo model, else a tiny CLIP)")
    parser.add_argument("--device", help="device for the server (default: best available)")
    parser.add_argument("--requests", type=positive_int, default=256, help="requests per cell (default 256)")
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64], help="levels (default 1,16,64)")
    parser.add_argument("--modalities", default="text,image", help="text, image or both (default text,image)")
    parser.add_argument("--image-size", type=positive_int, default=224, help="side of the test images (default 224)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="server --batch-size (default 64)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server --max-wait-ms (default 5)")
    parser.add_argument("--warmup", type=positive_int, default=8, help="untimed requests per modality (default 8)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    if not set(modalities) <= {"text", "image"}:
        parser.error("--modalities takes text, image or text,image")

    with tempfile.TemporaryDirectory(prefix="mmrag-bench-server-") as tmp:
        model, model_note = _pick_model(args.model, Path(tmp))
        server = _Server(model, args, Path(tmp) / "server.log")
        try:
            base_url = server.start()
            payloads = {"text": _texts(64), "image": _images(32, args.image_size)}
            rows = []
            for modality in modalities:
                asyncio.run(_drive(base_url, payloads[modality], args.warmup, 4))
                for concurrency in args.concurrency:
                    log(f"{modality} /embed at concurrency {concurrency}: {args.requests} requests")
                    rows.append(asyncio.run(_cell(base_url, modality, payloads[modality], concurrency, args.requests)))
            ready = _get_json(base_url, "/ready")
        finally:
            status = server.stop()
    result: dict[str, Any] = {
        "benchmark": "server",
        "model": ready.get("model_id", model),
        "model_note": model_note,
        "dimension": ready.get("dimension"),
        "server": {"batch_size": args.batch_size, "max_wait_ms": args.max_wait_ms, "device": args.device or "auto"},
        "image_size": args.image_size,
        "requests_per_cell": args.requests,
        "server_exit_status": status,
        "environment": environment(),
        "rows": rows,
    }
    columns = [
        ("modality", "modality", ""),
        ("concurrency", "conc", "d"),
        ("requests", "requests", "d"),
        ("errors", "errors", "d"),
        ("requests_per_s", "req/s", ".1f"),
        ("p50_ms", "p50 ms", ".1f"),
        ("p99_ms", "p99 ms", ".1f"),
        ("forward_passes", "forwards", "d"),
        ("items_per_forward", "items/fwd", ".1f"),
        ("server_cpu_ms_per_request", "srv cpu ms/req", ".1f"),
        ("client_cpu_ms_per_request", "client cpu ms/req", ".1f"),
    ]
    title = f"POST /embed, one item per request ({model_note}; client and server share this machine)"
    emit(result, [format_table(title, rows, columns)], args.json_out)
    return 0


# ----------------------------------------------------------------- server process
class _Server:
    def __init__(self, model: str, args: argparse.Namespace, log_path: Path) -> None:
        self.command = [
            sys.executable, "-m", "mmrag.server", "--model", model, "--host", "127.0.0.1", "--port", "0",
            "--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip  # aligned by hand
        if args.device:
            self.command += ["--device", args.device]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600.0) -> str:
        import httpx

        env = dict(os.environ, PYTHONUNBUFFERED="1", ANONYMIZED_TELEMETRY="False")
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        base_url = ""
        started = time.perf_counter()
        while time.monotonic() < deadline and self.process.poll() is None:
            if not base_url:
                match = _LISTENING.search(self.log_path.read_text(errors="replace"))
                base_url = match.group(1) if match else ""
            if base_url:
                try:
                    if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                        log(f"server ready at {base_url} after {time.perf_counter() - started:.1f}s")
                        return base_url
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _pick_model(model: str | None, tmp: Path) -> tuple[str, str]:
    if model:
        return model, f"model {model}"
    if (DEMO_MODEL / "config.json").is_file():
        return str(DEMO_MODEL), "bundled demo model"
    from mmrag.testing import build_tiny_model

    log("building a tiny random CLIP (no --model and no bundled demo model)")
    return str(build_tiny_model("clip", tmp / "tiny-clip")), "tiny random CLIP (mmrag.testing)"


# ----------------------------------------------------------------- load generation
def _texts(n: int) -> list[dict[str, str]]:
    from mmrag.testing import caption_corpus

    return [{"text": text} for text in caption_corpus()[:n]]


def _images(n: int, side: int) -> list[dict[str, str]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(n):
        base = rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)
        noise = rng.integers(0, 48, (side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(np.broadcast_to(base, (side, side, 3)) + noise).save(buffer, "JPEG", quality=90)
        payloads.append({"image": base64.b64encode(buffer.getvalue()).decode("ascii")})
    return payloads


class _Connection:
    """A minimal keep-alive HTTP/1.1 client connection on asyncio streams.

    The load generator shares the machine with the server, so it must be
    cheap: httpx's pool spent ~10 ms of CPU per request at 64 connections
    (5x the server's own cost) and skewed the figures.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def _drive(
    base_url: str, payloads: list[dict[str, str]], total: int, concurrency: int
) -> tuple[list[float], int, float]:
    parsed = urlsplit(base_url)
    bodies = [json.dumps(payload).encode() for payload in payloads]
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80)
        try:
            while next_index < total:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                started = time.perf_counter()
                status = await connection.post_json("/embed", body)
                latencies.append(time.perf_counter() - started)
                errors += status != 200
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def _cell(
    base_url: str, modality: str, payloads: list[dict[str, str]], concurrency: int, total: int
) -> dict[str, Any]:
    before = _get_json(base_url, "/metrics")
    client_cpu = time.process_time()
    latencies, errors, wall = await _drive(base_url, payloads, total, concurrency)
    client_cpu = time.process_time() - client_cpu
    after = _get_json(base_url, "/metrics")
    forwards = after["forward_passes"] - before["forward_passes"]
    server_cpu_s = after["process_cpu_s"] - before["process_cpu_s"]
    return {
        "modality": modality,
        "concurrency": concurrency,
        "requests": total,
        "errors": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(total / wall, 2),
        **latency_ms(latencies),
        "forward_passes": forwards,
        "items_per_forward": round(total / forwards, 2) if forwards else None,
        "server_cpu_ms_per_request": round(server_cpu_s * 1000 / total, 2),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / total, 2),
    }


def _get_json(base_url: str, path: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base_url}{path}", timeout=30).json()


if __name__ == "__main__":
    sys.exit(main())
