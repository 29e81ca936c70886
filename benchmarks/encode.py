"""Encoder throughput: mmrag's batched, pipelined ``embed_images``/``embed_texts`` vs. a per-item loop.

Modes, all on the same loaded model, device and dtype, on the same inputs:

``per_item``
    The baseline most embedding services run: for every item, decode it,
    one ``processor(images=img, return_tensors="pt")`` (or ``text=[t]``) call
    and one ``model.get_image_features(**inputs)`` forward, then normalise.
``batched``
    ``encoder.embed_*`` called once per ``--batch-size`` chunk: batched, but
    preparing and forwarding one after the other (no overlap).
``pipeline``
    One ``encoder.embed_*`` call over all items: batched, and the next batch is
    decoded/preprocessed on a worker thread while the current one runs.
``prepare_only``
    Only the CPU side (decode + image processor, or tokenizer), batched and
    without any forward: the ceiling the CPU puts on a fast accelerator.

Images are synthetic JPEGs of mixed sizes (640x480, 800x600, 1024x768 by
default) given as bytes, so decoding costs what it costs in production. Texts
are caption-like sentences of 1-4 clauses (a few to ~60 tokens). Weights are
random (``--arch`` builds a real-size architecture with
``mmrag.testing.build_random_model``, cached under ``~/.cache/mmrag-bench``):
speed does not depend on weight values.

Example:
    python benchmarks/encode.py                      # clip-b-32, CPU, 64 images, 256 texts
    python benchmarks/encode.py --arch clip-l-14 --device cuda --n-images 2048 --n-texts 8192 --batch-size 128
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
from collections.abc import Callable, Sequence
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
    synchronize,
    timed,
)

MODES = ("per_item", "batched", "pipeline", "prepare_only")
DEFAULT_CACHE = Path("~/.cache/mmrag-bench").expanduser()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    from mmrag.testing import ARCHS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        default="clip-b-32",
        help="random-weight real-size architecture (default: clip-b-32)",
    )
    source.add_argument("--model", default=None, help="a preset alias, hub id or local directory instead of --arch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float16", "bfloat16"),
        help="model dtype (default: mmrag's choice: float32 on CPU, fp16/bf16 on CUDA)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="encoder batch size (default: 32)")
    parser.add_argument("--n-images", type=non_negative_int, default=64, help="images to embed (default: 64)")
    parser.add_argument("--n-texts", type=non_negative_int, default=256, help="texts to embed (default: 256)")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=8, help="items each mode embeds untimed before timing (default: 8)"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="timed rounds (modes interleaved); the best round is reported (default: 1)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument(
        "--image-sizes", default="640x480,800x600,1024x768", help="WxH sizes the synthetic JPEGs cycle through"
    )
    parser.add_argument("--jpeg-quality", type=positive_int, default=90)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where --arch models are kept")
    add_output_args(parser)
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"unknown --modes {unknown}; choose from {MODES}")
    try:
        args.image_sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.image_sizes.split(",")]
    except ValueError:
        parser.error("--image-sizes must look like 640x480,800x600")
    return args


# ----------------------------------------------------------------------- inputs
def model_dir(arch: str, cache_dir: Path) -> Path:
    """The random-weight ``arch`` model, built once into ``cache_dir/arch`` (atomically) and reused."""
    from mmrag.testing import build_random_model

    target = cache_dir.expanduser() / arch
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log(f"building random-weight {arch} into {target} (once)")
    scratch = target.with_name(f"{arch}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    build_random_model(arch, scratch)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(scratch, target)
    return target


def synthetic_jpegs(n: int, sizes: Sequence[tuple[int, int]], *, quality: int, seed: int) -> list[bytes]:
    """``n`` JPEG-encoded photos-like images (smooth gradients + blobs + noise), cycling through ``sizes``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for index in range(n):
        width, height = sizes[index % len(sizes)]
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        channels = []
        for _ in range(3):
            fx, fy, phase = [*rng.uniform(0.002, 0.02, 2).tolist(), rng.uniform(0, 6.3)]
            channels.append(127 + 90 * np.sin(fx * x + fy * y + phase))
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
        blobs.append(buffer.getvalue())
    return blobs


def synthetic_texts(n: int, *, seed: int) -> list[str]:
    """``n`` caption-like texts of 1-4 joined captions (English and Chinese), deterministic."""
    from mmrag.testing import caption_corpus

    corpus = caption_corpus(seed)
    rng = random.Random(seed)
    return ["; ".join(rng.choice(corpus) for _ in range(1 + index % 4)) for index in range(n)]


