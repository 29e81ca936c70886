"""mmrag.encoders.workers: the decode + preprocess worker pool (order, errors, shutdown, no leaks)."""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

from mmrag import ImageInputError, ImageLimits, NotASequenceError
from mmrag.encoders.preprocess import ImageSpec, prepare_image
from mmrag.encoders.workers import MAX_DEFAULT_WORKERS, ImageWorkerPool, default_num_workers

SPEC = ImageSpec(
    processor="CLIPImageProcessorPil",
    shortest_edge=48,
    resize_size=None,
    resample=3,
    crop_size=(48, 48),
    rescale_factor=1 / 255,
    image_mean=(0.5, 0.5, 0.5),
    image_std=(0.5, 0.5, 0.5),
)


def _jpeg(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twelve small JPEG files of mixed sizes."""
    root = tmp_path_factory.mktemp("worker_images")
    paths = []
    for index in range(12):
        path = root / f"img_{index:02d}.jpg"
        path.write_bytes(_jpeg(60 + 7 * index, 50 + 5 * (index % 4), index))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def pool() -> Iterator[ImageWorkerPool]:
    """One started 2-worker pool shared by the tests that do not stop it."""
    with ImageWorkerPool(SPEC, num_workers=2) as shared:
        yield shared


def _exact(items: list[Any]) -> np.ndarray:
    return np.stack([prepare_image(item, SPEC) for item in items])


def _segment_exists(name: str) -> bool:
    try:
        segment = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return False
    segment.close()
    return True


def _segment_names(pool: ImageWorkerPool) -> list[str]:
    state = pool._state
    return [worker.memory.name for worker in state.workers] if state else []


# ----------------------------------------------------------------------------------- results
def test_every_input_kind_in_order_equals_in_process(pool: ImageWorkerPool, files: list[Path]) -> None:
    data = files[3].read_bytes()
    pil = Image.open(files[4])
    big = Image.fromarray(np.full((1100, 1000, 3), 77, np.uint8))  # over send_max_pixels: prepared here
    items: list[Any] = [
        str(files[0]),
        files[1],
        data,
        bytearray(data),
        memoryview(data),
        io.BytesIO(files[2].read_bytes()),
        pil,
        np.asarray(Image.open(files[5]).convert("RGB")),
        big,
        "data:image/jpeg;base64," + base64.b64encode(data).decode(),
        base64.b64encode(files[6].read_bytes()).decode(),
        *files[7:],
    ]
    expected = _exact([files[0], files[1], data, data, data, files[2], pil, files[5], big, data, files[6], *files[7:]])
    got = pool.prepare(items)
    assert pool.running and len(pool.worker_pids) == 2
    assert got.dtype == np.uint8 and got.shape == (len(items), 3, 48, 48)
    assert np.array_equal(got, expected)


def test_images_already_resolved_stay_the_callers(pool: ImageWorkerPool, files: list[Path]) -> None:
    from mmrag import resolve_images

    resolved = resolve_images(files[:3])
    assert np.array_equal(pool.prepare(resolved), _exact(files[:3]))
    assert [image.size for image in resolved] == [Image.open(path).size for path in files[:3]]
    assert np.array_equal(pool.prepare(resolved), _exact(files[:3]))  # still open: usable again


def test_fast_mode_matches_in_process_fast_mode(files: list[Path]) -> None:
    big = [_jpeg(900, 700, seed) for seed in range(4)]  # big enough for DCT scaling
    with ImageWorkerPool(SPEC, num_workers=2, fast=True) as fast:
        got = fast.prepare([*big, *files[:4]])
    expected = np.stack([prepare_image(item, SPEC, fast=True) for item in [*big, *files[:4]]])
    assert np.array_equal(got, expected)
    assert not np.array_equal(got[:4], _exact(big))  # and it is a different (faster) path


def test_workers_never_import_torch(pool: ImageWorkerPool, files: list[Path]) -> None:
    pool.prepare(files[:2])
    assert pool._state is not None
    assert [worker.torch_imported for worker in pool._state.workers] == [False, False]


def test_relative_paths_mean_the_callers_working_directory(
    pool: ImageWorkerPool, files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rel.jpg").write_bytes(files[0].read_bytes())
    monkeypatch.chdir(tmp_path)
    got = pool.prepare(["rel.jpg", Path("rel.jpg")])
    assert np.array_equal(got, _exact([files[0], files[0]]))


def test_single_items_and_empty_batches_need_no_workers(files: list[Path]) -> None:
    lazy = ImageWorkerPool(SPEC, num_workers=2)
    assert lazy.prepare([]).shape == (0, 3, 48, 48)
    assert np.array_equal(lazy.prepare([files[0]]), _exact([files[0]]))
    assert not lazy.running and lazy.worker_pids == ()
    lazy.close()


def test_no_workers_means_in_process(files: list[Path]) -> None:
    inline = ImageWorkerPool(SPEC, num_workers=0)
    assert np.array_equal(inline.prepare(files), _exact(files))
    assert not inline.running and multiprocessing.active_children() == []
    with pytest.raises(ImageInputError, match=r"image 4 "):
        inline.prepare([files[0], b"junk"], start=3)


def test_a_single_item_is_refused_like_everywhere(pool: ImageWorkerPool, files: list[Path]) -> None:
    with pytest.raises(NotASequenceError, match="wrap it in a list"):
        pool.prepare(files[0])  # type: ignore[arg-type]  # the mistake under test


def test_default_worker_count() -> None:
    assert 0 <= default_num_workers() <= MAX_DEFAULT_WORKERS
    with pytest.raises(ValueError, match="num_workers"):
        ImageWorkerPool(SPEC, num_workers=-1)


# ---------------------------------------------------------------------- batches of one call
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_of_a_call_equal_the_whole_call_in_order(files: list[Path], workers: int) -> None:
    with ImageWorkerPool(SPEC, num_workers=workers) as own, own.prepare_batches(files, 5) as batches:
        assert len(batches) == 3
        got = list(batches)
        assert next(batches, None) is None  # and it stays ended
    assert [batch.shape[0] for batch in got] == [5, 5, 2]
    assert np.array_equal(np.concatenate(got), _exact(files))


def test_the_next_batch_is_on_the_workers_before_it_is_asked_for(pool: ImageWorkerPool, files: list[Path]) -> None:
    with pool.prepare_batches(files, 4) as batches:
        first = next(batches)
        assert pool._state is not None
        ahead = [bool(batches._done[position]) for position in range(4, 8)]
        assert pool._state.busy or any(ahead)  # batch 2 is in flight (or done) while batch 1 is being used
        rest = list(batches)
    assert np.array_equal(np.concatenate([first, *rest]), _exact(files))


def test_a_bad_item_in_a_later_batch_lets_the_earlier_batches_through(pool: ImageWorkerPool, files: list[Path]) -> None:
    items: list[Any] = [*files[:7], b"junk", *files[7:]]
    batches = pool.prepare_batches(items, 5, start=10)
    assert np.array_equal(next(batches), _exact(files[:5]))
    with pytest.raises(ImageInputError, match="cannot decode image") as caught:
        next(batches)
    assert caught.value.index == 17
    assert next(batches, None) is None
    assert np.array_equal(pool.prepare(files), _exact(files))  # no stale replies left behind


def test_stopping_early_loses_no_worker_slot(pool: ImageWorkerPool, files: list[Path]) -> None:
    for _ in range(4):  # 2 workers x 3 slots: a slot lost per round would stall by the last one
        with pool.prepare_batches(files, 3) as batches:
            assert np.array_equal(next(batches), _exact(files[:3]))
        assert next(batches, None) is None  # closed
        assert np.array_equal(pool.prepare(files), _exact(files))


def test_calls_taking_turns_between_batches_get_their_own_pixels(pool: ImageWorkerPool, files: list[Path]) -> None:
    reversed_files = files[::-1]
    with pool.prepare_batches(files, 4) as batches:
        got = [next(batches)]
        assert np.array_equal(pool.prepare(reversed_files[:5]), _exact(reversed_files[:5]))  # reads our replies too
        got.extend(batches)
    assert np.array_equal(np.concatenate(got), _exact(files))

    def whole_call(order: list[Path]) -> np.ndarray:
        with pool.prepare_batches(order, 3) as stream:
            return np.concatenate(list(stream))

    with ThreadPoolExecutor(3) as threads:
        orders = [files, reversed_files, files[3:] + files[:3]]
        for order, result in zip(orders, threads.map(whole_call, orders), strict=True):
            assert np.array_equal(result, _exact(order))


def test_a_call_suspended_while_the_pool_closes_goes_on_with_new_workers(files: list[Path]) -> None:
    own = ImageWorkerPool(SPEC, num_workers=2)
    batches = own.prepare_batches(files, 4)
    got = [next(batches)]
    first_pids = own.worker_pids
    own.close()  # e.g. another thread's encoder.close(), with batch 2 already on the workers
    got.extend(batches)
    assert np.array_equal(np.concatenate(got), _exact(files))
    assert own.running and set(own.worker_pids).isdisjoint(first_pids)
    own.close()
    with pytest.raises(ValueError, match="batch_size"):
        own.prepare_batches(files, 0)


def test_an_unreadable_file_object_ahead_fails_at_its_batch_and_keeps_the_workers(
    pool: ImageWorkerPool, files: list[Path]
) -> None:
    closed = io.BytesIO(files[0].read_bytes())
    closed.close()  # reading it raises ValueError, not ImageInputError
    pids = pool.worker_pids
    with pool.prepare_batches([*files[:4], closed, *files[4:8]], 4) as batches:
        assert np.array_equal(next(batches), _exact(files[:4]))
        with pytest.raises(ValueError, match="closed file"):
            next(batches)
    assert pool.worker_pids == pids  # an input's error, not the workers': they stay
    assert np.array_equal(pool.prepare(files), _exact(files))


# ------------------------------------------------------------------------------------ errors
def test_a_bad_item_raises_for_its_index_and_the_pool_goes_on(pool: ImageWorkerPool, files: list[Path]) -> None:
    items: list[Any] = [*files[:5], b"not an image", str(files[5]), files[0].parent / "missing.jpg", *files[6:]]
    with pytest.raises(ImageInputError) as caught:
        pool.prepare(items, start=100)
    assert caught.value.index == 105  # the first bad one in input order, offset by start
    assert caught.value.item == "bytes (12)"
    assert "cannot decode image" in str(caught.value)
    assert np.array_equal(pool.prepare(files), _exact(files))  # no stale replies left behind


def test_errors_read_in_the_parent_keep_input_order(pool: ImageWorkerPool, files: list[Path]) -> None:
    largest = max(files, key=lambda path: path.stat().st_size)
    big = io.BytesIO(largest.read_bytes())
    limits = ImageLimits(max_bytes=largest.stat().st_size - 1)
    small = [path for path in files if path.stat().st_size <= limits.max_bytes]
    assert len(small) >= 6
    with pytest.raises(ImageInputError, match="max_bytes") as caught:
        pool.prepare([*small[:3], big, *small[3:]], limits=limits)
    assert caught.value.index == 3


def test_limits_are_enforced_in_the_workers(pool: ImageWorkerPool, files: list[Path]) -> None:
    with pytest.raises(ImageInputError, match="local file paths are disabled") as caught:
        pool.prepare([files[0].read_bytes(), str(files[1]), files[2]], limits=ImageLimits(allow_local_paths=False))
    assert caught.value.index == 1
    with pytest.raises(ImageInputError, match="max_pixels"):
        pool.prepare(files[:4], limits=ImageLimits(max_pixels=100))
    assert pool.prepare(files[:2]).shape[0] == 2  # the default limits again


# ------------------------------------------------------------------------ shutdown and leaks
def test_close_stops_every_worker_and_frees_shared_memory(files: list[Path]) -> None:
    own = ImageWorkerPool(SPEC, num_workers=2)
    own.prepare(files[:4])
    pids, names = own.worker_pids, _segment_names(own)
    assert len(pids) == 2 and all(_segment_exists(name) for name in names)
    own.close()
    assert not own.running and own.worker_pids == ()
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert {child.pid for child in psutil.Process().children()}.isdisjoint(pids)
    assert multiprocessing.active_children() == []
    assert not any(_segment_exists(name) for name in names)
    own.close()  # twice is fine
    assert np.array_equal(own.prepare(files[:3]), _exact(files[:3]))  # and it restarts on demand
    restarted = own.worker_pids
    assert restarted and set(restarted).isdisjoint(pids)
    own.close()
    assert not any(psutil.pid_exists(pid) for pid in restarted)


def test_a_dead_worker_takes_the_pool_down_and_the_next_call_restarts(files: list[Path]) -> None:
    own = ImageWorkerPool(SPEC, num_workers=2)
    own.prepare(files[:2])
    names = _segment_names(own)
    victim = own.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="image worker .* (exited unexpectedly|is gone)"):
        own.prepare(files)
    assert not own.running and not any(_segment_exists(name) for name in names)
    assert np.array_equal(own.prepare(files), _exact(files))
    own.close()


def test_exiting_without_close_leaks_nothing(tmp_path: Path, files: list[Path]) -> None:
    script = textwrap.dedent(
        f"""
        from mmrag.encoders.preprocess import ImageSpec
        from mmrag.encoders.workers import ImageWorkerPool
        spec = ImageSpec(**{SPEC.__dict__!r})
        pool = ImageWorkerPool(spec, num_workers=2)
        pool.prepare({[str(path) for path in files[:4]]!r})
        print(" ".join(w.memory.name for w in pool._state.workers))
        print(" ".join(str(pid) for pid in pool.worker_pids), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=True,
    )
    names, pids = done.stdout.split("\n")[:2]
    assert names.split() and not any(_segment_exists(name) for name in names.split())
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(int(pid)) for pid in pids.split()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(int(pid)) for pid in pids.split())
    assert "leaked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
