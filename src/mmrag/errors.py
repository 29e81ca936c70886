"""Exceptions raised by mmrag.

Every error mmrag raises on purpose derives from :class:`MmragError`, so callers
can catch the whole family with one ``except`` clause. Errors about bad input
also derive from :class:`ValueError`, matching what Python code expects of a
function handed an argument it cannot use.
"""

from __future__ import annotations

__all__ = [
    "ImageInputError",
    "MmragError",
    "ModelNotAvailableError",
    "StoreLockedError",
    "StoreMismatchError",
    "UnsupportedModelError",
    "UnsupportedPairError",
]


class MmragError(Exception):
    """Base class of every error mmrag raises on purpose."""


class ImageInputError(MmragError, ValueError):
    """An image input could not be resolved, fetched or decoded.

    The message names the item (its index in the batch, when there is a batch)
    and the reason, e.g. ``"image 3 ('cat.jpg'): not a supported image format
    (got 'EPS')"``.

    Args:
        reason: Why the item was refused.
        index: Position of the item in the batch it came from, if any.
        item: A short, printable description of the item (a path, a URL, or a
            type name; never the pixels or the full base64 text).

    Attributes:
        reason: Why the item was refused.
        index: Position of the item in its batch, or ``None``.
        item: Short description of the item, or ``None``.
    """

    def __init__(self, reason: str, *, index: int | None = None, item: str | None = None) -> None:
        self.reason = reason
        self.index = index
        self.item = item
        where = "image" if index is None else f"image {index}"
        if item:
            where = f"{where} ({item})"
        super().__init__(f"{where}: {reason}")

    def with_index(self, index: int) -> ImageInputError:
        """Return a copy of this error that names the item's batch position.

        Args:
            index: Position of the item in its batch.

        Returns:
            A new :class:`ImageInputError` with the same reason and item.
        """
        return ImageInputError(self.reason, index=index, item=self.item)


class UnsupportedModelError(MmragError, ValueError):
    """The model's architecture (its config's ``model_type``) has no encoder family."""


class UnsupportedPairError(MmragError, ValueError):
    """A reranker has no backend for a (query, candidate) modality pair it was asked to score."""


class ModelNotAvailableError(MmragError, OSError):
    """The model could not be found locally and could not (or may not) be downloaded."""


class StoreMismatchError(MmragError):
    """A store was opened with an encoder other than the one that built it."""


class StoreLockedError(MmragError):
    """An embedded store is already open in another process."""
