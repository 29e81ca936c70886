"""Exceptions raised by mmrag, each with a machine-readable ``code``.

Every error mmrag raises on purpose derives from :class:`MmragError`, so callers
can catch the whole family with one ``except`` clause, and every class has a
stable :attr:`MmragError.code` string that programs (and mmrag's own HTTP
service) match on instead of message text. Errors about bad input also derive
from :class:`ValueError` (or :class:`TypeError`), matching what Python code
expects of a function handed an argument it cannot use.

The tree::

    MmragError                      code
    ├── InvalidInputError           invalid_input      (ValueError)
    │   ├── NotASequenceError       not_a_sequence     (also TypeError)
    │   ├── ImageInputError         invalid_image
    │   ├── TextInputError          invalid_text       (also TypeError)
    │   └── InvalidFilterError      invalid_filter
    ├── UnsupportedModelError       unsupported_model  (ValueError)
    ├── UnsupportedPairError        unsupported_pair   (ValueError)
    ├── ModelNotAvailableError      model_not_available (OSError)
    ├── StoreMismatchError          store_mismatch
    ├── StoreLockedError            store_locked
    ├── OverloadedError             overloaded
    └── MissingDependencyError      missing_dependency (ImportError)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ImageInputError",
    "InvalidFilterError",
    "InvalidInputError",
    "MissingDependencyError",
    "MmragError",
    "ModelNotAvailableError",
    "NotASequenceError",
    "OverloadedError",
    "StoreLockedError",
    "StoreMismatchError",
    "TextInputError",
    "UnsupportedModelError",
    "UnsupportedPairError",
    "error_codes",
]


class MmragError(Exception):
    """Base class of every error mmrag raises on purpose.

    Attributes:
        code: A stable, machine-readable name of the error kind (e.g.
            ``"invalid_image"``); match on it, never on the message.
    """

    code: ClassVar[str] = "mmrag_error"


class InvalidInputError(MmragError, ValueError):
    """An argument or an item of one cannot be used; the message names it."""

    code: ClassVar[str] = "invalid_input"


class NotASequenceError(InvalidInputError, TypeError):
    """A single item was passed where a list of items is expected (e.g. ``embed_images(Path("a.jpg"))``)."""

    code: ClassVar[str] = "not_a_sequence"


class ImageInputError(InvalidInputError):
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

    code: ClassVar[str] = "invalid_image"

    def __init__(self, reason: str, *, index: int | None = None, item: str | None = None) -> None:
        self.reason = reason
        self.index = index
        self.item = item
        where = "image" if index is None else f"image {index}"
        if item:
            where = f"{where} ({item})"
        super().__init__(f"{where}: {reason}")


class TextInputError(InvalidInputError, TypeError):
    """A text item cannot be embedded (not a string, a lone surrogate, too long ...).

    Both a ``ValueError`` and a ``TypeError``: a non-string item is a type
    error, an unusable string a value error, and callers may catch either.

    Args:
        reason: Why the item was refused.
        index: Position of the item in its batch, if any.

    Attributes:
        reason: Why the item was refused.
        index: Position of the item in its batch, or ``None``.
    """

    code: ClassVar[str] = "invalid_text"

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(f"{'text' if index is None else f'text {index}'}: {reason}")


class InvalidFilterError(InvalidInputError):
    """A metadata filter (``where=``) is malformed; the message names the offending part."""

    code: ClassVar[str] = "invalid_filter"


class UnsupportedModelError(MmragError, ValueError):
    """The model's architecture (its config's ``model_type``) has no encoder family."""

    code: ClassVar[str] = "unsupported_model"


class UnsupportedPairError(MmragError, ValueError):
    """A reranker has no backend for a (query, candidate) modality pair it was asked to score."""

    code: ClassVar[str] = "unsupported_pair"


class ModelNotAvailableError(MmragError, OSError):
    """The model could not be found locally and could not (or may not) be downloaded."""

    code: ClassVar[str] = "model_not_available"


class StoreMismatchError(MmragError):
    """A store was opened with an encoder other than the one that built it."""

    code: ClassVar[str] = "store_mismatch"


class StoreLockedError(MmragError):
    """An embedded store is already open in another process."""

    code: ClassVar[str] = "store_locked"


class OverloadedError(MmragError):
    """A bounded queue is full: retry later (the service answers 429)."""

    code: ClassVar[str] = "overloaded"


class MissingDependencyError(MmragError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""

    code: ClassVar[str] = "missing_dependency"

    @classmethod
    def for_extra(cls, extra: str, feature: str, missing: str) -> MissingDependencyError:
        """The error for a missing optional package.

        Args:
            extra: The pip extra, e.g. ``"llama-index"``.
            feature: What needs it, e.g. ``"mmrag.llama_index"``.
            missing: The module that failed to import.

        Returns:
            An error whose message says ``pip install "mmrag[<extra>]"``.
        """
        return cls(f'{feature} needs {missing!r}, which is not installed: pip install "mmrag[{extra}]"')


def error_codes() -> dict[str, type[MmragError]]:
    """Every error code mmrag defines, with its class.

    Returns:
        ``{code: class}``, sorted by code, for :class:`MmragError` and all
        its subclasses (those defined outside this module included, once
        imported; a subclass that keeps its parent's code is not listed
        separately).

    Example:
        >>> error_codes()["invalid_image"]
        <class 'mmrag.errors.ImageInputError'>
    """
    found: dict[str, type[MmragError]] = {}
    pending: list[type[MmragError]] = [MmragError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return dict(sorted(found.items()))
