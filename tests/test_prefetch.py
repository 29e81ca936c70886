"""mmrag.prefetch: the one-batch-ahead pipeline that encoders and rerankers share."""

from __future__ import annotations

import threading

import pytest

from mmrag.prefetch import Prefetcher


def test_batches_come_in_order_prepared_one_ahead_on_one_thread() -> None:
    prefetcher = Prefetcher("test-prefetch")
    threads: list[str] = []
    prepared: list[int] = []

    def prepare(chunk: int) -> int:
        threads.append(threading.current_thread().name)
        prepared.append(chunk)
        return chunk * 10

    seen = []
    for batch in prefetcher.run([1, 2, 3, 4], prepare):
        seen.append(batch)
        assert len(prepared) <= len(seen) + 1  # never more than one batch ahead
    assert seen == [10, 20, 30, 40]
    assert len(set(threads)) == 1 and threads[0].startswith("test-prefetch")
    prefetcher.close()
    assert list(prefetcher.run([5, 6], prepare)) == [50, 60]  # usable again after close
    prefetcher.close()


def test_single_chunk_stays_on_the_callers_thread_and_errors_surface() -> None:
    prefetcher = Prefetcher("test-prefetch")
    names: list[str] = []
    assert list(prefetcher.run(["a"], lambda c: names.append(threading.current_thread().name) or c)) == ["a"]
    assert names == [threading.current_thread().name]
    assert list(prefetcher.run([], lambda c: c)) == []

    def fails_on_two(chunk: int) -> int:
        if chunk == 2:
            raise ValueError("item 2 is bad")
        return chunk

    batches = prefetcher.run([1, 2, 3], fails_on_two)
    assert next(batches) == 1
    with pytest.raises(ValueError, match="item 2 is bad"):
        next(batches)
    prefetcher.close()
