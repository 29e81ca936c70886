"""Device memory: recognise out-of-memory errors, split a batch in half, find the largest batch that fits.

:class:`~mmrag.Encoder` uses these so that a forward pass that runs out of
GPU memory is retried as two halves (recursively, down to one item) instead
of failing, and so that ``LoadOptions(batch_size="auto")`` can search for the
largest batch a GPU holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from mmrag.encoders.base import Encoder

__all__ = [
    "batch_length",
    "find_batch_size",
    "free_cached_memory",
    "is_out_of_memory",
    "search_batch_size",
    "split_batch",
]

_PROBE_TEXT = "probe " * 512  # truncated to the model's text length: the longest text batch (up to 512 tokens)
_PROBE_SIDE = 224


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory.

    Args:
        error: Any exception.

    Returns:
        ``True`` for ``torch.OutOfMemoryError`` (CUDA, and what torch raises
        for other accelerators' allocators) and for the ``RuntimeError``
        messages older builds and the MPS backend use.
    """
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_cached_memory(device: torch.device) -> None:
    """Return cached, unused blocks of ``device`` to its allocator after an out-of-memory error.

    Args:
        device: The model's device (nothing happens for a CPU).
    """
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None:
            mps.empty_cache()


def batch_length(batch: Any) -> int | None:
    """How many items a prepared batch holds: the first dimension its values share.

    Args:
        batch: A mapping of tensors, arrays or lists (what a family's prepare
            step returns), or a tensor or array.

    Returns:
        The item count, or ``None`` when it cannot be told (then the batch
        cannot be split).
    """
    if isinstance(batch, Mapping):
        lengths = {_length(value) for value in batch.values()}
        lengths.discard(None)
        return lengths.pop() if len(lengths) == 1 else None
    return _length(batch)


def split_batch(batch: Any) -> tuple[Any, Any]:
    """Split a prepared batch into its first and second half (along the first dimension).

    Args:
        batch: A batch :func:`batch_length` can measure, with at least 2 items.

    Returns:
        Two batches of the same kind (a mapping becomes a ``dict``), in order.

    Raises:
        ValueError: The batch cannot be measured or has fewer than 2 items.
    """
    count = batch_length(batch)
    if count is None or count < 2:
        raise ValueError(f"cannot split a batch of {count} item(s)")
    middle = count // 2
    if isinstance(batch, Mapping):
        first = {key: _slice(value, 0, middle, count) for key, value in batch.items()}
        second = {key: _slice(value, middle, count, count) for key, value in batch.items()}
        return first, second
    return batch[:middle], batch[middle:]


def search_batch_size(fits: Callable[[int], bool], *, start: int, limit: int) -> int:
    """The largest batch size for which ``fits`` holds, by doubling, then bisecting back.

    Doubles from ``start`` while ``fits`` (at most ``limit``); after the first
    failure it bisects between the last size that fitted and the one that did
    not. When ``start`` does not fit, it halves until one does.

    Args:
        fits: Runs one trial batch of the given size; ``False`` when it ran
            out of memory.
        start: The first size to try (e.g. the default batch size).
        limit: The largest size to try.

    Returns:
        The largest size found to fit (at least 1).

    Raises:
        RuntimeError: Not even a batch of one fits.
        ValueError: ``start`` or ``limit`` is below 1.
    """
    if start < 1 or limit < 1:
        raise ValueError(f"start and limit must be at least 1, got {start} and {limit}")
    size = min(start, limit)
    while not fits(size):
        if size == 1:
            raise RuntimeError("not even a batch of one item fits in the device's memory")
        size //= 2
    good, bad = size, None
    while bad is None and good < limit:
        trial = min(good * 2, limit)
        if fits(trial):
            good = trial
        else:
            bad = trial
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def find_batch_size(encoder: Encoder, *, start: int, limit: int) -> int:
    """The largest batch whose image and text forward passes both fit in ``encoder``'s device memory.

    Each trial runs one batch of grey 224x224 images (every supported family
    resizes to a fixed input size, so content and size do not matter) and
    one batch of texts of the full text length, without the out-of-memory
    splitting of ``embed_*``.

    Args:
        encoder: A loaded encoder.
        start: The first size to try.
        limit: The largest size to try.

    Returns:
        The size :func:`search_batch_size` settles on.
    """

    def fits(size: int) -> bool:
        try:
            text = encoder.prepare_texts([_PROBE_TEXT] * size)
            encoder._forward_once(encoder.forward_texts, text)
            del text
            grey = np.full((_PROBE_SIDE, _PROBE_SIDE, 3), 128, dtype=np.uint8)
            images = encoder.prepare_image_inputs([grey] * size, limits=encoder.image_limits, start=0, call_size=1)
            encoder._forward_once(encoder.forward_images, images)
            del images
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            fitted = False
        else:
            fitted = True
        free_cached_memory(encoder.device)
        return fitted

    return search_batch_size(fits, start=start, limit=limit)


def _length(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return len(value)
    return None


def _slice(value: Any, begin: int, end: int, count: int) -> Any:
    """Rows ``begin:end`` of a value that has ``count`` rows; anything else (a scalar, a shared entry) as is."""
    if _length(value) == count and (hasattr(value, "shape") or isinstance(value, (list, tuple, np.ndarray))):
        return value[begin:end]
    return value
