"""The service's admission counter, decode budget and batch coalescer, on their own (no model, no HTTP).

The HTTP behaviour they give (429 at arrival, decoding within the budget, full batches) is tested
against a real server in tests/test_server_reliability.py; here each rule is pinned exactly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

from mmrag.server.coalesce import Coalescer
from mmrag.server.limits import Admission, DecodeBudget


def test_admission_counts_requests_from_arrival_then_by_items() -> None:
    admission = Admission(4)
    first, second = admission.arrive(), admission.arrive()
    assert first is not None and second is not None
    assert (admission.depth, admission.on_the_way) == (2, 2)
    assert first.admit(3)  # 1 arrival place becomes 3 item places: 4 taken
    assert not second.admit(2) and admission.refused == 1  # would need a fifth place
    assert admission.arrive() is None and admission.refused == 2  # full: refused before its body is read
    first.submitted()
    assert admission.on_the_way == 1
    first.release()
    second.release()
    second.release()  # idempotent
    assert (admission.depth, admission.on_the_way) == (0, 0)


def test_a_request_larger_than_the_queue_gets_in_only_when_it_is_empty() -> None:
    admission = Admission(4)
    big, other = admission.arrive(), admission.arrive()
    assert big is not None and other is not None
    assert not big.admit(10)  # counts as the whole queue, and another request holds a place
    other.release()
    assert big.admit(10) and admission.depth == 4
    assert admission.arrive() is None
    big.release()
    assert admission.depth == 0


def test_decode_budget_never_exceeds_its_limit_and_serves_in_arrival_order() -> None:
    budget = DecodeBudget(10)
    order: list[str] = []
    lock = threading.Lock()

    def decode(name: str, pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                order.append(name)
            time.sleep(0.05)

    threads = []
    for name, pixels in [("a", 6), ("b", 6), ("c", 3), ("huge", 25)]:
        threads.append(threading.Thread(target=decode, args=(name, pixels)))
        threads[-1].start()
        time.sleep(0.01)  # arrive in this order
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c", "huge"]  # c fits beside a, but waits its turn behind b
    assert budget.peak <= 10 and budget.used == 0 and budget.waits >= 2


def run_coalescer(
    window_s: float, arrivals: list[tuple[float, int]], *, stuck: int = 0, batch: int = 8
) -> tuple[list[int], list[list[float]], list[float]]:
    """Requests of ``n`` items arriving at ``t`` seconds, each on its way until it calls the coalescer,
    plus ``stuck`` requests on their way that never come; returns (batch sizes sent, rows, waits)."""
    submitted: list[int] = []
    called = [0]

    def submit(_kind: str, items: list[Any]) -> Future[np.ndarray]:
        submitted.append(len(items))
        done: Future[np.ndarray] = Future()
        done.set_result(np.asarray(items, dtype=np.float32)[:, None])
        return done

    async def main() -> tuple[list[list[float]], list[float]]:
        coalescer = Coalescer(
            submit, batch_items=batch, window_s=window_s, on_the_way=lambda: len(arrivals) - called[0] + stuck
        )

        async def request(at: float, n: int, first: int) -> tuple[np.ndarray, float]:
            await asyncio.sleep(at)
            started = time.monotonic()
            called[0] += 1
            rows = await coalescer.embed("text", list(range(first, first + n)))
            return rows, time.monotonic() - started

        starts = np.cumsum([0] + [n for _, n in arrivals])[:-1]
        results = await asyncio.gather(*(request(at, n, int(s)) for (at, n), s in zip(arrivals, starts)))
        return [rows[:, 0].tolist() for rows, _ in results], [wait for _, wait in results]

    rows, waits = asyncio.run(main())
    return submitted, rows, waits


def test_a_lone_request_is_not_delayed() -> None:
    submitted, rows, waits = run_coalescer(1.0, [(0.0, 2)])
    assert submitted == [2] and rows == [[0.0, 1.0]] and waits[0] < 0.5


def test_a_partial_batch_waits_for_requests_on_their_way() -> None:
    submitted, rows, waits = run_coalescer(2.0, [(0.0, 1), (0.1, 2)])
    assert submitted == [3] and rows == [[0.0], [1.0, 2.0]]  # one batch; each request gets its own rows
    assert 0.05 < waits[0] < 1.0  # the first waited for the second, and no longer


def test_the_window_bounds_the_wait() -> None:
    submitted, _, waits = run_coalescer(0.2, [(0.0, 1)], stuck=1)  # the one on its way never comes
    assert submitted == [1] and 0.15 < waits[0] < 1.0


def test_a_full_batch_goes_at_once() -> None:
    submitted, _, waits = run_coalescer(0.3, [(0.0, 4), (0.0, 4), (0.0, 4)], stuck=1, batch=8)
    assert submitted == [8, 4] and max(waits[:2]) < 0.2 and waits[2] > 0.2
