"""mmrag.encoders.base: out-of-memory batches retried in halves, the batch-size search, prepare overlaps forward."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import mmrag

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (40, 30 + i, 3), dtype=np.uint8) for i in range(count)]


def _oom_above(encoder, name: str, largest: int, sizes: list[int]) -> None:
    """Make one of the encoder's feature functions raise CUDA's out-of-memory error for batches over ``largest``."""
    real = getattr(encoder, name)

    def guarded(**inputs):
        size = next(iter(inputs.values())).shape[0]
        sizes.append(size)
        if size > largest:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} GiB")
        return real(**inputs)

    setattr(encoder, name, guarded)


@pytest.fixture
def encoder(tiny_model_dirs):
    loaded = mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=8, image_workers=0)
    yield loaded
    loaded.close()


def test_an_out_of_memory_batch_is_retried_in_halves(encoder) -> None:
    images, texts = _images(7), [f"text number {i}" for i in range(7)]
    expected_images, expected_texts = encoder.embed_images(images), encoder.embed_texts(texts)
    image_sizes: list[int] = []
    text_sizes: list[int] = []
    _oom_above(encoder, "_image_features", 2, image_sizes)
    _oom_above(encoder, "_text_features", 3, text_sizes)
    before = encoder.forward_count
    with pytest.warns(RuntimeWarning, match=r"out of device memory for a batch of 7; retried in halves") as caught:
        vectors = encoder.embed_images(images)
    assert len(caught) == 1  # one warning for the call's batch, none for its halves
    np.testing.assert_allclose(vectors, expected_images, atol=1e-6)  # same vectors, same order
    assert image_sizes == [7, 3, 1, 2, 4, 2, 2]
    assert encoder.forward_count - before == 4  # the successful passes
    with pytest.warns(RuntimeWarning, match="batch of 7"):
        np.testing.assert_allclose(encoder.embed_texts(texts), expected_texts, atol=1e-6)
    assert max(size for size in text_sizes[1:]) <= 4


def test_a_single_item_that_does_not_fit_raises(encoder) -> None:
    _oom_above(encoder, "_image_features", 0, [])
    with pytest.raises(torch.OutOfMemoryError, match="CUDA out of memory"):
        encoder.embed_images(_images(1))


def test_other_errors_are_not_retried(encoder) -> None:
    calls: list[int] = []

    def broken(**inputs):
        calls.append(1)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    encoder._image_features = broken
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        encoder.embed_images(_images(4))
    assert calls == [1]


def test_find_batch_size_backs_off_from_the_first_out_of_memory(encoder) -> None:
    image_sizes: list[int] = []
    _oom_above(encoder, "_image_features", 20, image_sizes)
    _oom_above(encoder, "_text_features", 1000, [])
    assert encoder.find_batch_size(start=8, limit=1024) == 20
    assert image_sizes == [8, 16, 32, 24, 20, 22, 21]
    assert encoder.batch_size == 8  # the search does not change the encoder


def test_tokenising_the_next_batch_overlaps_the_forward_pass(encoder) -> None:
    # The forward pass of batch 0 waits until batch 1 is being tokenised: it must be, on the prefetch thread.
    second_started = threading.Event()
    prepared_on: list[str] = []
    real_prepare, real_forward = encoder.prepare_texts, encoder.forward_texts

    def prepare(texts):
        prepared_on.append(threading.current_thread().name)
        if len(prepared_on) == 2:
            second_started.set()
        return real_prepare(texts)

    overlapped: list[bool] = []

    def forward(batch):
        if not overlapped:
            overlapped.append(second_started.wait(timeout=30))
        return real_forward(batch)

    encoder.prepare_texts, encoder.forward_texts = prepare, forward
    texts = [f"a text of some length {'x' * i}" for i in range(20)]
    vectors = encoder.embed_texts(texts, batch_size=8)
    assert overlapped == [True]
    assert all(name.startswith("mmrag-prefetch") for name in prepared_on) and len(prepared_on) == 3
    encoder.prepare_texts, encoder.forward_texts = real_prepare, real_forward
    np.testing.assert_allclose(vectors, encoder.embed_texts(texts, batch_size=8), atol=1e-6)


def test_calls_from_several_threads_run_one_forward_at_a_time(encoder) -> None:
    images = _images(6)
    expected = encoder.embed_images(images)
    running, most = 0, 0
    lock = threading.Lock()
    real = encoder._image_features

    def counted(**inputs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            threading.Event().wait(0.02)  # long enough for another call's forward to start, were it allowed
            return real(**inputs)
        finally:
            with lock:
                running -= 1

    encoder._image_features = counted
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(encoder.embed_images(images))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and most == 1  # activations of two batches never share the device at once
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-6)
