"""mmrag.encoders.memory: out-of-memory recognition, batch splitting and the batch-size search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BatchEncoding

from mmrag.encoders.memory import batch_length, is_out_of_memory, search_batch_size, split_batch


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the runtime errors torch raises


def test_a_tokenizer_batch_splits_in_order() -> None:
    batch = BatchEncoding({"input_ids": torch.arange(10).view(5, 2), "attention_mask": torch.ones(5, 2)})
    assert batch_length(batch) == 5
    first, second = split_batch(batch)
    assert torch.equal(first["input_ids"], torch.arange(4).view(2, 2))
    assert torch.equal(second["input_ids"], torch.arange(4, 10).view(3, 2))
    assert second["attention_mask"].shape == (3, 2)


def test_pixels_and_plain_arrays_split_too() -> None:
    first, second = split_batch({"pixels": torch.zeros(3, 3, 4, 4, dtype=torch.uint8)})
    assert (first["pixels"].shape[0], second["pixels"].shape[0]) == (1, 2)
    head, tail = split_batch(np.arange(4))
    assert head.tolist() == [0, 1] and tail.tolist() == [2, 3]


def test_what_cannot_be_split_is_refused() -> None:
    assert batch_length({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)}) is None  # disagreeing lengths
    with pytest.raises(ValueError, match="cannot split a batch of 1 item"):
        split_batch({"pixels": torch.zeros(1, 3, 2, 2)})
    with pytest.raises(ValueError, match="cannot split a batch of None"):
        split_batch({"x": 3})


def _fits_up_to(largest: int, tried: list[int]):
    def fits(size: int) -> bool:
        tried.append(size)
        return size <= largest

    return fits


@pytest.mark.parametrize(("largest", "expected"), [(20, 20), (8, 8), (9, 9), (1023, 1023), (5000, 1024), (3, 3)])
def test_the_search_finds_the_largest_size_that_fits(largest: int, expected: int) -> None:
    tried: list[int] = []
    assert search_batch_size(_fits_up_to(largest, tried), start=8, limit=1024) == expected
    assert len(tried) <= 2 * 11  # doubling, then bisecting: logarithmic, not linear


def test_the_search_doubles_then_bisects_back() -> None:
    tried: list[int] = []
    assert search_batch_size(_fits_up_to(20, tried), start=8, limit=1024) == 20
    assert tried == [8, 16, 32, 24, 20, 22, 21]


def test_the_search_fails_when_nothing_fits() -> None:
    with pytest.raises(RuntimeError, match="not even a batch of one"):
        search_batch_size(lambda size: False, start=8, limit=64)
    with pytest.raises(ValueError, match="at least 1"):
        search_batch_size(lambda size: True, start=0, limit=64)