# ------------------------------------------------------------------------ modes
def per_item_images(encoder: Any, blobs: Sequence[bytes]) -> np.ndarray:
    """Baseline: decode, one processor call and one forward per image."""
    import torch
    from PIL import Image

    from mmrag.encoders.transformers_dual import pooled_features

    out = []
    with torch.inference_mode():
        for blob in blobs:
            image = Image.open(io.BytesIO(blob)).convert("RGB")
            inputs = encoder.processor(images=image, return_tensors="pt")
            out.append(
                _forward_one(encoder, inputs, lambda kw: pooled_features(encoder.model.get_image_features(**kw)))
            )
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def per_item_texts(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """Baseline: one tokenizer call and one forward per text (same padding/truncation rules as mmrag)."""
    import torch

    from mmrag.encoders.transformers_dual import pooled_features

    padding = "max_length" if encoder.family in ("siglip", "siglip2") else True
    out = []
    with torch.inference_mode():
        for text in texts:
            inputs = encoder.processor(
                text=[text], padding=padding, truncation=True, max_length=encoder.max_text_length, return_tensors="pt"
            )
            out.append(_forward_one(encoder, inputs, lambda kw: pooled_features(encoder.model.get_text_features(**kw))))
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def _forward_one(encoder: Any, inputs: Any, forward: Callable[[dict[str, Any]], Any]) -> np.ndarray:
    import torch

    moved = {
        key: (value.to(encoder.device, encoder.dtype) if value.is_floating_point() else value.to(encoder.device))
        for key, value in inputs.items()
        if isinstance(value, torch.Tensor)
    }
    features = torch.nn.functional.normalize(forward(moved).float(), dim=-1)
    return features.cpu().numpy()


def batched(embed: Callable[[list[Any]], np.ndarray], items: Sequence[Any], batch_size: int) -> np.ndarray:
    """``embed`` once per chunk of ``batch_size``: each call is a single batch, so nothing overlaps."""
    chunks = [embed(list(items[i : i + batch_size])) for i in range(0, len(items), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def prepare_only_images(encoder: Any, blobs: Sequence[bytes], batch_size: int) -> int:
    """mmrag's CPU side only: ``resolve_image`` + ``prepare_images`` per batch, no forward."""
    from mmrag.inputs import resolve_image

    for start in range(0, len(blobs), batch_size):
        encoder.prepare_images(
            [resolve_image(b, limits=encoder.image_limits) for b in blobs[start : start + batch_size]]
        )
    return len(blobs)


def prepare_only_texts(encoder: Any, texts: Sequence[str], batch_size: int) -> int:
    """mmrag's CPU side only: ``prepare_texts`` per batch, no forward."""
    for start in range(0, len(texts), batch_size):
        encoder.prepare_texts(list(texts[start : start + batch_size]))
    return len(texts)


def padding_overhead(encoder: Any, texts: Sequence[str], batch_size: int) -> dict[str, Any]:
    """Real vs. padded tokens when ``texts`` are tokenised in batches of ``batch_size``, as mmrag does."""
    real = padded = 0
    for start in range(0, len(texts), batch_size):
        mask = encoder.prepare_texts(list(texts[start : start + batch_size]))["attention_mask"]
        real += int(mask.sum())
        padded += int(mask.numel())
    return {"tokens": real, "padded_tokens": padded, "ratio": round(padded / real, 2) if real else None}


def mode_runner(mode: str, modality: str, encoder: Any, batch_size: int) -> Callable[[Sequence[Any]], Any]:
    """The function that embeds a list of items of ``modality`` the way ``mode`` does."""
    embed = encoder.embed_images if modality == "image" else encoder.embed_texts
    if mode == "per_item":
        return lambda items: (per_item_images if modality == "image" else per_item_texts)(encoder, items)
    if mode == "batched":
        return lambda items: batched(embed, items, batch_size)
    if mode == "pipeline":
        return lambda items: embed(list(items), batch_size=batch_size)
    prepare = prepare_only_images if modality == "image" else prepare_only_texts
    return lambda items: prepare(encoder, items, batch_size)


# ------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, build the inputs, time every mode per modality; return the JSON result."""
    import torch

    import mmrag

    if args.threads:
        torch.set_num_threads(args.threads)
    source = args.model if args.model else str(model_dir(args.arch, args.cache_dir))
    log(f"loading {source} on {args.device}")
    encoder = mmrag.load_encoder(source, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    if not hasattr(encoder, "model") or not hasattr(encoder, "processor"):
        raise SystemExit("the per-item baseline needs a transformers dual encoder (with .model and .processor)")
    log(f"generating {args.n_images} JPEGs and {args.n_texts} texts")
    inputs = {
        "image": synthetic_jpegs(args.n_images, args.image_sizes, quality=args.jpeg_quality, seed=args.seed),
        "text": synthetic_texts(args.n_texts, seed=args.seed),
    }
    warm = {
        "image": synthetic_jpegs(args.warmup, args.image_sizes, quality=args.jpeg_quality, seed=args.seed + 1),
        "text": synthetic_texts(args.warmup, seed=args.seed + 1),
    }
    rows: list[dict[str, Any]] = []
    for modality, items in inputs.items():
        if not items:
            continue
        runners = {mode: mode_runner(mode, modality, encoder, args.batch_size) for mode in args.modes}
        for runner in runners.values():
            if warm[modality]:
                runner(warm[modality])
        best: dict[str, float] = {}
        forwards: dict[str, int] = {}
        vectors: dict[str, np.ndarray] = {}
        for round_ in range(args.repeat):
            for mode, runner in runners.items():
                log(f"{modality}s: {mode} (round {round_ + 1}/{args.repeat})")
                before = encoder.forward_count
                seconds, out = timed(lambda runner=runner, items=items: runner(items), device=args.device)
                forwards[mode] = len(items) if mode == "per_item" else encoder.forward_count - before
                best[mode] = min(seconds, best.get(mode, float("inf")))
                if isinstance(out, np.ndarray):
                    vectors[mode] = out
        baseline = best.get("per_item")
        for mode in args.modes:
            row: dict[str, Any] = {
                "modality": modality,
                "mode": mode,
                "items": len(items),
                "seconds": round(best[mode], 4),
                "items_per_s": round(len(items) / best[mode], 2),
                "forwards": forwards[mode],
                "speedup_vs_per_item": round(baseline / best[mode], 2) if baseline and mode != "prepare_only" else None,
            }
            if "per_item" in vectors and mode in vectors and mode != "per_item":
                row["max_abs_diff_vs_per_item"] = float(np.abs(vectors[mode] - vectors["per_item"]).max())
            rows.append(row)
    synchronize(args.device)
    encoder.close()
    return {
        "benchmark": "encode",
        "model": args.model or f"random:{args.arch}",
        "model_id": encoder.model_id,
        "family": encoder.family,
        "dim": encoder.dim,
        "device": str(encoder.device),
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "batch_size": args.batch_size,
        "warmup_items": args.warmup,
        "repeat": args.repeat,
        "image_sizes": ["x".join(map(str, s)) for s in args.image_sizes],
        "mean_jpeg_kb": round(float(np.mean([len(b) for b in inputs["image"]])) / 1024, 1) if inputs["image"] else None,
        "text_padding": padding_overhead(encoder, inputs["text"], args.batch_size),
        "results": rows,
    }


COLUMNS = [
    ("modality", "modality", ""),
    ("mode", "mode", ""),
    ("items", "items", "d"),
    ("seconds", "seconds", ".2f"),
    ("items_per_s", "items/s", ".1f"),
    ("speedup_vs_per_item", "x per_item", ".2f"),
    ("forwards", "forwards", "d"),
    ("max_abs_diff_vs_per_item", "max|diff|", ".1e"),
]


def tables(args: argparse.Namespace, result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The results table, with the text batches' padding under it."""
    title = (
        f"encode: {result['model']} ({result['family']}, dim {result['dim']}) on {result['device']} "
        f"{result['dtype']}, batch {result['batch_size']}, {result['environment'].get('torch_threads')} torch threads, "
        f"{load_note(env)}"
    )
    table = format_table(title, result["results"], COLUMNS)
    pad = result["text_padding"]
    if pad["ratio"]:
        table += (
            f"\ntext batches hold {pad['padded_tokens']} tokens for {pad['tokens']} real ones ({pad['ratio']}x padding)"
        )
    return [table]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_benchmark(argv, parse_args, run, tables)


if __name__ == "__main__":
    sys.exit(main())
