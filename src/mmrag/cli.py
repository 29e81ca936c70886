"""The ``mmrag`` command line: index folders, search them, list models, run the demo.

Every user error prints one line (``mmrag: error: ...``) and exits with status
2; nothing prints a traceback unless ``MMRAG_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmrag.server.settings import add_load_arguments, load_options_from_args

if TYPE_CHECKING:
    from mmrag.encoders import Encoder
    from mmrag.options import LoadOptions
    from mmrag.store import Hit, MultimodalStore

__all__ = ["main"]

DEFAULT_DB = "./mmrag_db"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmrag`` command.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 when an index run had failures,
        2 on a user error.

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("mmrag: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing: one line, no traceback
        if os.environ.get("MMRAG_DEBUG"):
            raise
        print(f"mmrag: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrag", description="Local multimodal embeddings for RAG: index images and texts, search them."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    index = commands.add_parser("index", help="index folders of images and .txt/.md texts")
    index.add_argument("paths", nargs="+", metavar="PATH", help="folders to index")
    _store_options(index)
    index.add_argument("--no-recursive", action="store_true", help="do not walk sub-folders")
    index.add_argument(
        "--follow-links", action="store_true", help="also follow symbolic links that leave the folder (off: skipped)"
    )
    index.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="local|ADDRESS",
        help="embed with Ray actors (one per GPU) into --chroma-url: a local Ray, or a cluster's address",
    )
    index.set_defaults(handler=_cmd_index)

    search = commands.add_parser("search", help="search the store with a text, an image, or both (composed)")
    search.add_argument("query", nargs="?", help="a text query (with --image: the text composed with the image)")
    search.add_argument(
        "--image", metavar="PATH_OR_URL", help="search with this image; with a text too, a composed query"
    )
    search.add_argument("--k", type=_positive_int, default=10, help="number of results (default 10)")
    search.add_argument(
        "--modality", choices=("image", "text", "pair"), help="only images, only texts or only image-text pairs"
    )
    _store_options(search)
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.set_defaults(handler=_cmd_search)

    models = commands.add_parser("models", help="list the preset models")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=_cmd_models)

    demo = commands.add_parser("demo", help="generate sample data, index it and search it in all four directions")
    demo.add_argument("--dir", default="./mmrag_demo", help="where samples, database and HTML go")
    demo.add_argument("--model", default="demo", help="model to use (default: the bundled demo model)")
    demo.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    demo.set_defaults(handler=_cmd_demo)

    from mmrag.server import add_serve_command  # light import: FastAPI is only needed to run it

    add_serve_command(commands)
    return parser


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database directory (default {DEFAULT_DB})")
    parser.add_argument("--chroma-url", metavar="http://HOST:PORT", help="use a Chroma server instead of --db")
    parser.add_argument("--collection", default="mmrag", help="collection name (default mmrag)")
    parser.add_argument(
        "--model", help="model alias, hub id or directory (default: the store's model, else siglip2-base-224)"
    )
    add_load_arguments(parser)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _open_store(args: argparse.Namespace, *, must_exist: bool, lazy: bool = False) -> MultimodalStore:
    """Open the store named by ``--db``/``--collection`` with the ``--model`` (or recorded) encoder.

    ``lazy``: the encoder reads only the model's config and processor until
    something must be embedded (so an unchanged re-index never loads weights).
    """
    import mmrag
    from mmrag.server.recorded import RecordedModel, recorded_model
    from mmrag.store import MultimodalStore

    if args.chroma_url:
        client = _chroma_client(args.chroma_url)
        recorded = RecordedModel() if args.model else recorded_model(client=client, collection=args.collection)
        model, text_model = recorded.load_arguments(args.model, args.text_model)
        if must_exist and model is None:
            raise FileNotFoundError(
                f"collection {args.collection!r} on {args.chroma_url} is empty; run `mmrag index PATH "
                f"--chroma-url {args.chroma_url}` first"
            )
        name, options = model or mmrag.DEFAULT_MODEL, load_options_from_args(args)
        encoder = _encoder(name, options, text_model, lazy=lazy)
        return MultimodalStore(encoder, client=client, collection=args.collection)
    db = Path(args.db).expanduser()
    if must_exist and not db.is_dir():
        raise FileNotFoundError(f"no database at {str(db)!r}; run `mmrag index PATH --db {args.db}` first")
    recorded = RecordedModel() if args.model else recorded_model(db=db, collection=args.collection)
    model, text_model = recorded.load_arguments(args.model, args.text_model)
    if must_exist and model is None and not args.model:
        raise FileNotFoundError(f"collection {args.collection!r} in {str(db)!r} is empty; run `mmrag index` first")
    options = load_options_from_args(args)
    encoder = _encoder(model or mmrag.DEFAULT_MODEL, options, text_model, lazy=lazy)
    try:
        return MultimodalStore(encoder, path=db, collection=args.collection)
    except BaseException:
        encoder.close()
        raise


def _encoder(name: str, options: LoadOptions, text_model: str | None, *, lazy: bool) -> Encoder:
    """``name`` loaded now, or lazily (Visualized-BGE, given a ``text_model``, always loads now)."""
    import mmrag
    from mmrag.encoders import LazyEncoder

    if text_model is not None:
        return mmrag.load_encoder(name, options=options, text_model=text_model)
    return LazyEncoder(name, options=options) if lazy else mmrag.load_encoder(name, options=options)


def _chroma_client(url: str) -> Any:
    from mmrag.ray.server import ChromaServer  # no Ray needed: just the server's address

    return ChromaServer.from_url(url).connect()


def _server_model(client: Any, collection: str) -> str | None:
    from mmrag.store.collection_pair import recorded_model_id

    return recorded_model_id(client, collection)


def _print_report(path: str, report: Any) -> int:
    print(f"{path}: {report.summary()}")
    for source, reason in report.failed:
        print(f"  failed: {source}: {reason}")
    for source, reason in report.skipped_links:
        print(f"  skipped link: {source}: {reason}")
    return 1 if report.failed else 0


def _cmd_index(args: argparse.Namespace) -> int:
    for path in args.paths:
        if not Path(path).is_dir():
            raise NotADirectoryError(f"not a folder: {path!r}")
    if args.ray:
        return _index_with_ray(args)
    status = 0
    with _open_store(args, must_exist=False, lazy=True) as store:
        try:
            for path in args.paths:
                report = store.index_folder(path, recursive=not args.no_recursive, follow_links=args.follow_links)
                status = max(status, _print_report(path, report))
        finally:
            store.encoder.close()  # stops image worker processes, if any started
        where = args.chroma_url if args.chroma_url else repr(str(store.path))
        print(f"store {where} now holds {store.count('image')} images and {store.count('text')} texts")
    return status


def _index_with_ray(args: argparse.Namespace) -> int:
    import mmrag
    from mmrag.ray import index_folder_ray, init_ray

    if not args.chroma_url:
        raise ValueError("--ray writes into a Chroma server: give --chroma-url http://HOST:PORT as well")
    if args.text_model:
        raise ValueError("--ray does not load Visualized-BGE checkpoints (--text-model); index without --ray")
    model = args.model or _server_model(_chroma_client(args.chroma_url), args.collection) or mmrag.DEFAULT_MODEL
    init_ray(args.ray)
    status = 0
    for path in args.paths:
        report = index_folder_ray(
            path,
            model=model,
            client=args.chroma_url,
            collection=args.collection,
            recursive=not args.no_recursive,
            follow_links=args.follow_links,
            options=load_options_from_args(args),
        )
        status = max(status, _print_report(path, report))
    return status


def _cmd_search(args: argparse.Namespace) -> int:
    if args.query is None and args.image is None:
        raise ValueError('give a text query, --image PATH_OR_URL or both, e.g. mmrag search "a red circle"')
    with _open_store(args, must_exist=True) as store:
        composed = args.query is not None and args.image is not None
        query_type: Literal["image", "text"] = "image" if args.image is not None and not composed else "text"
        try:
            query = args.query if args.query is not None else args.image
            image = args.image if composed else None
            hits = store.search(query, image=image, k=args.k, modality=args.modality, query_type=query_type)
        finally:
            store.encoder.close()
    if args.json:
        print(json.dumps([_hit_json(rank, hit) for rank, hit in enumerate(hits, 1)], ensure_ascii=False, indent=2))
    else:
        print(format_hits(hits))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import dataclasses

    import mmrag

    presets = mmrag.list_models()
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in presets], ensure_ascii=False, indent=2))
        return 0
    rows = [("alias", "hub id", "family", "dim", "languages", "license")]
    rows += [
        (p.alias, "(bundled)" if p.bundled else p.hub_id, p.family, str(p.dim), ",".join(p.languages), p.license)
        for p in presets
    ]
    print(_table(rows))
    print(f"default: {mmrag.DEFAULT_MODEL}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mmrag.demo import run_demo

    run_demo(Path(args.dir), model=args.model, device=args.device)
    return 0


def format_hits(hits: Sequence[Hit]) -> str:
    """A readable table of search hits: rank, score, modality, source.

    Args:
        hits: Search results, best first.

    Returns:
        The table as text (``"no results"`` when empty).
    """
    if not hits:
        return "no results"
    rows = [("rank", "score", "modality", "item")]
    rows += [(str(rank), f"{hit.score:.4f}", hit.modality, _describe_hit(hit)) for rank, hit in enumerate(hits, 1)]
    return _table(rows)


def _describe_hit(hit: Hit) -> str:
    """An image's source; a text's words (and its file's name when it came from one)."""
    if hit.modality == "image" or hit.text is None:
        return _shorten(hit.source or "(image without a source)")
    words = f'"{_shorten(hit.text, 60)}"'
    if hit.source and hit.source != hit.text:
        words += f" [{Path(hit.source).name}]"
    return words


def _hit_json(rank: int, hit: Hit) -> dict[str, Any]:
    return {
        "rank": rank,
        "score": round(hit.score, 6),
        "modality": hit.modality,
        "source": hit.source,
        "text": hit.text,
        "id": hit.id,
        "metadata": hit.metadata,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quiet_libraries() -> None:
    """Keep library progress bars and warnings out of the command's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
