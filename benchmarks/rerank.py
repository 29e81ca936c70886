"""Reranker throughput: candidates/s per backend and modality pair, batched vs. a per-pair loop.

For each backend, a query is scored against ``--n-candidates`` candidates:

``text->image``
    a caption query against synthetic JPEGs (given as bytes, so decoding counts);
``image->text``
    a JPEG query against captions;
``text->text``
    a short query against passages of about ``--passage-words`` words.

Modes, on the same loaded model and inputs:

``batched``
    ``Reranker.score``: ``ceil(n / batch_size)`` forwards, next batch prepared
    on a worker thread, an image query through the vision tower once.
``naive``
    what a straightforward transformers loop does: per candidate, decode, one
    ``processor(images=..., text=...)`` / ``tokenizer(query, passage)`` call and
    one full ``model(...)`` forward (ITM and cross-encoders only).

``max|diff|`` compares the two modes' log-odds (parity at real sizes).
Weights are random (``mmrag.testing.build_random_reranker`` /
``build_random_model``, cached under ``~/.cache/mmrag-bench``): speed does not
depend on weight values. Names that are not architectures below are loaded as
they are (aliases, hub ids, local directories).

Architectures: ITM ``blip-itm-base``, ``blip-itm-large``, ``blip2-itm-vit-b``
(BLIP-2 Q-Former on a ViT-B/16, CPU-sized), ``blip2-itm-vit-g`` (the real
1.2B model: use ``--device cuda``); cross-encoders ``bge-reranker-base``,
``bge-reranker-large``, ``bge-reranker-v2-m3``; dual encoders: the
``mmrag.testing.ARCHS`` keys, e.g. ``clip-b-32``, ``siglip-b-16-224``.

Example:
    python benchmarks/rerank.py                                     # CPU, modest sizes
    python benchmarks/rerank.py --backends blip-itm-base --n-candidates 8
    python benchmarks/rerank.py --device cuda --backends blip2-itm-vit-g,bge-reranker-v2-m3 \\
        --n-candidates 256 --batch-size 64
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
    timed,
)

MODES = ("batched", "naive")
DEFAULT_BACKENDS = "blip-itm-base,blip2-itm-vit-b,bge-reranker-base,clip-b-32"
DEFAULT_CACHE = Path("~/.cache/mmrag-bench").expanduser()
PAIRS_BY_KIND = {
    "blip_itm": ("text->image", "image->text"),
    "blip2_itm": ("text->image", "image->text"),
    "cross_encoder": ("text->text",),
    "dual": ("text->image", "image->text", "text->text"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default=DEFAULT_BACKENDS,
        help=f"comma-separated architectures or model names (default: {DEFAULT_BACKENDS})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float16", "bfloat16"),
        help="model dtype (default: mmrag's: float32 on CPU, float16 on CUDA)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="pairs per forward (default: 8)")
    parser.add_argument("--n-candidates", type=positive_int, default=16, help="candidates per query (default: 16)")
    parser.add_argument(
        "--passage-words", type=positive_int, default=120, help="words per text->text passage (default: 120)"
    )
    parser.add_argument("--pairs", default=None, help="comma-separated subset of text->image,image->text,text->text")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=2, help="candidates each mode scores untimed first (default: 2)"
    )
    parser.add_argument("--repeat", type=positive_int, default=1, help="timed rounds; the best is reported")
    parser.add_argument("--image-size", default="640x480", help="WxH of the synthetic JPEGs (default: 640x480)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where random models are kept")
    add_output_args(parser)
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if sorted(set(args.modes) - set(MODES)) or not args.modes:
        parser.error(f"--modes must be a subset of {MODES}")
    args.pairs = None if args.pairs is None else [p.strip() for p in args.pairs.split(",") if p.strip()]
    try:
        args.image_size = tuple(int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        parser.error("--image-size must look like 640x480")
    return args


# ----------------------------------------------------------------------- models
def model_source(name: str, cache_dir: Path) -> str:
    """A random-weight architecture built once into ``cache_dir/name``, or ``name`` itself."""
    from mmrag.testing import ARCHS, RERANKER_ARCHS, build_random_model, build_random_reranker

    if name in RERANKER_ARCHS:
        build: Callable[[str, Path], Path] | None = build_random_reranker
    elif name in ARCHS:
        build = build_random_model
    else:
        return name
    target = cache_dir.expanduser() / name
    if (target / "config.json").is_file() and any(target.glob("model*.safetensors*")):
        return str(target)
    log(f"building random-weight {name} into {target} (once)")
    scratch = target.with_name(f"{name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    build(name, scratch)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(scratch, target)
    return str(target)


# ----------------------------------------------------------------------- inputs
def synthetic_jpegs(n: int, size: tuple[int, int], *, seed: int) -> list[bytes]:
    """``n`` photo-like JPEGs (gradients + noise) of ``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(n):
        channels = [127 + 90 * np.sin(rng.uniform(0.002, 0.02) * x + rng.uniform(0.002, 0.02) * y + rng.uniform(0, 6))
                    for _ in range(3)]  # fmt: skip  # aligned by hand
        pixels = np.clip(np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def synthetic_texts(n: int, words: int, *, seed: int) -> list[str]:
    """``n`` texts of about ``words`` words made of caption-corpus sentences."""
    from mmrag.testing import caption_corpus

    corpus = [s for s in caption_corpus(seed) if s.isascii()]
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p.split()) for p in parts) < words:
            parts.append(rng.choice(corpus))
        texts.append(". ".join(parts))
    return texts


