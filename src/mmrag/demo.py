"""The main job, end to end: make a sample folder, index it, search it four ways.

``mmrag demo`` (and ``make demo``) runs :func:`run_demo`: it writes synthetic
shape images with English and Chinese caption files, indexes them into an
embedded Chroma store with the bundled ``demo`` model, runs text->image,
text->text, image->image and image->text searches, prints them, and writes an
HTML page with the result grids.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmrag.demo_data import ShapeSample
    from mmrag.inputs import Modality
    from mmrag.store import Hit

__all__ = ["DemoQuery", "run_demo", "write_results_html"]


@dataclass(frozen=True)
class DemoQuery:
    """One demo search and its results.

    Attributes:
        title: What the search shows, e.g. ``"text -> image"``.
        query: The query text, or the query image's path.
        query_is_image: Whether ``query`` is an image path.
        hits: The results, best first.
        expected: What a correct answer looks like, e.g. ``"2 of the 24
            images are red circles"`` (empty when the query is an image).
    """

    title: str
    query: str
    query_is_image: bool
    hits: list[Hit]
    expected: str = ""


def run_demo(
    directory: str | os.PathLike[str] = "./mmrag_demo",
    *,
    model: str = "demo",
    device: str | None = None,
    k: int = 4,
    quiet: bool = False,
) -> list[DemoQuery]:
    """Generate sample data, index it, search it in all four directions and report.

    Args:
        directory: Where ``samples/``, ``db/`` and ``results.html`` go.
        model: Encoder to use (default: the bundled demo model).
        device: Device for the encoder (default: best available).
        k: Results per search.
        quiet: Do not print.

    Returns:
        The searches run, with their hits.

    Example:
        >>> from mmrag.demo import run_demo
        >>> searches = run_demo("./mmrag_demo")  # doctest: +SKIP
    """
    import mmrag
    from mmrag.cli import format_hits
    from mmrag.demo_data import sample_shapes, write_sample_folder
    from mmrag.store import MultimodalStore

    root = Path(directory).expanduser().resolve()
    samples = root / "samples"
    write_sample_folder(samples, n=_N_SAMPLES, seed=0)
    drawn = sample_shapes(_N_SAMPLES, seed=0)  # what the folder holds: shape_000.png is drawn[0], ...
    encoder = mmrag.load_encoder(model, device=device)
    say = (lambda *_: None) if quiet else print
    with MultimodalStore(encoder, path=root / "db", collection="demo") as store:
        report = store.index_folder(samples, show_progress=False)
        say(f"indexed {samples}: {report.summary()}")
        results: list[DemoQuery] = []
        for title, query, is_image, modality, expected in _demo_searches(drawn, samples):
            hits = store.search(query, k=k, modality=modality, query_type="image" if is_image else "text")
            results.append(DemoQuery(title, query, is_image, hits, expected))
            shown = os.path.relpath(query, Path.cwd()) if is_image else repr(query)
            say(f"\n{title}: {shown}" + (f"  ({expected})" if expected else "") + f"\n{format_hits(hits)}")
    page = write_results_html(results, root / "results.html")
    say(f"\nresult grids: {page}")
    return results


_N_SAMPLES = 24


def _demo_searches(drawn: Sequence[ShapeSample], folder: Path) -> list[tuple[str, str, bool, Modality, str]]:
    """The demo's searches, chosen so that each has answers in the sample folder.

    Returns:
        ``(title, query, query_is_image, modality searched, expected)`` tuples.
    """
    pairs = Counter((s.colour, s.shape) for s in drawn).most_common()
    # The most frequent colour + shape in English, the next in Chinese, a third with its size for text -> text.
    (en, en_count), (zh, zh_count), (tt, _) = pairs[0], pairs[1], pairs[2]
    en_sample = next(s for s in drawn if (s.colour, s.shape) == en)
    zh_sample = next(s for s in drawn if (s.colour, s.shape) == zh)
    tt_sample = next(s for s in drawn if (s.colour, s.shape) == tt)
    n = len(drawn)

    def image(i: int) -> str:
        return str(folder / f"shape_{i:03d}.png")

    return [
        ("text -> image", en_sample.caption("en", "colour_shape"), False, "image",
         f"{en_count} of the {n} images show {en_sample.caption('en', 'colour_shape')}"),
        ("text -> image (中文)", zh_sample.caption("zh", "colour_shape"), False, "image",
         f"{zh_count} of the {n} images show {zh_sample.caption('en', 'colour_shape')}"),
        ("text -> text", tt_sample.caption("zh", "colour_shape_size"), False, "text",
         f"its captions: {tt_sample.caption('en')!r} and {tt_sample.caption('zh')!r}"),
        ("image -> image", image(0), True, "image", f"itself ({drawn[0].caption('en')!r}) first, then images like it"),
        ("image -> text", image(1), True, "text",
         f"its captions: {drawn[1].caption('en')!r}, {drawn[1].caption('zh')!r}"),
    ]  # fmt: skip  # aligned by hand


def write_results_html(searches: Sequence[DemoQuery], path: str | os.PathLike[str]) -> Path:
    """Write an HTML page that shows each search as a grid of results.

    Args:
        searches: The searches to show.
        path: The HTML file to write; image paths are linked relative to it.

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def cell(source: str | None, text: str | None, label: str) -> str:
        if text is None and source:
            rel = html.escape(os.path.relpath(source, out.parent))
            body = f'<img src="{rel}" alt="{html.escape(Path(source).name)}">'
        else:
            body = f'<div class="text">{html.escape(text or source or "")}</div>'
        return f"<figure>{body}<figcaption>{html.escape(label)}</figcaption></figure>"

    sections = []
    for search in searches:
        query_cell = cell(search.query, None, "query") if search.query_is_image else cell(None, search.query, "query")
        hits = "".join(
            cell(hit.source, hit.text, f"#{rank} {hit.modality} {hit.score:.3f}")
            for rank, hit in enumerate(search.hits, 1)
        )
        sections.append(
            f"<section><h2>{html.escape(search.title)}</h2>"
            + (f"<p class='expected'>expect: {html.escape(search.expected)}</p>" if search.expected else "")
            + f"<div class='grid'>{query_cell}"
            f"<span class='arrow'>→</span>{hits}</div></section>"
        )
    out.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmrag demo</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;background:#fafafa}"
        ".grid{display:flex;gap:12px;align-items:center;flex-wrap:wrap}"
        "figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px;text-align:center}"
        "img{width:96px;height:96px;image-rendering:pixelated}"
        ".text{width:160px;min-height:96px;display:flex;align-items:center;justify-content:center;font-size:14px}"
        "figcaption{font-size:12px;color:#555;margin-top:4px}.arrow{font-size:28px;color:#999}"
        "</style></head><body><h1>mmrag demo: four search directions</h1>" + "".join(sections) + "</body></html>",
        encoding="utf-8",
    )
    return out
