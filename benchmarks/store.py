"""MultimodalStore throughput and latency: folder indexing, raw writes, and search at 10k-100k items.

Three parts (``--parts`` picks a subset):

``index``
    ``store.index_folder`` end to end on a folder written by
    ``mmrag.demo_data.write_sample_folder`` (N images + 2N caption files), with
    a small real model: the bundled ``demo`` model when it is installed, else
    a tiny random CLIP from ``mmrag.testing.build_tiny_model`` (cached). Then
    the same call again, which must embed nothing (only stat + compare).
``write``
    Store writes side by side with raw Chroma: ``store.add_texts`` (unique
    texts) and ``store.add_images`` (tiny random pixel arrays) with a stub
    encoder that hands back pre-computed random unit vectors in batches of
    ``--encoder-batch`` (so the whole add path runs: checks, ids, the lookup
    of stored ids, buffering, Chroma writes), against raw ``collection.add``
    of the same ids, vectors and documents in the client's max batch size
    into two plain collections of the same client. Chunk by chunk, so
    background load hits both alike; ``store / raw`` is the ratio of the
    rates. The one shared collection of the ``search`` part is filled with
    raw ``add`` too.
``search``
    Latency p50/p99 at each ``--sizes`` total (the collections are filled by
    the ``write`` step, half images and half texts by default), with
    pre-computed random query vectors: the store's merged search over both
    modalities, its modality search (one collection), and the alternative
    design of one collection queried with ``where={"modality": ...}`` (and
    unfiltered). Store searches go through ``store.search`` with a stub
    encoder that returns the query vector; the one-collection design goes
    through the store's own ``CollectionPair.query`` pointed at the shared collection.
    Scenarios are interleaved query by query, so background load hits them
    alike.

Example:
    python benchmarks/store.py --sizes 2000 --index-n 50     # quick check
    python benchmarks/store.py --sizes 10000,100000         # the figures in README.md
    python benchmarks/store.py --parts write,search --sizes 10000,50000 --queries 100   # issue #16's
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _common import (
    add_output_args,
    emit,
    environment,
    format_table,
    int_list,
    latency_ms,
    load_note,
    log,
    non_negative_int,
    positive_int,
    timed,
)

if TYPE_CHECKING:
    from mmrag.inputs import Modality

PARTS = ("index", "write", "search")
DEFAULT_CACHE = Path("~/.cache/mmrag-bench").expanduser()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument(
        "--index-n",
        type=positive_int,
        default=100,
        help="sample images for the index part; 2 caption files each (default: 100)",
    )
    parser.add_argument(
        "--index-model",
        default=None,
        help="model for the index part (default: 'demo' if bundled, else a tiny random CLIP)",
    )
    parser.add_argument("--index-image-size", type=positive_int, default=64, help="sample image side in px")
    parser.add_argument("--device", default="cpu", help="device of the index-part model (default: cpu)")
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=[10_000, 100_000],
        help="total stored items at which search is measured (default: 10000,100000)",
    )
    parser.add_argument("--dim", type=positive_int, default=512, help="vector dimension (default: 512)")
    parser.add_argument("--image-fraction", type=float, default=0.5, help="share of items that are images")
    parser.add_argument("--k", type=positive_int, default=10, help="hits per search (default: 10)")
    parser.add_argument("--queries", type=positive_int, default=200, help="timed queries per scenario and size")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed queries per scenario and size")
    parser.add_argument("--chunk", type=positive_int, default=5000, help="vectors generated per write step")
    parser.add_argument("--encoder-batch", type=positive_int, default=64, help="stub encoder batch (default: 64)")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary databases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the tiny model is kept")
    add_output_args(parser)
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts must be a subset of {PARTS}")
    if not 0.0 < args.image_fraction < 1.0:
        parser.error("--image-fraction must be between 0 and 1")
    if "search" in args.parts and "write" not in args.parts:
        args.parts.append("write")  # search needs the filled collections
    args.sizes = sorted(set(args.sizes))
    return args


# ------------------------------------------------------------------ encoders
class StubEncoder:
    """The attributes ``MultimodalStore`` uses; ``embed_*`` hand back pre-computed vectors.

    Lets the store be timed without any model: set ``stub.queue`` to the
    vectors of the items about to be added (consumed in order), or
    ``stub.query`` to a query vector and search with any text.
    """

    def __init__(self, dim: int, batch_size: int = 64) -> None:
        from mmrag.inputs import ImageLimits

        self.model_id = "mmrag-bench-stub"
        self.family = "stub"
        self.dim = dim
        self.batch_size = batch_size
        self.image_limits = ImageLimits()
        self.preprocessing = "stub"
        self.query = np.zeros(dim, dtype=np.float32)
        self.queue: np.ndarray | None = None

    @property
    def signature(self) -> dict[str, str | int]:
        """Same keys as ``Encoder.signature``."""
        return {"model_id": self.model_id, "family": self.family, "dim": self.dim, "preprocessing": self.preprocessing}

    def embed_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """The next rows of ``queue`` (else ``query``), one per text."""
        return self._vectors(len(texts))

    def embed_images(self, images: Sequence[Any], *, batch_size: int | None = None, limits: Any = None) -> np.ndarray:
        """The next rows of ``queue`` (else ``query``), one per image."""
        return self._vectors(len(images))

    def _vectors(self, n: int) -> np.ndarray:
        if self.queue is None:
            return np.tile(self.query, (n, 1))
        rows, self.queue = self.queue[:n], self.queue[n:]
        return rows


def index_encoder(args: argparse.Namespace) -> tuple[Any, str]:
    """The small real model for the index part, and how it was chosen."""
    import mmrag
    from mmrag.encoders.presets import get_preset
    from mmrag.testing import build_tiny_model

    if args.index_model:
        return mmrag.load_encoder(args.index_model, device=args.device), args.index_model
    demo = get_preset("demo")
    local = demo.local_path() if demo else None
    if local and (Path(local) / "config.json").is_file():
        return mmrag.load_encoder("demo", device=args.device), "demo (bundled)"
    path = args.cache_dir.expanduser() / "tiny-clip"
    if not (path / "config.json").is_file():
        log(f"building tiny random CLIP into {path} (once)")
        build_tiny_model("clip", path)
    return mmrag.load_encoder(str(path), device=args.device), "tiny random CLIP (demo model not bundled)"


# --------------------------------------------------------------------- parts
def bench_index(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``index_folder`` on a fresh sample folder, then the unchanged re-run."""
    from mmrag.demo_data import write_sample_folder
    from mmrag.store import MultimodalStore

    encoder, chosen = index_encoder(args)
    folder = workdir / "samples"
    write_s, files = timed(
        lambda: write_sample_folder(folder, n=args.index_n, seed=args.seed, image_size=args.index_image_size)
    )
    log(f"index: {len(files)} files written in {write_s:.1f}s; indexing with {chosen}")
    with MultimodalStore(encoder, path=workdir / "db_index", collection="bench") as store:
        first_s, first = timed(lambda: store.index_folder(folder, show_progress=False))
        first_forwards = encoder.forward_count
        rerun_s, rerun = timed(lambda: store.index_folder(folder, show_progress=False))
        rerun_forwards = encoder.forward_count - first_forwards
        stored = store.count()
    if rerun.embedded:
        log(f"WARNING: the unchanged re-run embedded {rerun.embedded} items")
    encoder.close()
    rows = [
        {
            "run": "first",
            "files": len(files),
            "embedded": first.embedded,
            "added": first.added,
            "forwards": first_forwards,
            "seconds": round(first_s, 3),
            "items_per_s": round(len(first.ids) / first_s, 1),
        },
        {
            "run": "re-run (unchanged)",
            "files": len(files),
            "embedded": rerun.embedded,
            "skipped": rerun.skipped,
            "forwards": rerun_forwards,
            "seconds": round(rerun_s, 3),
            "items_per_s": round(len(rerun.ids) / rerun_s, 1),
        },
    ]
    return {
        "model": chosen,
        "model_id": encoder.model_id,
        "dim": encoder.dim,
        "batch_size": encoder.batch_size,
        "images": args.index_n,
        "texts": 2 * args.index_n,
        "stored": stored,
        "failed": len(first.failed),
        "rows": rows,
    }


