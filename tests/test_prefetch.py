"""mmrag.prefetch: the one-batch-ahead pipeline that encoders and rerankers share."""

from __future__ import annotations

import threading
import time

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


def test_a_lazy_producer_runs_on_the_callers_thread_while_the_previous_chunk_is_prepared() -> None:
    caller = threading.current_thread().name
    preparing = threading.Event()
    producer_threads: list[str] = []
    overlapped: list[bool] = []

    def produce():
        for chunk in range(3):
            producer_threads.append(threading.current_thread().name)
            if chunk > 0:  # chunk - 1 was handed to the background thread before this one is produced
                overlapped.append(preparing.wait(timeout=30))
                preparing.clear()
            yield chunk

    def prepare(chunk: int) -> int:
        preparing.set()
        return chunk + 100

    with Prefetcher("test-prefetch") as prefetcher:
        assert list(prefetcher.run(produce(), prepare)) == [100, 101, 102]
    assert producer_threads == [caller] * 3 and overlapped == [True, True]


def test_a_lazy_single_chunk_and_an_empty_iterator() -> None:
    with Prefetcher("test-prefetch") as prefetcher:
        assert list(prefetcher.run(iter([7]), lambda c: c * 2)) == [14]
        assert list(prefetcher.run(iter([]), lambda c: c)) == []


def test_a_failing_producer_raises_when_the_next_batch_is_asked_for() -> None:
    def produce():
        yield 1
        yield 2
        raise OSError("disk went away")

    with Prefetcher("test-prefetch") as prefetcher:
        batches = prefetcher.run(produce(), lambda c: c)
        assert next(batches) == 1
        with pytest.raises(OSError, match="disk went away"):
            next(batches)


def test_leaving_the_block_waits_for_the_chunk_in_flight_and_ends_the_thread() -> None:
    finished: list[int] = []

    def slow(chunk: int) -> int:
        time.sleep(0.2)
        finished.append(chunk)
        return chunk

    with Prefetcher("test-prefetch-ctx") as prefetcher:
        batches = prefetcher.run([1, 2, 3], slow)
        assert next(batches) == 1  # chunk 2 is now being prepared
    assert finished == [1, 2]  # it finished before the block was left
    assert not [t for t in threading.enumerate() if t.name.startswith("test-prefetch-ctx")]


def test_ahead_two_prepares_two_chunks_at_once_and_keeps_the_order() -> None:
    running, most = 0, 0
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=10)  # only passes if two prepares really run at the same time

    def prepare(chunk: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if chunk < 2:
            both.wait()
        time.sleep(0.01 * (5 - chunk))  # earlier chunks finish later: the order must still hold
        with lock:
            running -= 1
        return chunk

    with Prefetcher("test-ahead", ahead=2) as prefetcher:
        assert list(prefetcher.run(range(5), prepare)) == [0, 1, 2, 3, 4]
    assert most == 2
    with pytest.raises(ValueError, match="ahead"):
        Prefetcher("test-ahead", ahead=0)
