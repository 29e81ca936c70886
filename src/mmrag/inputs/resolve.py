"""The resolver: any :data:`ImageInput` to one loaded RGB image, each input resolved once.

:func:`resolve_image` dispatches on the input's type (and, for a ``str``, on
the branch :func:`~mmrag.inputs.strings.string_branch` picks), reads the
encoded bytes (file, URL, data URI, base64, buffer, file object) and decodes
them, or validates in-memory pixels. It remembers every image it returns, so
resolving one of its own results again returns that same object at no cost;
see :func:`resolve_image`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from typing import IO, Union, cast

import numpy as np
from PIL import Image

from mmrag.errors import ImageInputError
from mmrag.inputs import decode
from mmrag.inputs.fetch import fetch_url
from mmrag.inputs.files import _PathRefused, checked_real_path, read_capped, read_file
from mmrag.inputs.items import as_items
from mmrag.inputs.limits import DEFAULT_LIMITS, ImageLimits, capped_bytes
from mmrag.inputs.strings import (
    could_be_path,
    data_uri_bytes,
    describe_string,
    local_path,
    looks_like_path,
    shorten,
    strict_b64decode,
    string_branch,
)

__all__ = [
    "ImageInput",
    "describe_image_input",
    "image_source",
    "read_image_bytes",
    "resolve_image",
    "resolve_images",
]

ImageInput = Union[  # noqa: UP007 - a runtime alias; Python 3.10 cannot "|" os.PathLike[str] with IO[bytes]
    str,
    os.PathLike[str],
    bytes,
    bytearray,
    memoryview,
    IO[bytes],
    Image.Image,
    np.ndarray,
]
"""Everything :func:`resolve_image` accepts.

* ``str``: a URL, data URI, file path or base64 text (see the string rule in
  :mod:`mmrag.inputs`).
* :class:`os.PathLike` (e.g. :class:`pathlib.Path`): always a local file path.
* ``bytes``, ``bytearray``, ``memoryview``: encoded image data (PNG, JPEG ...).
* Any object with a ``read`` method returning bytes (:class:`io.BytesIO`, a
  file opened with ``"rb"``): read from its current position to its end.
* :class:`PIL.Image.Image`: used as is (no re-encoding), converted to RGB.
* :class:`numpy.ndarray`: ``uint8`` of shape ``(H, W)``, ``(H, W, 3)`` or
  ``(H, W, 4)``.
"""

# Every image resolve_image returned that is still alive, keyed by id(). A PIL
# image is unhashable (it defines __eq__), so a WeakSet cannot hold it; the
# identity check on lookup makes a recycled id harmless, and an entry goes
# away with its image.
_produced: weakref.WeakValueDictionary[int, Image.Image] = weakref.WeakValueDictionary()


def _remember(image: Image.Image) -> Image.Image:
    """Record ``image`` as produced here and return it."""
    _produced[id(image)] = image
    return image


def _is_produced(image: Image.Image) -> bool:
    """Whether ``image`` is one :func:`resolve_image` returned (and it is still RGB)."""
    return _produced.get(id(image)) is image and image.mode == "RGB"


def resolve_image(
    item: ImageInput,
    *,
    limits: ImageLimits | None = None,
    index: int | None = None,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Resolve one image input into a loaded RGB image.

    An image this function returned earlier comes back unchanged, as the
    same object: it was checked against the limits in force when it was
    resolved, and nothing is copied, fetched or decoded again. So a service
    or a store can resolve an input once and hand the result to an encoder or
    a reranker, which resolve their inputs too, at no extra cost. (If that
    image was changed in place to another mode, it is converted again like
    any caller's image.)

    Args:
        item: The input; see :data:`ImageInput` and the string rule in
            :mod:`mmrag.inputs`.
        limits: Limits to enforce; ``ImageLimits()`` when omitted.
        index: The item's position in a batch, used in error messages.
        draft: ``(width, height)``: decode a JPEG with DCT scaling to the
            smallest power-of-two reduction that keeps both sides at least
            this (fast, not pixel-identical; the limits still apply to the full
            size). Other formats and pixel inputs ignore it.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"``: a new one for
        every input except an image this function produced itself (a
        caller's own PIL image is never returned or changed; it is copied).

    Raises:
        ImageInputError: If the input cannot be read, fetched or decoded, or
            breaks a limit.

    Example:
        >>> image = resolve_image("photos/cat.jpg")
        >>> image.mode
        'RGB'
        >>> resolve_image(image) is image
        True
    """
    if isinstance(item, Image.Image) and _is_produced(item):
        return item
    limits = limits or DEFAULT_LIMITS
    try:
        if isinstance(item, Image.Image):
            return _remember(decode.from_pil(item, limits))
        if isinstance(item, np.ndarray):
            return _remember(decode.from_array(item, limits))
        return _remember(decode.decode_image(_encoded_bytes(item, limits), limits, draft))
    except ImageInputError as exc:
        raise _located(exc, item, index) from exc.__cause__


def resolve_images(items: Iterable[ImageInput], *, limits: ImageLimits | None = None) -> list[Image.Image]:
    """Resolve a batch of image inputs, all or nothing.

    Args:
        items: The inputs, in order (a list or tuple; a single input, a set
            or a mapping is refused).
        limits: Limits to enforce on every item; ``ImageLimits()`` when omitted.

    Returns:
        One RGB image per item, in the same order.

    Raises:
        ImageInputError: For the first item that fails (its ``index`` names
            the position); images already resolved by this call are closed
            (an already-resolved image passed in is left open) and nothing is
            returned.
        mmrag.NotASequenceError: ``items`` is a single input, a set or a
            mapping, not a list.

    Example:
        >>> images = resolve_images(["a.png", b"\\x89PNG..."])
    """
    listed = as_items(items, "images")
    resolved: list[Image.Image] = []
    try:
        for position, item in enumerate(listed):
            resolved.append(resolve_image(item, limits=limits, index=position))
    except BaseException:
        for image, item in zip(resolved, listed):
            if image is not item:
                image.close()
        raise
    return resolved


