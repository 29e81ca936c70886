"""Search results a notebook can show: a grid of thumbnails and text cards.

:class:`HitList` is a plain ``list`` of :class:`~mmrag.store.Hit` with a
``_repr_html_``, so a search result left at the end of a Jupyter cell shows as
a grid: each image hit as a small inline thumbnail (a data URI, so the saved
notebook keeps it), each text hit as a card, both with the rank, modality and
score. :func:`hits_html` renders any sequence of hits; :func:`hit_html` one.

Images are read from the hit's ``source`` through
:func:`mmrag.inputs.resolve_image` and its limits. A file that is gone or
unreadable, or a hit stored without a source, shows a placeholder with the
reason; rendering never raises. URLs are not fetched by default (displaying a
result should not reach the network from the kernel): the browser loads
them, unless ``fetch_urls=True`` inlines them through the guarded fetcher.
All text is HTML-escaped; Chinese and other non-Latin text is shown as is.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from typing import SupportsIndex, overload

from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits, is_url, resolve_image
from mmrag.store.records import Hit

__all__ = ["THUMBNAIL_SIZE", "HitList", "hit_html", "hits_html"]

THUMBNAIL_SIZE = 128
"""Longest side of a thumbnail, in pixels."""

TEXT_PREVIEW = 400
"""Characters of a text hit shown on its card."""

_GRID = "display:flex;flex-wrap:wrap;gap:8px;font-family:sans-serif;font-size:12px;line-height:1.3"
_CARD = "box-sizing:border-box;width:{w}px;border:1px solid #ccc;border-radius:6px;padding:6px;overflow:hidden"
_BOX = "width:{s}px;height:{s}px;margin:0 auto 4px;display:flex;align-items:center;justify-content:center"
_PLACEHOLDER = "background:#eee;color:#666;text-align:center;font-size:11px;padding:4px;box-sizing:border-box"
_MUTED = "color:#777;word-break:break-all"


class HitList(list[Hit]):
    """A list of hits that Jupyter shows as a grid (see :func:`hits_html`).

    Everything else is a plain ``list``: compare it, index it, serialise it.
    Slicing keeps the grid (``hits[:3]`` is a ``HitList``).

    Example:
        >>> hits = HitList(store.search("a red circle", k=8))
        >>> hits          # at the end of a notebook cell: thumbnails and cards
    """

    def _repr_html_(self) -> str:
        return hits_html(self)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Hit: ...

    @overload
    def __getitem__(self, index: slice) -> HitList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Hit | HitList:
        if isinstance(index, slice):
            return HitList(super().__getitem__(index))
        return super().__getitem__(index)


def hit_html(
    hit: Hit, *, thumbnail_size: int = THUMBNAIL_SIZE, limits: ImageLimits | None = None, fetch_urls: bool = False
) -> str:
    """One hit as HTML: the grid of :func:`hits_html` with one card (what ``Hit._repr_html_`` shows).

    Args:
        hit: The hit.
        thumbnail_size: Longest side of an image thumbnail, in pixels.
        limits: Limits for reading the image; ``ImageLimits()`` when omitted.
        fetch_urls: Fetch a URL source and inline it (see :func:`hits_html`).

    Returns:
        An HTML fragment.
    """
    return hits_html([hit], thumbnail_size=thumbnail_size, limits=limits, fetch_urls=fetch_urls)


def hits_html(
    hits: Iterable[Hit],
    *,
    thumbnail_size: int = THUMBNAIL_SIZE,
    limits: ImageLimits | None = None,
    fetch_urls: bool = False,
) -> str:
    """Render hits as an HTML grid: thumbnails for images, cards for texts.

    Args:
        hits: The hits, best first (their order is their rank).
        thumbnail_size: Longest side of an image thumbnail, in pixels.
        limits: Limits for reading image files (and URLs with
            ``fetch_urls``); ``ImageLimits()`` when omitted.
        fetch_urls: Fetch URL sources and inline them; by default the
            browser loads them and the kernel never touches the network.

    Returns:
        An HTML fragment (one ``<div>``), safe to embed: every text, source
        and metadata value is escaped.

    Example:
        >>> "<img" in hits_html(store.search("a red circle", k=4))
        True
    """
    size = max(16, int(thumbnail_size))
    cards = [_card(rank, hit, size, limits, fetch_urls) for rank, hit in enumerate(hits, start=1)]
    if not cards:
        return f'<div class="mmrag-hits" style="{_GRID}"><em>no hits</em></div>'
    return f'<div class="mmrag-hits" style="{_GRID}">{"".join(cards)}</div>'


def _card(rank: int, hit: Hit, size: int, limits: ImageLimits | None, fetch_urls: bool) -> str:
    body = _image_body(hit, size, limits, fetch_urls) if hit.modality == "image" else _text_body(hit, size)
    label = f"<b>#{rank}</b> {_escape(hit.modality)} · {_score(hit.score)}"
    lines = [f"<div>{label}</div>"]
    shown_source = hit.source if hit.modality == "image" or hit.source != hit.text else None
    if shown_source:
        name = shown_source.rsplit("/", 1)[-1] or shown_source
        lines.append(f'<div style="{_MUTED}" title="{_escape(shown_source)}">{_escape(_shorten(name, 60))}</div>')
    for key, value in list(hit.metadata.items())[:3]:
        lines.append(f'<div style="{_MUTED}">{_escape(_shorten(f"{key}: {value}", 60))}</div>')
    style = _CARD.format(w=size + 20)
    return f'<div class="mmrag-hit" style="{style}" title="id {_escape(hit.id)}">{body}{"".join(lines)}</div>'


def _image_body(hit: Hit, size: int, limits: ImageLimits | None, fetch_urls: bool) -> str:
    source = hit.source
    if not source:
        return _placeholder(size, "no source stored")
    alt = _escape(_shorten(source, 80))
    if is_url(source) and not fetch_urls:
        return (
            f'<div style="{_BOX.format(s=size)}"><img src="{_escape(source)}" alt="{alt}" loading="lazy" '
            f'referrerpolicy="no-referrer" style="max-width:{size}px;max-height:{size}px"></div>'
        )
    try:
        uri = _thumbnail_uri(source, size, limits)
    except ImageInputError as exc:
        return _placeholder(size, f"image not available: {exc.reason}")
    except Exception as exc:  # a display must never raise; say why instead
        return _placeholder(size, f"image not available: {type(exc).__name__}")
    return (
        f'<div style="{_BOX.format(s=size)}"><img src="{uri}" alt="{alt}" '
        f'style="max-width:{size}px;max-height:{size}px"></div>'
    )


def _thumbnail_uri(source: str, size: int, limits: ImageLimits | None) -> str:
    """A JPEG data URI of the image at ``source``, its longest side at most ``size`` pixels."""
    image = resolve_image(source, limits=limits)
    try:
        thumb = image.copy()
        thumb.thumbnail((size, size))
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=85)
    finally:
        image.close()
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _text_body(hit: Hit, size: int) -> str:
    text = hit.text if hit.text is not None else (hit.source or "")
    style = f"height:{size}px;overflow:auto;white-space:pre-wrap;word-break:break-word;margin-bottom:4px"
    return f'<div style="{style}">{_escape(_shorten(text, TEXT_PREVIEW))}</div>'


def _placeholder(size: int, reason: str) -> str:
    style = f"{_BOX.format(s=size)};{_PLACEHOLDER}"
    return f'<div class="mmrag-missing" style="{style}">{_escape(_shorten(reason, 120))}</div>'


def _score(score: float) -> str:
    return f"{score:.3f}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)
