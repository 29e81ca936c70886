"""Embedding a long list in steps, with a progress bar where the user can see it (:mod:`mmrag.progress`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmrag.progress import progress_bar

__all__ = ["embed_with_progress"]

STEP_BATCHES = 4
"""Forward batches per progress step: the encoder still overlaps preparation with forwards within a step."""


def embed_with_progress(
    embed: Callable[[list[Any]], np.ndarray], items: list[Any], *, batch_size: int, show: bool | None, unit: str
) -> np.ndarray:
    """Embed ``items`` with ``embed``, in one call when no bar is shown, else in steps that move the bar.

    Args:
        embed: Embeds a list into an ``(n, dim)`` array.
        items: What to embed.
        batch_size: The encoder's forward batch (a step is a few of them).
        show: ``True``/``False`` force the bar; ``None`` shows it (see
            :func:`mmrag.progress.progress_bar`) only past one batch.
        unit: What one item is (``"text"``, ``"image"``).

    Returns:
        The rows of ``embed`` for all items, in order.
    """
    shown = False if show is None and len(items) <= batch_size else show
    bar = progress_bar(len(items), show=shown, desc="embedding", unit=unit)
    with bar:
        if bar.disable:
            return embed(items)
        step = max(1, batch_size * STEP_BATCHES)
        parts = []
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            parts.append(embed(chunk))
            bar.update(len(chunk))
        return np.concatenate(parts, axis=0)
