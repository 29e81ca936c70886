"""Throughput and latency of ``mmrag serve``: ``POST /embed`` for texts and images at several concurrencies.

Spawns a real server process on 127.0.0.1 (``python -m mmrag.server``), waits for
``/ready``, then for each modality and concurrency level sends a bounded number of
single-item ``/embed`` requests from ``concurrency`` asyncio workers (httpx) and
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
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import add_output_args, emit, environment, format_table, int_list, latency_ms, log, positive_int

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
        ]  # fmt: skip
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


async def _drive(
    base_url: str, payloads: list[dict[str, str]], total: int, concurrency: int
) -> tuple[list[float], int, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < total:
                payload = payloads[next_index % len(payloads)]
                next_index += 1
                started = time.perf_counter()
                response = await client.post("/embed", json=payload)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, errors, wall


async def _cell(
    base_url: str, modality: str, payloads: list[dict[str, str]], concurrency: int, total: int
) -> dict[str, Any]:
    before = _get_json(base_url, "/metrics")["forward_passes"]
    latencies, errors, wall = await _drive(base_url, payloads, total, concurrency)
    forwards = _get_json(base_url, "/metrics")["forward_passes"] - before
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
    }


def _get_json(base_url: str, path: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base_url}{path}", timeout=30).json()


if __name__ == "__main__":
    sys.exit(main())