class SearchBench:
    """The store's two collections and one shared collection in the same embedded Chroma, filled alike."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        from mmrag.store import MultimodalStore

        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.stub = StubEncoder(args.dim, args.encoder_batch)
        self.store = MultimodalStore(self.stub, path=workdir / "db_search", collection="bench")
        client = self.store.client
        self.max_batch = int(client.get_max_batch_size())

        def plain(name: str) -> Any:
            return client.get_or_create_collection(
                name=name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )

        single = plain("bench_single")
        self.raw = {"image": plain("raw_images"), "text": plain("raw_texts")}
        # The store's own write/query code, pointed at one collection for both modalities.
        from mmrag.store.collection_pair import CollectionPair

        self.single = object.__new__(CollectionPair)
        self.single.name = "bench_single"
        self.single._collections = {"image": single, "text": single}
        self.single.write_batch = self.store._collections.write_batch
        self.counts = {"image": 0, "text": 0}
        from mmrag.testing import caption_corpus

        self.corpus = caption_corpus(args.seed)

    def close(self) -> None:
        """Release the store's path lock."""
        self.store.close()

    def unit_vectors(self, n: int) -> np.ndarray:
        """``n`` random float32 unit vectors."""
        vectors = self.rng.standard_normal((n, self.args.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def fill_to(self, total: int) -> dict[str, Any]:
        """Write items until the store holds ``total``; returns the write timings of this stage."""
        want_images = round(total * self.args.image_fraction)
        targets: dict[Modality, int] = {"image": want_images, "text": total - want_images}
        stage = {"store": 0.0, "raw": 0.0, "single": 0.0}
        written = 0
        for modality, target in targets.items():
            while self.counts[modality] < target:
                n = min(self.args.chunk, target - self.counts[modality])
                items = self.items(modality, self.counts[modality], n)
                vectors = self.unit_vectors(n)
                self.stub.queue = vectors
                add = self.store.add_images if modality == "image" else self.store.add_texts
                seconds, report = timed(lambda: add(items))  # noqa: B023 - called at once
                self.stub.queue = None
                if report.embedded != n:
                    log(f"WARNING: the store embedded {report.embedded} of {n} items")
                stage["store"] += seconds
                documents = items if modality == "text" else None
                raw, single = self.raw[modality], self.single[modality]
                seconds, _ = timed(lambda: self.raw_add(raw, report.ids, vectors, modality, documents))  # noqa: B023 - called at once
                stage["raw"] += seconds
                seconds, _ = timed(lambda: self.raw_add(single, report.ids, vectors, modality, documents))  # noqa: B023 - called at once
                stage["single"] += seconds
                self.counts[modality] += n
                written += n
            log(f"write: {modality}s at {self.counts[modality]}")
        rates = {d: round(written / s, 1) if s else None for d, s in stage.items()}
        return {
            "to_total": total,
            "written": written,
            "max_batch": self.max_batch,
            **{f"{d}_s": round(s, 2) for d, s in stage.items()},
            **{f"{d}_items_per_s": rate for d, rate in rates.items()},
            "store_vs_raw": round(stage["raw"] / stage["store"], 2) if stage["store"] else None,
        }

    def raw_add(
        self, collection: Any, ids: list[str], vectors: np.ndarray, modality: Modality, documents: list[Any] | None
    ) -> None:
        """Plain ``collection.add`` in the client's max batch size (the baseline)."""
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            collection.add(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                metadatas=[{"modality": modality}] * len(ids[start:end]),
                documents=documents[start:end] if documents is not None else None,
            )

    def items(self, modality: Modality, start: int, n: int) -> list[Any]:
        """``n`` unique texts (captions, numbered) or tiny random pixel arrays."""
        if modality == "text":
            return [f"{self.corpus[i % len(self.corpus)]} (#{i})" for i in range(start, start + n)]
        return list(self.rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8))

    def scenarios(self) -> dict[str, Callable[[np.ndarray], list[Any]]]:
        """Name -> one search with a given query vector."""

        k = self.args.k

        def store_search(modality: Modality | None) -> Callable[[np.ndarray], list[Any]]:
            def search(vector: np.ndarray) -> list[Any]:
                self.stub.query = vector
                return self.store.search("query", k=k, modality=modality)

            return search

        def single_query(modality: Modality | None) -> Callable[[np.ndarray], list[Any]]:
            where = {"modality": modality} if modality else None
            return lambda vector: self.single.query(modality or "image", vector, k, where)

        def one_after_the_other(vector: np.ndarray) -> list[Any]:
            from mmrag.store.fusion import merge_ranked

            collections = self.store._collections
            return merge_ranked([collections.query(m, vector, k, None) for m in ("image", "text")], k)

        return {
            "store: both modalities (2 collections, merged)": store_search(None),
            "both, one collection after the other (before #16)": one_after_the_other,
            "store: modality=image (1 collection)": store_search("image"),
            "store: modality=text (1 collection)": store_search("text"),
            "one collection: where modality=image": single_query("image"),
            "one collection: where modality=text": single_query("text"),
            "one collection: unfiltered": single_query(None),
            "chroma count() alone (inside every query)": lambda vector: self.store._collections["image"].count(),
        }

    def measure(self, total: int) -> list[dict[str, Any]]:
        """Latency of every scenario at the current size, queries interleaved across scenarios."""
        scenarios = self.scenarios()
        samples: dict[str, list[float]] = {name: [] for name in scenarios}
        queries = self.unit_vectors(self.args.warmup + self.args.queries)
        for index, vector in enumerate(queries):
            for name, search in scenarios.items():
                start = time.perf_counter()
                hits = search(vector)
                elapsed = time.perf_counter() - start
                if index >= self.args.warmup:
                    samples[name].append(elapsed)
                if index == 0 and isinstance(hits, list) and len(hits) != self.args.k:
                    log(f"WARNING: {name} returned {len(hits)} hits, expected {self.args.k}")
        rows = [{"items": total, "scenario": name, **latency_ms(values)} for name, values in samples.items()]
        store_p50 = {
            m: next(r["p50_ms"] for r in rows if r["scenario"].startswith(f"store: modality={m}"))
            for m in ("image", "text")
        }
        for row in rows:
            if row["scenario"].startswith(("store: both", "both, one")):
                row["p50_vs_store_modality"] = round(row["p50_ms"] / (sum(store_p50.values()) / 2), 2)
            for modality, base in store_p50.items():
                if row["scenario"] == f"one collection: where modality={modality}":
                    row["p50_vs_store_modality"] = round(row["p50_ms"] / base, 2)
        return rows


def bench_store(args: argparse.Namespace, workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fill to each size (write timings), measure search there; returns (write rows, search rows)."""
    bench = SearchBench(args, workdir)
    write_rows: list[dict[str, Any]] = []
    search_rows: list[dict[str, Any]] = []
    try:
        for total in args.sizes:
            write_rows.append(bench.fill_to(total))
            if "search" in args.parts:
                log(f"search: {args.warmup}+{args.queries} queries per scenario at {total} items")
                search_rows += bench.measure(total)
    finally:
        bench.close()
    return write_rows, search_rows


# ---------------------------------------------------------------------- main
INDEX_COLUMNS = [
    ("run", "run", ""),
    ("files", "files", "d"),
    ("embedded", "embedded", "d"),
    ("forwards", "forwards", "d"),
    ("seconds", "seconds", ".2f"),
    ("items_per_s", "items/s", ".1f"),
]
WRITE_COLUMNS = [
    ("to_total", "filled to", "d"),
    ("written", "written", "d"),
    ("store_items_per_s", "store items/s", ".0f"),
    ("raw_items_per_s", "raw add items/s", ".0f"),
    ("store_vs_raw", "store / raw", ".2f"),
    ("single_items_per_s", "1 collection items/s", ".0f"),
    ("store_s", "store s", ".1f"),
    ("raw_s", "raw s", ".1f"),
]
SEARCH_COLUMNS = [
    ("items", "items", "d"),
    ("scenario", "scenario", ""),
    ("p50_ms", "p50 ms", ".2f"),
    ("p99_ms", "p99 ms", ".2f"),
    ("mean_ms", "mean ms", ".2f"),
    ("p50_vs_store_modality", "p50 / store modality", ".2f"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    env = environment(("mmrag", "chromadb", "numpy", "torch", "transformers"))
    result: dict[str, Any] = {
        "benchmark": "store",
        "dim": args.dim,
        "k": args.k,
        "image_fraction": args.image_fraction,
        "queries": args.queries,
        "environment": env,
    }
    tables = []
    load = load_note(env)
    workdir = Path(tempfile.mkdtemp(prefix="mmrag-bench-store-", dir=args.workdir))
    try:
        if "index" in args.parts:
            index = bench_index(args, workdir)
            result["index"] = index
            tables.append(
                format_table(
                    f"index_folder: {index['images']} images + {index['texts']} texts, {index['model']} "
                    f"(dim {index['dim']}, batch {index['batch_size']}), {load}",
                    index["rows"],
                    INDEX_COLUMNS,
                )
            )
        if "write" in args.parts:
            writes, searches = bench_store(args, workdir)
            result["write"] = writes
            tables.append(
                format_table(
                    f"store writes (add_texts/add_images, stub encoder batch {args.encoder_batch}) vs raw "
                    f"collection.add (max batch {writes[0].get('max_batch') if writes else '?'}), "
                    f"dim {args.dim}, {load}",
                    writes,
                    WRITE_COLUMNS,
                )
            )
            if searches:
                result["search"] = searches
                tables.append(
                    format_table(
                        f"search latency, k={args.k}, {args.queries} queries/scenario, "
                        f"images={args.image_fraction:.0%}, {load}",
                        searches,
                        SEARCH_COLUMNS,
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(result, tables, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
