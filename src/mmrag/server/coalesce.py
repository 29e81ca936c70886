"""Full batches under load: requests' items gathered on the event loop before they go to the batcher.

The batcher (:class:`~mmrag.EmbeddingBatcher`) merges whatever is queued when
it looks; but single-item requests reach it one by one, as each finishes
parsing or decoding, so under load it saw about two items at a time. The
:class:`Coalescer` knows how many admitted requests are still on their way
(:attr:`~mmrag.server.limits.Admission.on_the_way`: being read, parsed or
decoded) and holds a partial batch for them, up to the batching window
(``--max-wait-ms``), then hands the batcher one merged request:

* a batch is sent as soon as it holds ``batch_size`` items;
* or as soon as no admitted request is on its way (then nobody is worth
  waiting for: a lone request is never delayed);
* or when the window, counted from its first item, ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Coalescer"]

Kind = Literal["text", "image", "pair"]
Submit = Callable[[Kind, list[Any]], "Future[np.ndarray]"]


@dataclass
class _Pending:
    parts: list[tuple[list[Any], asyncio.Future[np.ndarray]]] = field(default_factory=list)
    items: int = 0
    timer: asyncio.TimerHandle | None = None
    check_scheduled: bool = False


class Coalescer:
    """Gathers the items of concurrent requests into batches for the batcher (use from the event loop only).

    Args:
        submit: Hands one merged list of items to the batcher (e.g.
            ``lambda kind, items: batcher.submit(kind, items, limits=...)``).
        batch_items: Items that make a full batch.
        window_s: Longest a partial batch waits for more, in seconds.
        on_the_way: How many admitted requests have not handed their items
            over yet.
    """

    def __init__(self, submit: Submit, batch_items: int, window_s: float, on_the_way: Callable[[], int]) -> None:
        self.submit = submit
        self.batch_items = batch_items
        self.window_s = window_s
        self.on_the_way = on_the_way
        self.batches_sent = 0
        self._pending: dict[Kind, _Pending] = {"text": _Pending(), "image": _Pending(), "pair": _Pending()}

    async def embed(self, kind: Kind, items: list[Any]) -> np.ndarray:
        """Vectors for ``items``, computed in a batch shared with concurrent requests.

        Args:
            kind: ``"text"``, ``"image"`` or ``"pair"``.
            items: Checked texts, images resolved by the service, or
                ``(image, text)`` pairs of both.

        Returns:
            One float32 row per item (for pairs: image, text and fused
            vector, ``(n, 3, dim)``).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        pending = self._pending[kind]
        pending.parts.append((items, future))
        pending.items += len(items)
        if pending.items >= self.batch_items or self.window_s == 0:
            self._flush(kind)
        else:
            if pending.timer is None:
                pending.timer = loop.call_later(self.window_s, self._flush, kind)
            if not pending.check_scheduled:
                # After the other tasks ready now ran (a request's second job, requests just parsed).
                pending.check_scheduled = True
                loop.call_soon(self._flush_if_nobody_comes, kind)
        return await future

    def _flush_if_nobody_comes(self, kind: Kind) -> None:
        pending = self._pending[kind]
        pending.check_scheduled = False
        if pending.parts and self.on_the_way() == 0:
            self._flush(kind)

    def recheck(self) -> None:
        """Send partial batches if no admitted request is on its way any more (call when one arrives at the model
        or leaves)."""
        if self.on_the_way() == 0:
            for kind, pending in self._pending.items():
                if pending.parts:
                    self._flush(kind)

    def _flush(self, kind: Kind) -> None:
        pending = self._pending[kind]
        if pending.timer is not None:
            pending.timer.cancel()
        parts = [(items, future) for items, future in pending.parts if not future.done()]
        self._pending[kind] = _Pending(check_scheduled=pending.check_scheduled)
        if not parts:
            return
        merged = [item for items, _ in parts for item in items]
        try:
            done = self.submit(kind, merged)
        except Exception as exc:  # queue full, batcher closed: every part gets the error
            for _, future in parts:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches_sent += 1
        loop = asyncio.get_running_loop()
        done.add_done_callback(lambda finished: loop.call_soon_threadsafe(_split, finished, parts))


def _split(finished: Future[np.ndarray], parts: list[tuple[list[Any], asyncio.Future[np.ndarray]]]) -> None:
    """Hand each request its rows (or the batch's error)."""
    error = finished.exception()
    start = 0
    for items, future in parts:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(finished.result()[start : start + len(items)])
        start += len(items)
