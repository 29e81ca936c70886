"""What workers lose at batch boundaries: the image pool batch by batch vs one stream of batches.

Modes, on the same JPEG files and worker pool, interleaved, best of ``--repeat``:

* ``per_batch``: ``ImageWorkerPool.prepare`` once per batch (what ``embed_images`` did before issue #16's
  batch stream): each batch waits for its slowest image while the other workers idle.
* ``stream``: ``ImageWorkerPool.prepare_batches`` over the whole call (what ``embed_images`` does now):
  free slots already take the next batch's items.

The loss grows as the images per worker per batch shrink: 2 workers with batches of 4 stand in for 8
workers with batches of 16 (or 16 workers with 32). Both modes give the same pixels (checked).

Example:
    python benchmarks/batch_boundaries.py
    python benchmarks/batch_boundaries.py --workers 2 --batch-sizes 4,8,16,64 --n-images 320
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_output_args, format_table, int_list, load_note, log, positive_int, run_benchmark
from encode import synthetic_jpegs

MODES = ("per_batch", "stream")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=positive_int, default=160, help="JPEG files (default: 160)")
    parser.add_argument("--image-sizes", default="640x480,1024x768", help="WxH sizes the files cycle through")
    parser.add_argument("--batch-sizes", type=int_list, default=[4, 8, 32], help="comma-separated (default: 4,8,32)")
    parser.add_argument("--workers", type=positive_int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--size", type=positive_int, default=224, help="model input side (default: 224)")
    parser.add_argument("--repeat", type=positive_int, default=3, help="rounds; the best counts (default: 3)")
    parser.add_argument("--seed", type=int, default=0)
    add_output_args(parser)
    args = parser.parse_args(argv)
    try:
        args.image_sizes = [tuple(int(v) for v in part.split("x")) for part in args.image_sizes.split(",")]
    except ValueError:
        parser.error("--image-sizes must look like 640x480,1024x768")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time both modes at every batch size; return the result dict."""
    from mmrag.encoders.preprocess import ImageSpec
    from mmrag.encoders.workers import ImageWorkerPool

    spec = ImageSpec(
        processor="CLIPImageProcessorPil", shortest_edge=args.size, resize_size=None, resample=3,
        crop_size=(args.size, args.size), rescale_factor=1 / 255, image_mean=(0.5,) * 3, image_std=(0.5,) * 3,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder, ImageWorkerPool(spec, num_workers=args.workers) as pool:
        log(f"writing {args.n_images} JPEGs")
        paths = []
        for number, blob in enumerate(synthetic_jpegs(args.n_images, args.image_sizes, quality=90, seed=args.seed)):
            path = Path(folder) / f"{number:05d}.jpg"
            path.write_bytes(blob)
            paths.append(path)
        reference = pool.prepare(paths)  # starts the workers; the pixels both modes must give
        for size in args.batch_sizes:
            best = dict.fromkeys(MODES, float("inf"))
            for round_number in range(args.repeat):
                for mode in MODES:
                    log(f"batch {size}: {mode} (round {round_number + 1}/{args.repeat})")
                    began = time.perf_counter()
                    if mode == "per_batch":
                        batches = [pool.prepare(paths[i : i + size]) for i in range(0, len(paths), size)]
                    else:
                        with pool.prepare_batches(paths, size) as stream:
                            batches = list(stream)
                    best[mode] = min(best[mode], time.perf_counter() - began)
                    if not np.array_equal(np.concatenate(batches), reference):
                        raise SystemExit(f"{mode} at batch {size} gave other pixels")
            for mode in MODES:
                rows.append(
                    {
                        "batch_size": size,
                        "images_per_worker": round(size / args.workers, 1),
                        "mode": mode,
                        "items_per_s": round(len(paths) / best[mode], 1),
                        "x_per_batch": round(best["per_batch"] / best[mode], 2),
                    }
                )
    return {
        "benchmark": "batch_boundaries",
        "workers": args.workers,
        "n_images": args.n_images,
        "image_sizes": [f"{w}x{h}" for w, h in args.image_sizes],
        "repeat": args.repeat,
        "results": rows,
    }


COLUMNS = [
    ("batch_size", "batch", ""),
    ("images_per_worker", "images/worker/batch", ".1f"),
    ("mode", "mode", ""),
    ("items_per_s", "items/s", ".1f"),
    ("x_per_batch", "x per_batch", ".2f"),
]


def tables(args: argparse.Namespace, result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The table to print."""
    title = f"batch boundaries: {args.workers} workers, {args.n_images} JPEGs, best of {args.repeat}, {load_note(env)}"
    return [format_table(title, result["results"], COLUMNS)]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_benchmark(argv, parse_args, run, tables)


if __name__ == "__main__":
    sys.exit(main())
