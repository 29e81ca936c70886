"""Show search results as image grids in notebooks (matplotlib).

matplotlib is optional: install it with ``pip install "mmrag[notebooks]"``.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mmrag.store import Hit

__all__ = ["plot_hits"]

_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Source Han Sans SC", "SimHei",
              "Microsoft YaHei", "PingFang SC", "Heiti SC")  # fmt: skip  # aligned by hand


def plot_hits(
    hits: Sequence[Hit],
    *,
    query: Any = None,
    title: str | None = None,
    columns: int = 6,
    thumb_inches: float = 1.8,
) -> Figure:
    """Draw a query and its hits as a grid: images as thumbnails, texts as cards.

    Args:
        hits: Search results, best first (``mmrag.Hit`` or anything with
            ``modality``, ``source``, ``text`` and ``score``); an image-text
            pair shows its image, its text under the label.
        query: The query to show first: a text, or an image (path or PIL image).
        title: Figure title.
        columns: Panels per row.
        thumb_inches: Size of one panel.

    Returns:
        The matplotlib figure (shown automatically in Jupyter).

    Raises:
        ImportError: matplotlib is not installed (the message names the extra).

    Example:
        >>> from mmrag.plotting import plot_hits
        >>> plot_hits(store.search("a red circle", k=5), query="a red circle")  # doctest: +SKIP
    """
    try:
        import matplotlib.pyplot as plt
        from matplotlib import font_manager
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('plot_hits needs matplotlib: pip install "mmrag[notebooks]"') from exc

    installed = {font.name for font in font_manager.fontManager.ttflist}
    family = [name for name in _CJK_FONTS if name in installed] + ["DejaVu Sans"]
    panels: list[tuple[str, Any, str | None]] = []
    if query is not None:
        panels.append(("query", query, None))
    for rank, hit in enumerate(hits, 1):
        label = f"#{rank} {hit.modality} {hit.score:.3f}"
        if hit.modality == "pair":  # an image with its text: the image, the text under the label
            label += "\n" + textwrap.shorten(hit.text or "", 24, placeholder="…")
        payload = hit.source if hit.modality in ("image", "pair") else hit.text
        panels.append((label, payload, hit.modality))
    rows = max(1, -(-len(panels) // columns))
    cols = min(columns, max(1, len(panels)))
    figure, axes = plt.subplots(rows, cols, figsize=(cols * thumb_inches, rows * thumb_inches * 1.15), squeeze=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        for ax in axes.flat:
            ax.axis("off")
        for ax, (label, payload, modality) in zip(axes.flat, panels):
            _draw_panel(ax, payload, modality, family)
            ax.set_title(label, fontsize=8, family=family)
        if title:
            figure.suptitle(title, family=family)
        figure.tight_layout()
    return figure


def _draw_panel(ax: Any, payload: Any, modality: str | None, family: list[str]) -> None:
    image = _as_image(payload) if modality in (None, "image", "pair") else None
    if image is not None:
        ax.imshow(image)
        return
    text = str(payload) if payload is not None else "(no source)"
    wrapped = "\n".join(textwrap.wrap(" ".join(text.split()), 18)[:6])
    ax.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=8, family=family, wrap=True,
            bbox={"boxstyle": "round", "facecolor": "#f3f3f3", "edgecolor": "#bbbbbb"})  # fmt: skip  # aligned by hand


def _as_image(payload: Any) -> Any:
    from PIL import Image

    if isinstance(payload, Image.Image):
        return payload
    if isinstance(payload, (str, Path)) and len(str(payload)) < 4096 and Path(payload).is_file():
        with Image.open(payload) as opened:
            return opened.convert("RGB")
    return None
