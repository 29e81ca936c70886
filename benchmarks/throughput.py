"""Image throughput from files to vectors: anchors, and ``embed_images`` in each pipeline setting.

Modes, all on the same model weights, device and dtype, the same JPEG files, interleaved, best of
``--repeat`` rounds:

``per_item``
    Anchor: for every file, ``Image.open(...).convert("RGB")``, one ``processor(images=img)`` call
    and one ``model.get_image_features`` forward.
``naive_batched``
    Anchor: ``Image.open`` + the HF image processor on batches of ``--batch-size``, one forward
    per batch, no overlap.
``sentence_transformers``
    Anchor, when ``sentence_transformers`` imports (it is no mmrag dependency; the row is skipped,
    with the reason in ``skipped``, when it is missing or cannot load the model):
    ``SentenceTransformer(modules=[CLIPModel(model)]).encode(pil_images, batch_size=...)`` on images
    opened with ``Image.open(...).convert("RGB")``, as its image-search examples do.
``processor_path``
    ``embed_images`` the way mmrag did it before issue #16 (and still does for families without an
    exact uint8 spec, e.g. SigLIP 2 NaFlex): ``resolve_image`` + the HF image processor on the
    prefetch thread.
``mmrag_default``
    ``load_encoder(...).embed_images(paths)`` as shipped: exact uint8 decode/resize/crop on the
    image worker processes (``--workers``; default one per core, at most 8), lookup-table
    normalisation on the device, next batch prepared while the current one runs.
``inprocess``
    The same with ``image_workers=0`` (prepared on the prefetch thread).
``fast_decode``
    ``mmrag_default`` with ``fast_decode=True`` (JPEG DCT scaling + box reduction; not exact).
``fast_decode_inprocess``
    ``inprocess`` with ``fast_decode=True``.

Besides items/s, each row reports the CPU seconds per item spent by this process and the worker
processes together: on a machine shared with other work (wall-clock figures then depend on what
else runs), CPU per item says what the pipeline would do on free cores.

The model is a tiny random CLIP (hidden 32, 2 layers) whose processor takes 224-px inputs, built
from ``mmrag.testing.build_tiny_model("clip")`` with a 224-px, patch-32 vision tower, so the
forward is cheap and decoding dominates; ``--model`` takes any other model. Files: synthetic
JPEGs (``encode.synthetic_jpegs``) of ``--image-sizes`` written to a temporary folder.

Example:
    python benchmarks/throughput.py                          # 160 files, tiny 224-px CLIP, CPU
    python benchmarks/throughput.py --arch clip-b-32 --n-images 64 --repeat 2 --modes naive_batched,mmrag_default
    python benchmarks/throughput.py --model clip-vit-b-32 --device cuda --n-images 2048 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    add_output_args,
    format_table,
    load_note,
    log,
    non_negative_int,
    positive_int,
    run_benchmark,
    timed,
)
from encode import DEFAULT_CACHE, model_dir, synthetic_jpegs

MODES = (
    "per_item",
    "naive_batched",
    "sentence_transformers",
    "processor_path",
    "mmrag_default",
    "inprocess",
    "fast_decode",
    "fast_decode_inprocess",
)
# LoadOptions of each embed_images mode
ENCODER_MODES: dict[str, dict[str, Any]] = {
    "processor_path": {"image_workers": 0},
    "mmrag_default": {},
    "inprocess": {"image_workers": 0},
    "fast_decode": {"fast_decode": True},
    "fast_decode_inprocess": {"image_workers": 0, "fast_decode": True},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from mmrag.testing import ARCHS

    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="a preset, hub id or local model (default: tiny 224-px CLIP)")
    source.add_argument(
        "--arch", choices=sorted(ARCHS), default=None, help="a random-weight real-size model instead (e.g. clip-b-32)"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where --arch models are kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--n-images", type=positive_int, default=160, help="JPEG files (default: 160)")
    parser.add_argument("--image-sizes", default="640x480,1024x768", help="WxH sizes the files cycle through")
    parser.add_argument("--jpeg-quality", type=positive_int, default=90)
    parser.add_argument("--repeat", type=positive_int, default=3, help="timed rounds, modes interleaved; best kept")
    parser.add_argument("--warmup", type=non_negative_int, default=8, help="files each mode embeds untimed first")
    parser.add_argument("--workers", type=non_negative_int, default=None, help="pool size (default: per core, <= 8)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--seed", type=int, default=0)
    add_output_args(parser)
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"unknown --modes {unknown}; choose from {MODES}")
    try:
        args.image_sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.image_sizes.split(",")]
    except ValueError:
        parser.error("--image-sizes must look like 640x480,1024x768")
    return args


# ------------------------------------------------------------------ model and files
def build_tiny_clip_224(path: Path, *, seed: int = 0) -> Path:
    """A tiny random CLIP (hidden 32, 2 layers) whose processor and vision tower take 224-px images."""
    import torch
    import transformers

    from mmrag.testing import build_tiny_model

    build_tiny_model("clip", path, seed=seed)
    config = transformers.CLIPConfig.from_pretrained(path)
    config.vision_config.image_size, config.vision_config.patch_size = 224, 32
    torch.manual_seed(seed)
    transformers.CLIPModel(config).eval().save_pretrained(path)
    processor = transformers.AutoProcessor.from_pretrained(path)
    processor.image_processor.size = {"shortest_edge": 224}
    processor.image_processor.crop_size = {"height": 224, "width": 224}
    processor.save_pretrained(path)
    return path


def write_files(blobs: Sequence[bytes], folder: Path) -> list[Path]:
    """Write the JPEG bytes as numbered files."""
    paths = []
    for index, blob in enumerate(blobs):
        path = folder / f"img_{index:05d}.jpg"
        path.write_bytes(blob)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- modes
class Runner:
    """Everything the modes share: one encoder per embed_images mode (same weights), the anchors' model."""

    def __init__(self, source: str, args: argparse.Namespace) -> None:
        import mmrag
        from mmrag.encoders.transformers_dual import TransformersDualEncoder

        base = mmrag.load_encoder(source, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
        if not isinstance(base, TransformersDualEncoder) or base.image_spec is None:
            raise SystemExit(f"{source}: no exact uint8 image spec; nothing to compare")
        self.spec = base.image_spec
        workers = {} if args.workers is None else {"image_workers": args.workers}
        self.encoders: dict[str, Any] = {}
        for mode, options in ENCODER_MODES.items():
            if mode in args.modes or mode == "processor_path":
                self.encoders[mode] = TransformersDualEncoder(  # the same model object: one copy of the weights
                    base.model, base.processor, family=base._family, model_id=base.model_id,
                    batch_size=args.batch_size, **{**workers, **options},
                )  # fmt: skip
        base.close()
        self.encoder = self.encoders["processor_path"]
        self.encoder._image_pool = None  # the processor path: what embed_images did before issue #16
        self.batch_size = args.batch_size
        self.skipped: dict[str, str] = {}
        self.sentence_transformer: Any = None
        if "sentence_transformers" in args.modes:
            try:
                from sentence_transformers import SentenceTransformer

                try:  # sentence-transformers >= 6
                    from sentence_transformers.sentence_transformer.modules import CLIPModel
                except ImportError:
                    from sentence_transformers.models import CLIPModel

                module = CLIPModel(source)
                self.sentence_transformer = SentenceTransformer(modules=[module], device=args.device)
            except Exception as exc:  # missing, or a model its CLIP wrapper cannot load: skip the row
                self.skipped["sentence_transformers"] = f"{type(exc).__name__}: {str(exc)[:200]}"

    def close(self) -> None:
        for encoder in self.encoders.values():
            encoder.close()

    def worker_pids(self) -> list[int]:
        return [pid for encoder in self.encoders.values() for pid in encoder.image_worker_pids]

    def startup_s(self, mode: str) -> float | None:
        pool = getattr(self.encoders.get(mode), "_image_pool", None)
        return pool.startup_s if pool is not None else None

    def workers(self) -> int:
        pool = getattr(self.encoders.get("mmrag_default"), "_image_pool", None)
        return pool.num_workers if pool is not None else 0

    def run(self, mode: str, paths: Sequence[Path]) -> np.ndarray:
        if mode == "per_item":
            return self.per_item(paths)
        if mode == "naive_batched":
            return self.naive_batched(paths)
        if mode == "sentence_transformers":
            return self.sentence_transformers(paths)
        vectors: np.ndarray = self.encoders[mode].embed_images(list(paths), batch_size=self.batch_size)
        return vectors

    def _features(self, inputs: dict[str, Any]) -> np.ndarray:
        import torch

        from mmrag.encoders.transformers_dual import pooled_features

        encoder = self.encoder
        with torch.inference_mode():
            moved = {
                key: value.to(encoder.device, encoder.dtype) if value.is_floating_point() else value.to(encoder.device)
                for key, value in inputs.items()
                if isinstance(value, torch.Tensor)
            }
            features = pooled_features(encoder.model.get_image_features(**moved))
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()

    def per_item(self, paths: Sequence[Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for path in paths:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
            out.append(self._features(self.encoder.image_processor(images=rgb, return_tensors="pt")))
        return np.concatenate(out)

    def naive_batched(self, paths: Sequence[Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for path in paths[start : start + self.batch_size]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            out.append(self._features(self.encoder.image_processor(images=images, return_tensors="pt")))
        return np.concatenate(out)

    def sentence_transformers(self, paths: Sequence[Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(paths), 256):  # bounded memory: 256 decoded images at a time
            images = []
            for path in paths[start : start + 256]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            out.append(
                self.sentence_transformer.encode(
                    images, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                    show_progress_bar=False,
                )
            )  # fmt: skip
        return np.concatenate(out)


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds used so far by this process and the given (worker) processes."""
    import psutil

    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def pil_transfer_costs(spec: Any, sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Per decoded PIL image: parent-side cost of pickling it to a worker vs preprocessing it in the parent."""
    from PIL import Image

    from mmrag.encoders.preprocess import preprocess_image

    rows = []
    rng = np.random.default_rng(0)
    for width, height in sizes:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        reps = 5
        start = time.perf_counter()
        for _ in range(reps):
            blob = pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL)
        dumps_ms = (time.perf_counter() - start) / reps * 1000
        read_fd, write_fd = os.pipe()
        # What sending costs the parent at the very least: pickling plus one copy into a pipe.
        start = time.perf_counter()
        written = 0
        with os.fdopen(write_fd, "wb", buffering=0) as writer, os.fdopen(read_fd, "rb", buffering=0) as reader:
            view = memoryview(blob)
            while written < len(blob):
                written += writer.write(view[written : written + 65536])
                reader.read(65536)
        pipe_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        for _ in range(reps):
            preprocess_image(image, spec)
        preprocess_ms = (time.perf_counter() - start) / reps * 1000
        rows.append(
            {
                "size": f"{width}x{height}",
                "pickle_ms": round(dumps_ms, 2),
                "pipe_ms": round(pipe_ms, 2),
                "send_ms": round(dumps_ms + pipe_ms, 2),
                "preprocess_in_parent_ms": round(preprocess_ms, 2),
            }
        )
    return rows


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model and files, time every mode; return the JSON result."""
    import torch

    from mmrag.encoders.workers import WORKER_MIN_IMAGES

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mmrag-throughput-") as scratch:
        root = Path(scratch)
        if args.model:
            source, label = args.model, args.model
        elif args.arch:
            source, label = str(model_dir(args.arch, args.cache_dir)), f"random:{args.arch}"
        else:
            source = str(build_tiny_clip_224(root / "tiny-clip-224", seed=args.seed))
            label = "tiny-clip-224 (random, hidden 32)"
        log(f"loading {label} on {args.device}")
        runner = Runner(source, args)
        encoder = runner.encoder
        for mode, reason in runner.skipped.items():
            log(f"skipping {mode}: {reason}")
        args.modes = [mode for mode in args.modes if mode not in runner.skipped]
        log(f"writing {args.n_images} JPEGs")
        blobs = synthetic_jpegs(args.n_images, args.image_sizes, quality=args.jpeg_quality, seed=args.seed)
        paths = write_files(blobs, root)
        # A warm-up call of at least WORKER_MIN_IMAGES files starts the worker pools.
        warm = paths[: max(args.warmup, WORKER_MIN_IMAGES)] if args.warmup else []
        try:
            startup: dict[str, float | None] = {}
            for mode in args.modes:
                if warm:
                    runner.run(mode, warm)
                startup[mode] = runner.startup_s(mode)
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}
            vectors: dict[str, np.ndarray] = {}
            for round_ in range(args.repeat):
                for mode in args.modes:
                    log(f"{mode} (round {round_ + 1}/{args.repeat})")
                    pids = runner.worker_pids()
                    cpu_before = cpu_seconds(pids)
                    seconds, out = timed(lambda mode=mode: runner.run(mode, paths), device=args.device)
                    used = cpu_seconds(pids) - cpu_before
                    if seconds < best.get(mode, float("inf")):
                        best[mode], cpu[mode] = seconds, used
                    vectors[mode] = out
            transfer = pil_transfer_costs(runner.spec, [*args.image_sizes, (4000, 3000)])
            workers = runner.workers()
        finally:
            runner.close()
    anchor = best.get("naive_batched")
    reference = vectors.get("per_item")
    rows = []
    for mode in args.modes:
        row: dict[str, Any] = {
            "mode": mode,
            "items": len(paths),
            "seconds": round(best[mode], 3),
            "items_per_s": round(len(paths) / best[mode], 1),
            "cpu_ms_per_item": round(cpu[mode] / len(paths) * 1000, 2),
            "x_naive_batched": round(anchor / best[mode], 2) if anchor else None,
            "startup_s": round(startup[mode], 2) if startup.get(mode) is not None else None,
        }
        if reference is not None and mode != "per_item":
            row["max_abs_diff_vs_per_item"] = float(np.abs(vectors[mode] - reference).max())
            row["min_cos_vs_per_item"] = round(float((vectors[mode] * reference).sum(axis=1).min()), 6)
        rows.append(row)
    return {
        "benchmark": "throughput",
        "model": label,
        "image_processor": type(encoder.image_processor).__name__,
        "spec": runner.spec.describe(),
        "device": str(encoder.device),
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "batch_size": args.batch_size,
        "workers": workers,
        "repeat": args.repeat,
        "image_sizes": ["x".join(map(str, s)) for s in args.image_sizes],
        "mean_jpeg_kb": round(float(np.mean([len(b) for b in blobs])) / 1024, 1),
        "results": rows,
        "skipped": runner.skipped,
        "pil_transfer": transfer,
    }


COLUMNS = [
    ("mode", "mode", ""),
    ("items", "items", "d"),
    ("seconds", "seconds", ".2f"),
    ("items_per_s", "items/s", ".1f"),
    ("x_naive_batched", "x naive", ".2f"),
    ("cpu_ms_per_item", "CPU ms/item", ".1f"),
    ("startup_s", "pool start s", ".2f"),
    ("min_cos_vs_per_item", "min cos", ".6f"),
    ("max_abs_diff_vs_per_item", "max|diff|", ".1e"),
]
TRANSFER_COLUMNS = [
    ("size", "decoded PIL image", ""),
    ("send_ms", "send to a worker ms (pickle + pipe)", ".2f"),
    ("preprocess_in_parent_ms", "preprocess in parent ms", ".2f"),
]


def tables(args: argparse.Namespace, result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The results table, then the parent-side cost of PIL inputs."""
    title = (
        f"throughput: {result['model']} ({result['image_processor']}, {result['spec']}) on {result['device']} "
        f"{result['dtype']}, batch {result['batch_size']}, {result['workers']} workers, "
        f"{result['environment'].get('torch_threads')} torch threads, {load_note(env)}"
    )
    return [
        format_table(title, result["results"], COLUMNS),
        format_table("PIL inputs: parent-side cost per image", result["pil_transfer"], TRANSFER_COLUMNS),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_benchmark(argv, parse_args, run, tables)


if __name__ == "__main__":
    sys.exit(main())