def scenario(pair: str, n: int, args: argparse.Namespace, seed: int) -> tuple[Any, list[Any]]:
    """``(query, candidates)`` for a modality pair."""
    if pair == "text->image":
        return "a photo of a red car next to a tree", synthetic_jpegs(n, args.image_size, seed=seed)
    if pair == "image->text":
        return synthetic_jpegs(1, args.image_size, seed=seed + 99)[0], synthetic_texts(n, 12, seed=seed)
    return "where is the small red circle", synthetic_texts(n, args.passage_words, seed=seed)


# ------------------------------------------------------------------------ naive
def naive_log_odds(backend: Any, query: Any, candidates: Sequence[Any], pair: str) -> np.ndarray:
    """Per candidate: decode, one processor/tokenizer call, one full model forward (plain transformers)."""
    import torch
    from PIL import Image

    def image(item: Any) -> Any:
        return Image.open(io.BytesIO(item)).convert("RGB")

    out = []
    with torch.inference_mode():
        for candidate in candidates:
            if backend.kind == "cross_encoder":
                inputs = backend.tokenizer(query, candidate, truncation=True, max_length=backend.max_length,
                                           return_tensors="pt")  # fmt: skip  # aligned by hand
                logits = backend.model(**_moved(inputs, backend)).logits.float()
            else:
                picture, text = (image(candidate), query) if pair == "text->image" else (image(query), candidate)
                inputs = backend.processor(images=picture, text=text, return_tensors="pt")
                if backend.kind == "blip_itm":
                    logits = backend.model(**_moved(inputs, backend), use_itm_head=True).itm_score.float()
                else:
                    logits = backend.model(**_moved(inputs, backend), use_image_text_matching_head=True)
                    logits = logits.logits_per_image.float()
            value = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            out.append(float(value[0]))
    return np.asarray(out)


def _moved(inputs: Any, backend: Any) -> dict[str, Any]:
    from mmrag.rerank.base import move_batch

    return move_batch(inputs, backend.device, backend.dtype)


# ------------------------------------------------------------------------- main
def bench_backend(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Load one backend and time every requested pair and mode."""
    from mmrag.rerank import load_reranker

    source = model_source(name, args.cache_dir)
    log(f"loading {name} ({source}) on {args.device}")
    reranker = load_reranker(source, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    backend = reranker.backends[0]
    rows = []
    for pair in PAIRS_BY_KIND[backend.kind]:
        if args.pairs and pair not in args.pairs:
            continue
        query, candidates = scenario(pair, args.n_candidates, args, args.seed)
        warm_query, warm = scenario(pair, args.warmup, args, args.seed + 1)
        runners: dict[str, Callable[[Any, list[Any]], np.ndarray]] = {"batched": reranker.log_odds}
        if "naive" in args.modes and backend.kind != "dual":
            runners["naive"] = lambda q, c, pair=pair: naive_log_odds(backend, q, c, pair)
        runners = {mode: runner for mode, runner in runners.items() if mode in args.modes}
        for runner in runners.values():
            if warm:
                runner(warm_query, warm)
        best: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        forwards: dict[str, int] = {}
        for round_ in range(args.repeat):
            for mode, runner in runners.items():
                log(f"{name} {pair}: {mode} (round {round_ + 1}/{args.repeat})")
                before = reranker.forward_count
                seconds, outputs[mode] = timed(lambda runner=runner: runner(query, candidates), device=args.device)  # noqa: B023 - called at once
                forwards[mode] = reranker.forward_count - before if mode == "batched" else len(candidates)
                best[mode] = min(seconds, best.get(mode, float("inf")))
        for mode in runners:
            row: dict[str, Any] = {
                "backend": name,
                "kind": backend.kind,
                "pair": pair,
                "mode": mode,
                "candidates": len(candidates),
                "seconds": round(best[mode], 3),
                "candidates_per_s": round(len(candidates) / best[mode], 2),
                "forwards": forwards[mode],
            }
            if mode == "batched" and "naive" in best:
                row["speedup_vs_naive"] = round(best["naive"] / best["batched"], 2)
                row["max_abs_diff_vs_naive"] = float(np.abs(outputs["batched"] - outputs["naive"]).max())
            rows.append(row)
    reranker.close()
    return rows


COLUMNS = [
    ("backend", "backend", ""),
    ("pair", "pair", ""),
    ("mode", "mode", ""),
    ("candidates", "n", "d"),
    ("seconds", "seconds", ".2f"),
    ("candidates_per_s", "cand/s", ".2f"),
    ("speedup_vs_naive", "x naive", ".2f"),
    ("forwards", "forwards", "d"),
    ("max_abs_diff_vs_naive", "max|diff|", ".1e"),
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every chosen backend, both modes."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return {
        "benchmark": "rerank",
        "device": args.device,
        "dtype": args.dtype or "default",
        "batch_size": args.batch_size,
        "n_candidates": args.n_candidates,
        "image_size": "x".join(map(str, args.image_size)),
        "passage_words": args.passage_words,
        "repeat": args.repeat,
        "results": [row for name in args.backends for row in bench_backend(name, args)],
    }


def tables(args: argparse.Namespace, result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The table to print."""
    title = (
        f"rerank on {args.device}, batch {args.batch_size}, {args.n_candidates} candidates/query, "
        f"{load_note(env)}, torch threads {result['environment'].get('torch_threads')}"
    )
    return [format_table(title, result["results"], COLUMNS)]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_benchmark(argv, parse_args, run, tables)


if __name__ == "__main__":
    sys.exit(main())
