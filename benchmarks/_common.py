"""Helpers shared by the benchmark scripts: argparse types, timing, environment facts, output.

Every script prints readable tables and then one JSON object: as the last line
of stdout, or into ``--json-out FILE`` (then only the tables are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

_T = TypeVar("_T")

Column = tuple[str, str, str]
"""``(key, header, format)``: one table column; ``format`` is a ``str.format`` spec such as ``".1f"``."""


# ------------------------------------------------------------------ argparse
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``10k`` and ``1m`` accepted)."""
    value = _scaled_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _scaled_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated positive integers, e.g. ``10000,100000`` or ``10k,100k``."""
    values = [positive_int(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--json-out``."""
    parser.add_argument("--json-out", type=Path, default=None, help="write the JSON result here instead of stdout")


def _scaled_int(text: str) -> int:
    raw = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(raw[-1:], 1)
    try:
        return int(raw[:-1] if scale > 1 else raw) * scale
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc


# -------------------------------------------------------------------- timing
def synchronize(device: str) -> None:
    """Wait for queued GPU work (``torch.cuda.synchronize``) when ``device`` is CUDA; no-op otherwise."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], _T], *, device: str = "cpu") -> tuple[float, _T]:
    """Run ``fn`` once and return ``(seconds, result)``, synchronising CUDA before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of latencies given in seconds, in milliseconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
        "n": int(ms.size),
    }


# --------------------------------------------------------------- environment
def environment(
    packages: Iterable[str] = ("mmrag", "torch", "transformers", "chromadb", "numpy", "pillow"),
) -> dict[str, Any]:
    """Facts that matter when comparing figures: CPUs, load average, package versions, torch threads."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[name] = metadata.version(name)
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


# -------------------------------------------------------------------- output
def format_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Render ``rows`` as a plain-text table with a title line; missing cells are blank."""
    header = [name for _, name, _ in columns]
    body = [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in body]
    return "\n".join(lines)


def emit(result: Mapping[str, Any], tables: Sequence[str], json_out: Path | None) -> None:
    """Print the tables, then the JSON result (last stdout line) or write it to ``json_out``."""
    result = {**result, "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    print("\n\n".join(tables), flush=True)
    text = json.dumps(result, ensure_ascii=False, default=str)
    if json_out is None:
        print(text, flush=True)
    else:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")
        print(f"\nJSON written to {json_out}", flush=True)


def load_note(env: Mapping[str, Any]) -> str:
    """``"load avg 0.42 on 2 CPUs"``: how busy the machine was when ``env`` (an :func:`environment`) was taken."""
    return f"load avg {env['loadavg_start'][0]:.2f} on {env['cpus']} CPUs"


def run_benchmark(
    argv: Sequence[str] | None,
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    tables: Callable[[argparse.Namespace, dict[str, Any], dict[str, Any]], Sequence[str]],
) -> int:
    """A script's ``main``: parse, run with the environment taken before and after, print tables and JSON.

    Args:
        argv: The command line (``None``: ``sys.argv``).
        parse_args: The script's parser; its namespace has ``json_out`` (:func:`add_output_args`).
        run: Runs the benchmark and returns its JSON result (``"environment"`` is added).
        tables: ``(args, result, env_before)`` to the tables to print.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    env = environment()
    result = run(args)
    result["environment"] = environment() | {"loadavg_start": env["loadavg_start"]}
    emit(result, tables(args, result, env), args.json_out)
    return 0


def log(message: str) -> None:
    """Progress line on stderr (keeps stdout to tables + JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and fmt:
        return format(value, fmt)
    return str(value)
