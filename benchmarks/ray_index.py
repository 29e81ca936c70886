"""Indexing a folder into a Chroma server: ``--ray local`` (``mmrag.ray.index_folder_ray``) vs. plain ``index_folder``.

Both write the same folder (``mmrag.demo_data.write_sample_folder``: ``--n`` images, no captions) into a fresh
collection of one ``chroma run`` server on 127.0.0.1 with the same model; items/s counts files indexed over the
wall time of the call (the model loads and, for Ray, the actors' start-up included; ``ray.init`` is timed on its
own). ``--actors 1,2`` measures the scaling from 1 to N actors (one GPU each where the machine has GPUs).

Example:
    python benchmarks/ray_index.py --n 400                       # CPU, demo model, 1 actor
    python benchmarks/ray_index.py --n 5000 --model clip-vit-b-32 --actors 1,2,4,8   # a machine with 8 GPUs
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_output_args, emit, environment, format_table, int_list, log, positive_int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_chroma(data: Path, port: int) -> subprocess.Popen[bytes]:
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
    raise SystemExit("chroma run did not start within 60 s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=400, help="images in the folder (default 400)")
    parser.add_argument("--model", default="demo", help="model (default: the bundled demo model)")
    parser.add_argument("--device", default=None, help="device of the plain run (default: best available)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="files per batch (default 32)")
    parser.add_argument("--actors", type=int_list, default=[1], help="actor counts to run (default 1)")
    parser.add_argument("--ray-address", default="local", help="local (default) or a cluster's address")
    add_output_args(parser)
    args = parser.parse_args(argv)

    import chromadb

    import mmrag
    from mmrag.demo_data import write_sample_folder
    from mmrag.ray import ActorPlan, index_folder_ray, init_ray

    work = Path(tempfile.mkdtemp(prefix="mmrag-ray-bench-"))
    port = _free_port()
    server = _start_chroma(work / "chroma", port)
    rows: list[dict[str, Any]] = []
    try:
        folder = work / "photos"
        write_sample_folder(folder, n=args.n, captions=False)
        files = args.n
        log(f"folder of {files} images; chroma on 127.0.0.1:{port}")

        started = time.perf_counter()
        encoder = mmrag.load_encoder(args.model, device=args.device, batch_size=args.batch_size)
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        store = mmrag.MultimodalStore(encoder, client=client, collection="plain")
        report = store.index_folder(folder, show_progress=False)
        seconds = time.perf_counter() - started
        assert report.embedded == files, report.summary()
        rows.append({"mode": "plain index_folder", "actors": 1, "seconds": seconds, "items_s": files / seconds})
        log(f"plain: {files / seconds:.1f} items/s")

        started = time.perf_counter()
        init_ray(args.ray_address)
        ray_init_s = time.perf_counter() - started
        import ray

        ray.data.DataContext.get_current().enable_progress_bars = False
        for actors in args.actors:
            plan = ActorPlan(concurrency=actors)
            started = time.perf_counter()
            report = index_folder_ray(
                folder,
                model=args.model,
                client=f"http://127.0.0.1:{port}",
                collection=f"ray{actors}",
                batch_size=args.batch_size,
                concurrency=actors,
                show_progress=False,
            )
            seconds = time.perf_counter() - started
            assert report.embedded == files, report.summary()
            rows.append(
                {"mode": "--ray", "actors": actors, "gpus_per_actor": plan.num_gpus, "seconds": seconds,
                 "items_s": files / seconds}
            )  # fmt: skip
            log(f"ray, {actors} actor(s): {files / seconds:.1f} items/s")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    base = rows[0]["items_s"]
    for row in rows:
        row["vs_plain"] = row["items_s"] / base
    columns = [("mode", "mode", ""), ("actors", "actors", "d"), ("seconds", "s", ".1f"),
               ("items_s", "items/s", ".1f"), ("vs_plain", "vs plain", ".2f")]  # fmt: skip
    title = f"{files} images, model {args.model}, batch {args.batch_size}; ray.init {ray_init_s:.1f} s (not counted)"
    result = {
        "benchmark": "ray_index",
        "n": files,
        "model": args.model,
        "batch_size": args.batch_size,
        "ray_init_s": ray_init_s,
        "rows": rows,
        "environment": environment(("mmrag", "ray", "chromadb", "torch", "numpy")),
    }
    emit(result, [format_table(title, rows, columns)], args.json_out)


if __name__ == "__main__":
    main()
