"""The batch checks every API shares: :func:`as_items` (a list, not one item) and :func:`as_texts`.

Every method that takes a batch (``Encoder.embed_texts``/``embed_images``/
``embed_fused``, ``Reranker`` candidates, ``EmbeddingBatcher`` submissions,
:func:`~mmrag.inputs.resolve_images`) passes its argument through
:func:`as_items`, so a single item is refused the same way everywhere, with
:class:`~mmrag.errors.NotASequenceError` and the same message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Literal, TypeVar

import numpy as np
from PIL import Image

from mmrag.errors import NotASequenceError, TextInputError

__all__ = ["Modality", "as_items", "as_texts"]

Modality = Literal["image", "text"]
"""The two kinds of item mmrag embeds."""

_Item = TypeVar("_Item")
_SINGLE_TYPES = (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)


def as_items(items: Iterable[_Item], name: str) -> list[_Item]:
    """``items`` as a list, refusing one item passed where a list is expected.

    The one check every batch API uses. A ``str``, bytes, a path, a PIL image,
    a file object or an array of fewer than 4 dimensions is a single item
    (``list()`` would split it into characters, bytes or rows); a set or a
    mapping has no item order a result could follow. Any other iterable
    (list, tuple, generator, 4-D array of images) is taken in its order.

    Args:
        items: A sequence (or other ordered iterable) of items.
        name: What the items are, for the message (``"images"``, ``"texts"``).

    Returns:
        A new list of the items.

    Raises:
        mmrag.NotASequenceError: ``items`` is a single item, a set or mapping,
            or not iterable (a ``TypeError`` and a ``ValueError``), e.g.
            "images must be a list of items, not a single PosixPath; wrap it
            in a list".

    Example:
        >>> as_items(["a.png"], "images")
        ['a.png']
    """
    single = isinstance(items, _SINGLE_TYPES) or hasattr(items, "read")
    single = single or (isinstance(items, np.ndarray) and items.ndim < 4)
    if single or not hasattr(items, "__iter__"):
        raise NotASequenceError(
            f"{name} must be a list of items, not a single {type(items).__name__}; wrap it in a list"
        )
    if isinstance(items, (AbstractSet, Mapping)):
        raise NotASequenceError(
            f"{name} must be a list of items, not a {type(items).__name__} (order undefined); pass a list"
        )
    return list(items)


def as_texts(texts: Iterable[object], name: str = "texts") -> list[str]:
    """``texts`` as a list of strings that can be embedded, naming the first bad item.

    Applies :func:`as_items`, then refuses any item that is not a ``str`` and
    any string that is not valid Unicode (a lone surrogate such as
    ``"a\\ud800b"``, which no tokenizer can encode).

    Args:
        texts: The texts.
        name: What the texts are, for the single-item message.

    Returns:
        A new list of the texts.

    Raises:
        mmrag.NotASequenceError: As in :func:`as_items`.
        mmrag.TextInputError: An item is not a string or holds a lone
            surrogate; the message names its index ("text 1: expected str,
            got int").

    Example:
        >>> as_texts(("a cat", "a dog"))
        ['a cat', 'a dog']
    """
    return [_checked_text(text, index) for index, text in enumerate(as_items(texts, name))]


def _checked_text(text: object, index: int | None = None) -> str:
    """Return a text item, refusing one that is not a ``str`` or is not valid Unicode.

    Args:
        text: The item.
        index: Its position in the batch, for the message.

    Returns:
        ``text``, now known to be a ``str``.

    Raises:
        mmrag.TextInputError: As in :func:`as_texts`.
    """
    if not isinstance(text, str):
        raise TextInputError(f"expected str, got {type(text).__name__}", index=index)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            raise TextInputError(
                f"not valid Unicode: lone surrogate U+{code:04X} at position {exc.start}", index=index
            ) from None
    return text