def read_image_bytes(item: ImageInput, *, limits: ImageLimits | None = None, index: int | None = None) -> bytes | None:
    """Return the encoded bytes behind an input, without decoding them.

    Paths are read, URLs fetched, data URIs and base64 decoded, file objects
    read, all under the same rules and limits as :func:`resolve_image`.

    Args:
        item: The input.
        limits: Limits to enforce; ``ImageLimits()`` when omitted.
        index: The item's position in a batch, used in error messages.

    Returns:
        The encoded bytes, or ``None`` for PIL images and numpy arrays, which
        carry pixels rather than an encoded file.

    Raises:
        ImageInputError: If the input cannot be read or fetched, breaks
            ``max_bytes``, or is of an unsupported type.

    Example:
        >>> read_image_bytes("data:image/png;base64,iVBORw0KGgo=")[:4]
        b'\\x89PNG'
    """
    if isinstance(item, (Image.Image, np.ndarray)):
        return None
    limits = limits or DEFAULT_LIMITS
    try:
        return _encoded_bytes(item, limits)
    except ImageInputError as exc:
        raise _located(exc, item, index) from exc.__cause__


def describe_image_input(item: object) -> str:
    """Describe an input in a few printable words, for errors and logs.

    Never includes pixels, the full base64 text or a URL's query string.

    Args:
        item: Any object, typically an :data:`ImageInput`.

    Returns:
        For example ``"photos/cat.jpg"``, ``"https://example.com/a.png"``,
        ``"data URI (image/png, 1234 chars)"``, ``"base64 string (5000 chars)"``,
        ``"bytes (1234)"``, ``"PIL.Image 640x480 RGB"`` or
        ``"ndarray (480, 640, 3) uint8"``.

    Example:
        >>> describe_image_input(b"\\x89PNG....")
        'bytes (8)'
    """
    if isinstance(item, str):
        return describe_string(item)
    if isinstance(item, os.PathLike):
        return shorten(os.fsdecode(os.fspath(item)))
    if isinstance(item, (bytes, bytearray)):
        return f"{type(item).__name__} ({len(item)})"
    if isinstance(item, memoryview):
        return f"memoryview ({item.nbytes})"
    if isinstance(item, Image.Image):
        return f"PIL.Image {item.width}x{item.height} {item.mode}"
    if isinstance(item, np.ndarray):
        return f"ndarray {item.shape} {item.dtype}"
    if hasattr(item, "read"):
        name = getattr(item, "name", None)
        return f"file {shorten(name)}" if isinstance(name, str) else f"file-like {type(item).__name__}"
    return type(item).__name__


def image_source(item: object) -> str | None:
    """Return where an input came from, for the store to record.

    Args:
        item: Any object, typically an :data:`ImageInput`.

    Returns:
        The URL (as given, surrounding whitespace removed) for an ``http``/
        ``https`` URL string; the absolute path for an :class:`os.PathLike` or
        for a string naming an existing file (a leading ``~`` expanded);
        otherwise ``None`` (data URIs, base64, bytes, file objects, PIL images
        and arrays have no source).

    Example:
        >>> image_source("https://example.com/cat.png")
        'https://example.com/cat.png'
        >>> image_source(b"...") is None
        True
    """
    if isinstance(item, os.PathLike):
        return os.path.abspath(local_path(os.fsdecode(os.fspath(item))))
    if not isinstance(item, str):
        return None
    text = item.strip()
    branch = string_branch(text)
    if branch != "local":
        return text if branch == "url" else None
    if could_be_path(text) and os.path.isfile(local_path(text)):
        return os.path.abspath(local_path(text))
    return None


# --------------------------------------------------------------------------- #
# Dispatch and error location
# --------------------------------------------------------------------------- #


def _located(error: ImageInputError, item: object, index: int | None) -> ImageInputError:
    """Return ``error`` again, naming the item's description and batch index."""
    return ImageInputError(error.reason, index=index, item=error.item or describe_image_input(item))


def _encoded_bytes(item: object, limits: ImageLimits) -> bytes:
    """Return the encoded image bytes behind any non-pixel input."""
    if isinstance(item, str):
        return _string_bytes(item, limits)
    if isinstance(item, os.PathLike):
        return read_file(checked_real_path(os.fsdecode(os.fspath(item)), limits), limits)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return capped_bytes(item, limits)
    if hasattr(item, "read"):
        return read_capped(cast("IO[bytes]", item), limits, what="file object")
    raise ImageInputError(f"unsupported image input type {type(item).__name__!r}")


def _string_bytes(text: str, limits: ImageLimits) -> bytes:
    """Apply the string rule and return the encoded bytes it leads to."""
    stripped = text.strip()
    branch = string_branch(stripped)
    if branch == "data":
        return data_uri_bytes(stripped, limits)
    if branch != "local":  # "url", or "other-scheme", which the fetcher refuses by name
        return fetch_url(stripped, limits)
    path_error: _PathRefused | None = None
    if could_be_path(stripped):
        try:
            real = checked_real_path(stripped, limits)
        except _PathRefused as exc:  # not usable as a path; it may still be base64
            path_error = exc
        else:
            return read_file(real, limits)
    data = strict_b64decode(text, limits)
    if data is not None:
        return data
    if path_error is not None and looks_like_path(stripped):
        raise path_error
    raise ImageInputError("not a URL, data URI, existing file or valid base64")
