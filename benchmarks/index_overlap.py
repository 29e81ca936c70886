"""``index_folder`` against ``embed_images`` on the same files, with a forward pass that takes device-like time.

On a GPU the forward pass takes wall time but little CPU; here ``--device-ms-per-image`` adds that much sleep
(which releases the GIL, as a CUDA kernel wait does) to each image forward of a tiny 224-px CLIP. If
``index_folder`` decoded a chunk and then ran its forward pass one after the other, it would lose that time per
chunk; with two chunks embedded at once (the decoding of one on the image workers overlaps the forward pass of
the other), it stays close to ``embed_images`` on the same files. ``--device-ms-per-image 0`` measures the
plain CPU case.

Example:
    python benchmarks/index_overlap.py
    python benchmarks/index_overlap.py --n-images 640 --device-ms-per-image 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import add_output_args, format_table, load_note, log, positive_int, run_benchmark
from encode import synthetic_jpegs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=positive_int, default=320, help="JPEG files (default: 320)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="encoder batch = chunk (default: 64)")
    parser.add_argument("--device-ms-per-image", type=float, default=4.0, help="sleep per image forward (4.0)")
    parser.add_argument("--repeat", type=positive_int, default=2, help="rounds; the best counts (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    add_output_args(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``embed_images`` and ``index_folder`` (a new store each round) on the same folder."""
    import torch
    from throughput import build_tiny_clip_224

    import mmrag

    torch.set_num_threads(1)
    best = {"embed_images": float("inf"), "index_folder": float("inf")}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = root / "images"
        folder.mkdir()
        log(f"writing {args.n_images} JPEGs")
        for number, blob in enumerate(synthetic_jpegs(args.n_images, [(640, 480), (1024, 768)], quality=90, seed=0)):
            (folder / f"{number:05d}.jpg").write_bytes(blob)
        paths = sorted(folder.iterdir())
        encoder = mmrag.load_encoder(str(build_tiny_clip_224(root / "model")), device="cpu", batch_size=args.batch_size)
        forward, pause = encoder.forward_images, args.device_ms_per_image / 1000

        def device_like(batch: Any) -> Any:
            features = forward(batch)
            time.sleep(pause * len(batch["pixels"]))  # a GPU's wall time, without its CPU
            return features

        encoder.forward_images = device_like
        try:
            encoder.embed_images(paths[: args.batch_size])  # starts the workers
            for round_number in range(args.repeat):
                log(f"round {round_number + 1}/{args.repeat}")
                began = time.perf_counter()
                encoder.embed_images(paths)
                best["embed_images"] = min(best["embed_images"], time.perf_counter() - began)
                store = mmrag.MultimodalStore(encoder, path=root / f"db{round_number}")
                began = time.perf_counter()
                report = store.index_folder(folder)
                best["index_folder"] = min(best["index_folder"], time.perf_counter() - began)
                store.close()
                if report.added != len(paths):
                    raise SystemExit(f"index_folder added {report.added} of {len(paths)} files")
        finally:
            encoder.close()
    rows = [
        {"mode": mode, "items_per_s": round(len(paths) / seconds, 1), "x_embed_images": None}
        for mode, seconds in best.items()
    ]
    for row in rows:
        row["x_embed_images"] = round(row["items_per_s"] / rows[0]["items_per_s"], 2)
    return {
        "benchmark": "index_overlap",
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "device_ms_per_image": args.device_ms_per_image,
        "results": rows,
    }


COLUMNS = [("mode", "mode", ""), ("items_per_s", "items/s", ".1f"), ("x_embed_images", "x embed_images", ".2f")]


def tables(args: argparse.Namespace, result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The table to print."""
    title = (
        f"index_folder vs embed_images: {args.n_images} JPEGs, batch {args.batch_size}, "
        f"{args.device_ms_per_image} device ms per image, {load_note(env)}"
    )
    return [format_table(title, result["results"], COLUMNS)]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_benchmark(argv, parse_args, run, tables)


if __name__ == "__main__":
    sys.exit(main())
