"""Resolve every kind of image input into a loaded RGB :class:`PIL.Image.Image`.

This module is the one place where mmrag turns user-supplied image inputs into
pixels. It accepts file paths, ``http``/``https`` URLs, data URIs, base64 text,
raw encoded bytes, binary file-like objects, PIL images and numpy arrays (see
:data:`ImageInput`), enforces the limits of an :class:`ImageLimits`, and raises
:class:`~mmrag.errors.ImageInputError` (a ``ValueError``) for anything it
refuses, naming the item and the reason.

The string rule
---------------
A ``str`` is interpreted by the first of these rules that applies; there is no
other guessing:

1. **It has a URL scheme**: it starts with ``scheme://`` (a scheme of two or
   more characters), or with ``name:`` where ``name`` is two or more letters,
   digits, ``+`` or ``-`` (so ``file:/etc/passwd`` and ``mailto:x`` count,
   while a Windows drive such as ``C:\\img.png`` does not). ``http`` and
   ``https`` URLs are fetched (see below); ``data:`` goes to rule 2; every
   other scheme (``file:``, ``ftp:``, ``gopher:`` ...) is refused with
   "unsupported URL scheme 'file'; only http and https are fetched". A file
   whose name starts like a scheme (``foo:bar.png``) must be passed as a
   :class:`pathlib.Path` or as ``./foo:bar.png``.
2. **It starts with** ``data:``: a data URI. It must look like
   ``data:image/<subtype>[;param...];base64,<payload>``; the payload is
   decoded strictly (rule 4's decoder).
3. **It names an existing file**: the file is read. With
   ``allow_local_paths=False`` the filesystem is never consulted (so errors
   cannot reveal whether a file exists); with ``local_root`` set, only paths
   whose real path (symlinks followed) lies inside that directory are looked
   up. Relative paths are relative to the current working directory, and
   surrounding whitespace is ignored.
4. **Otherwise** it must be strict base64: whitespace (including newlines) is
   removed and the rest is decoded with ``base64.b64decode(text,
   validate=True)`` (standard alphabet, correct padding). If that fails the
   error is "not a URL, data URI, existing file or valid base64", unless the
   string looks like a path (it contains ``/`` or ``\\`` or ends with an image
   file extension), in which case the error is the path's own
   ("file not found: ...", "local file paths are disabled ...", or "... is
   outside ImageLimits.local_root ...").

:class:`os.PathLike` objects (e.g. :class:`pathlib.Path`) are always paths.

URL fetching
------------
Only ``http`` and ``https`` are fetched. The host is resolved once with
:func:`socket.getaddrinfo`; unless ``allow_private_urls`` is set, the URL is
refused if *any* resolved address is loopback, private, link-local, multicast,
reserved, unspecified, site-local or otherwise not globally routable
(IPv4-mapped, 6to4, Teredo and NAT64 IPv6 addresses are unpacked and checked
too). The connection then goes to a vetted address itself, so a second DNS
answer cannot redirect it (DNS rebinding); the original host name is sent in
the ``Host`` header and used for TLS SNI and certificate checking. Redirects
are followed by hand, up to ``max_redirects``, and every hop is checked by the
same rules. The download has a connect timeout and a total deadline covering
all hops, and its size is capped while streaming.

Decoding
--------
Pillow opens only the formats in ``ImageLimits.formats`` (never EPS, PS, PDF or
WMF, which hand data to external programs). Width and height are checked
against ``min_side`` and ``max_pixels`` from the header before any pixel is
decoded; Pillow's own decompression-bomb warning is turned into an error for
the duration of the call. The EXIF orientation is applied, the first frame of
an animation is used, and the result is converted to RGB: transparency is
composited on white, CMYK is converted, and 16-bit or float images are scaled
to 8 bits.

Example:
    >>> from mmrag.inputs import ImageLimits, resolve_images
    >>> images = resolve_images(["cat.jpg", "https://example.com/dog.png"])
    >>> strict = ImageLimits(allow_local_paths=False, max_bytes=5_000_000)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar, Union
from urllib.parse import urljoin, urlsplit

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError, NotASequenceError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInput",
    "ImageLimits",
    "Modality",
    "QueryType",
    "as_items",
    "decode_base64_image",
    "describe_image_input",
    "image_mime_type",
    "image_reference",
    "image_source",
    "is_image_query",
    "is_url",
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

* ``str``: a URL, data URI, file path or base64 text (see the module's string
  rule).
* :class:`os.PathLike` (e.g. :class:`pathlib.Path`): always a local file path.
* ``bytes``, ``bytearray``, ``memoryview``: encoded image data (PNG, JPEG ...).
* Any object with a ``read`` method returning bytes (:class:`io.BytesIO`, a
  file opened with ``"rb"``): read from its current position to its end.
* :class:`PIL.Image.Image`: used as is (no re-encoding), converted to RGB.
* :class:`numpy.ndarray`: ``uint8`` of shape ``(H, W)``, ``(H, W, 3)`` or
  ``(H, W, 4)``.
"""

Modality = Literal["image", "text"]
"""The two kinds of item mmrag embeds."""

QueryType = Literal["auto", "text", "image"]
"""How to read a query: ``"auto"`` applies :func:`is_image_query`; ``"text"``/``"image"`` force it."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
"""File endings read as images (by ``index_folder`` and the query rule)."""

_FORBIDDEN_FORMATS = frozenset({"EPS", "PS", "PDF", "WMF", "EMF"})
_DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

_MAX_PATH_CHARS = 4096
_READ_CHUNK = 1 << 16
_IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".eps",
        ".ps",
        ".pdf",
        ".svg",
        ".heic",
        ".heif",
        ".avif",
        ".ico",
    }
)
# Text signatures Pillow has no opener for; only used to word error messages.
_EXTRA_SIGNATURES = ((b"%PDF-", "PDF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"))

# Rule 1 of the string rule: "scheme://" (2+ chars) or "name:" (2+ chars, no dots).
_SCHEME_RE = re.compile(r"^(?:([A-Za-z][A-Za-z0-9+.\-]+)://|([A-Za-z][A-Za-z0-9+\-]+):)")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_BLOCKED_IP_CATEGORIES = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
    ("site-local", "is_site_local"),
)
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


@dataclass(frozen=True)
class ImageLimits:
    """Limits and switches applied while resolving image inputs.

    All fields are keyword arguments with safe defaults for local use; a
    network-facing service should at least set ``allow_local_paths=False``.

    Args:
        max_bytes: Cap on encoded bytes (files, bytes, base64, data URIs, file
            objects and URL downloads; downloads are cut off while streaming).
            Default 20 MiB.
        max_pixels: Cap on ``width * height``, checked from the image header
            before decoding. Default 64,000,000 (8000x8000, about 192 MB as
            RGB). Pillow's own decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5M by default) is also
            enforced as an error, so a larger value here only takes effect if
            that global is raised too.
        min_side: Images whose width or height is below this are refused.
        formats: Pillow format names that may be decoded. EPS, PS, PDF and
            WMF/EMF are never allowed.
        allow_private_urls: Fetch URLs whose host resolves to loopback,
            private, link-local or other non-global addresses.
        allow_local_paths: Read local files named by strings or paths. The
            HTTP service sets this to ``False``.
        local_root: When set, local paths must resolve (real path, symlinks
            followed) to a location inside this directory.
        connect_timeout: Seconds allowed for each TCP (and TLS) connect.
        timeout: Total seconds for one URL download, redirects included.
        max_redirects: Redirects followed before giving up.
        user_agent: ``User-Agent`` header sent with URL requests.

    Raises:
        ValueError: If a limit is not positive or ``formats`` is empty or names
            a forbidden format.

    Example:
        >>> limits = ImageLimits(allow_local_paths=False, timeout=10.0)
        >>> limits.max_bytes
        20971520
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    min_side: int = 3
    formats: frozenset[str] = _DEFAULT_FORMATS
    allow_private_urls: bool = False
    allow_local_paths: bool = True
    local_root: str | os.PathLike[str] | None = None
    connect_timeout: float = 5.0
    timeout: float = 30.0
    max_redirects: int = 5
    user_agent: str = "mmrag"

    def __post_init__(self) -> None:
        """Validate the limits and normalise ``formats`` to upper case."""
        for name in ("max_bytes", "max_pixels", "min_side", "connect_timeout", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ImageLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_redirects < 0:
            raise ValueError(f"ImageLimits.max_redirects must be >= 0, got {self.max_redirects!r}")
        formats = frozenset(str(name).upper() for name in self.formats)
        if not formats:
            raise ValueError("ImageLimits.formats must name at least one format")
        forbidden = sorted(formats & _FORBIDDEN_FORMATS)
        if forbidden:
            raise ValueError(f"ImageLimits.formats may not include {', '.join(forbidden)}")
        object.__setattr__(self, "formats", formats)


_DEFAULT_LIMITS = ImageLimits()


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def resolve_image(item: ImageInput, *, limits: ImageLimits | None = None, index: int | None = None) -> Image.Image:
    """Resolve one image input into a loaded RGB image.

    Args:
        item: The input; see :data:`ImageInput` and the module's string rule.
        limits: Limits to enforce; ``ImageLimits()`` when omitted.
        index: The item's position in a batch, used in error messages.

    Returns:
        A new, fully loaded ``PIL.Image.Image`` in mode ``"RGB"`` (never the
        caller's own image object).

    Raises:
        ImageInputError: If the input cannot be read, fetched or decoded, or
            breaks a limit.

    Example:
        >>> image = resolve_image("photos/cat.jpg")
        >>> image.mode
        'RGB'
    """
    limits = limits or _DEFAULT_LIMITS
    try:
        if isinstance(item, Image.Image):
            return _from_pil(item, limits)
        if isinstance(item, np.ndarray):
            return _from_array(item, limits)
        return _decode(_encoded_bytes(item, limits), limits)
    except ImageInputError as exc:
        raise _located(exc, item, index) from exc.__cause__


def resolve_images(items: Sequence[ImageInput], *, limits: ImageLimits | None = None) -> list[Image.Image]:
    """Resolve a batch of image inputs, all or nothing.

    Args:
        items: The inputs, in order.
        limits: Limits to enforce on every item; ``ImageLimits()`` when omitted.

    Returns:
        One RGB image per item, in the same order.

    Raises:
        ImageInputError: For the first item that fails (its ``index`` names
            the position); images already resolved are closed and nothing is
            returned.
        mmrag.NotASequenceError: ``items`` is a single input, not a list.

    Example:
        >>> images = resolve_images(["a.png", b"\\x89PNG..."])
    """
    items = as_items(items, "images")
    resolved: list[Image.Image] = []
    try:
        for position, item in enumerate(items):
            resolved.append(resolve_image(item, limits=limits, index=position))
    except BaseException:
        for image in resolved:
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
    limits = limits or _DEFAULT_LIMITS
    try:
        return _encoded_bytes(item, limits)
    except ImageInputError as exc:
        raise _located(exc, item, index) from exc.__cause__


def is_url(text: str) -> bool:
    """Tell whether a string is an ``http`` or ``https`` URL (rule 1).

    Args:
        text: Any string.

    Returns:
        ``True`` if the string starts with ``http://`` or ``https://``
        (case-insensitive, surrounding whitespace ignored).

    Example:
        >>> is_url("https://example.com/cat.png"), is_url("cat.png")
        (True, False)
    """
    return isinstance(text, str) and _scheme_of(text.strip()) in ("http", "https")


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
        return _describe_string(item)
    if isinstance(item, os.PathLike):
        return _shorten(os.fsdecode(os.fspath(item)))
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
        return f"file {_shorten(name)}" if isinstance(name, str) else f"file-like {type(item).__name__}"
    return type(item).__name__


def image_source(item: object) -> str | None:
    """Return where an input came from, for the store to record.

    Args:
        item: Any object, typically an :data:`ImageInput`.

    Returns:
        The URL (as given, surrounding whitespace removed) for an ``http``/
        ``https`` URL string; the absolute path for an :class:`os.PathLike` or
        for a string naming an existing file; otherwise ``None`` (data URIs,
        base64, bytes, file objects, PIL images and arrays have no source).

    Example:
        >>> image_source("https://example.com/cat.png")
        'https://example.com/cat.png'
        >>> image_source(b"...") is None
        True
    """
    if isinstance(item, os.PathLike):
        return os.path.abspath(os.fsdecode(os.fspath(item)))
    if not isinstance(item, str):
        return None
    text = item.strip()
    if _scheme_of(text) is not None:
        return text if is_url(text) else None
    if _could_be_path(text) and os.path.isfile(text):
        return os.path.abspath(text)
    return None


_Item = TypeVar("_Item")


def as_items(items: Iterable[_Item], name: str) -> list[_Item]:
    """``items`` as a list, refusing one item passed where a list is expected.

    The one check every batch API uses: a ``str``, bytes, a path, a PIL image,
    a file object or an array of fewer than 4 dimensions is a single item
    (``list()`` would split it into characters, bytes or rows).

    Args:
        items: A sequence (or other iterable) of items.
        name: What the items are, for the message (``"images"``, ``"texts"``).

    Returns:
        A new list of the items.

    Raises:
        mmrag.NotASequenceError: ``items`` is a single item or not iterable
            (a ``TypeError`` and a ``ValueError``).

    Example:
        >>> as_items(["a.png"], "images")
        ['a.png']
    """
    single = isinstance(items, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image))
    single = single or (isinstance(items, np.ndarray) and items.ndim < 4) or hasattr(items, "read")
    if single or not hasattr(items, "__iter__"):
        raise NotASequenceError(
            f"{name} must be a list of items, not a single {type(items).__name__}; wrap it in a list"
        )
    return list(items)


def is_image_query(query: object, query_type: QueryType = "auto") -> bool:
    """Whether a query (or a candidate) is an image rather than a text.

    The rule, for ``query_type="auto"``: anything that is not a ``str`` is an
    image; a string is an image when it is an http(s) URL, a ``data:`` URI, or
    an existing file with an image ending (:data:`IMAGE_EXTENSIONS`); every
    other string is a text. ``"text"`` and ``"image"`` force the answer.

    Args:
        query: The query.
        query_type: ``"auto"``, ``"text"`` or ``"image"``.

    Returns:
        ``True`` for an image.

    Raises:
        ValueError: An unknown ``query_type``.
    """
    if query_type not in ("auto", "text", "image"):
        raise ValueError(f"query_type must be 'auto', 'text' or 'image', got {query_type!r}")
    if query_type != "auto":
        return query_type == "image"
    if not isinstance(query, str):
        return True
    text = query.strip()
    if _scheme_of(text) in ("http", "https", "data"):
        return True
    if _could_be_path(text) and os.path.splitext(text)[1].lower() in IMAGE_EXTENSIONS:
        try:
            return os.path.isfile(os.path.expanduser(text))
        except (OSError, ValueError):
            return False
    return False


def decode_base64_image(data: str | bytes) -> bytes | str:
    """Decode a stored base64 image (LlamaIndex ``ImageNode.image``, LangChain ``image_base64``).

    Args:
        data: Base64 text or bytes, or a ``data:`` URI.

    Returns:
        The decoded bytes; a data URI or data that is not strict base64 comes
        back unchanged (the resolver then names what is wrong with it).
    """
    if isinstance(data, str) and _scheme_of(data.strip()) == "data":
        return data
    compact = "".join(data.split()) if isinstance(data, str) else b"".join(data.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return data


def image_reference(text: str, *, may_be_base64: bool) -> Any:
    """A string that names an image, as the resolver and the query rule should see it.

    http(s) URLs and data URIs stay strings; strict base64 (where allowed)
    becomes bytes; anything else is a path, returned as :class:`pathlib.Path`
    (always read as an image, never as text).

    Args:
        text: A URL, data URI, path or (with ``may_be_base64``) base64 text.
        may_be_base64: Whether the string may hold base64 image data.

    Returns:
        A ``str``, ``bytes`` or ``Path``.
    """
    from pathlib import Path

    stripped = text.strip()
    if _scheme_of(stripped) in ("http", "https", "data"):
        return stripped
    if may_be_base64 and not is_image_query(stripped):
        try:
            return base64.b64decode("".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    return Path(stripped)


def image_mime_type(data: bytes, source: str = "") -> str:
    """The MIME type of encoded image bytes, from their header (no decoding).

    Args:
        data: Encoded image bytes.
        source: A file name or URL to guess from when the header says nothing.

    Returns:
        E.g. ``"image/png"``; ``"application/octet-stream"`` when unknown.
    """
    import mimetypes

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            mime = Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError):
        mime = None
    return mime or mimetypes.guess_type(source)[0] or "application/octet-stream"


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
        return _read_file(_checked_real_path(os.fsdecode(os.fspath(item)), limits), limits)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _buffer_bytes(item, limits)
    if hasattr(item, "read"):
        return _read_capped(item, limits, what="file object")  # type: ignore[arg-type]
    raise ImageInputError(f"unsupported image input type {type(item).__name__!r}")


def _too_large(what: str, limits: ImageLimits) -> ImageInputError:
    """Build the error for an input over ``max_bytes``."""
    return ImageInputError(
        f"{what} is larger than max_bytes={limits.max_bytes} bytes; raise ImageLimits.max_bytes to accept it"
    )


def _buffer_bytes(data: bytes | bytearray | memoryview, limits: ImageLimits) -> bytes:
    """Check a bytes-like input against ``max_bytes`` and return it as bytes."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > limits.max_bytes:
        raise _too_large("input", limits)
    return data if isinstance(data, bytes) else bytes(data)


def _read_capped(stream: IO[bytes], limits: ImageLimits, *, what: str) -> bytes:
    """Read a binary stream to its end, stopping as soon as it exceeds ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = stream.read(_READ_CHUNK)
        except OSError as exc:
            raise ImageInputError(f"cannot read {what}: {exc}") from exc
        if isinstance(chunk, str):
            raise ImageInputError(f"{what} returned text; open it in binary mode ('rb')")
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(what, limits)
        chunks.append(bytes(chunk))


# --------------------------------------------------------------------------- #
# Strings: scheme, data URI, path, base64
# --------------------------------------------------------------------------- #


def _scheme_of(text: str) -> str | None:
    """Return the lower-case URL scheme of ``text`` per rule 1, or ``None``."""
    match = _SCHEME_RE.match(text)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).lower()


def _string_bytes(text: str, limits: ImageLimits) -> bytes:
    """Apply the string rule and return the encoded bytes it leads to."""
    stripped = text.strip()
    scheme = _scheme_of(stripped)
    if scheme == "data":
        return _data_uri_bytes(stripped, limits)
    if scheme is not None:
        return _fetch_url(stripped, limits)
    path_error: _PathRefused | None = None
    if _could_be_path(stripped):
        try:
            real = _checked_real_path(stripped, limits)
        except _PathRefused as exc:  # not usable as a path; it may still be base64
            path_error = exc
        else:
            return _read_file(real, limits)
    data = _strict_b64decode(text, limits)
    if data is not None:
        return data
    if path_error is not None and _looks_like_path(stripped):
        raise path_error
    raise ImageInputError("not a URL, data URI, existing file or valid base64")


def _could_be_path(text: str) -> bool:
    """Tell whether a string is short and clean enough to be a file path."""
    return 0 < len(text) <= _MAX_PATH_CHARS and "\0" not in text and "\n" not in text


def _looks_like_path(text: str) -> bool:
    """Tell whether a string was probably meant as a path (for error wording)."""
    if not _could_be_path(text):
        return False
    suffix = os.path.splitext(text.strip())[1].lower()
    return "/" in text or "\\" in text or suffix in _IMAGE_SUFFIXES


class _PathRefused(ImageInputError):
    """A path that is disabled, outside ``local_root`` or missing (never raised publicly)."""


def _checked_real_path(path: str, limits: ImageLimits) -> str:
    """Return the real path of an existing file the limits allow reading.

    The order of checks means no error reveals whether a file exists where
    the limits forbid looking.

    Raises:
        _PathRefused: If local paths are disabled, the path leaves
            ``local_root``, or nothing exists there.
    """
    if not limits.allow_local_paths:
        raise _PathRefused(f"local file paths are disabled (ImageLimits.allow_local_paths=False): {_shorten(path)}")
    real = os.path.realpath(path)
    if limits.local_root is not None and not _is_inside(real, limits.local_root):
        root = os.fspath(limits.local_root)
        raise _PathRefused(f"path is outside ImageLimits.local_root ({root}): {_shorten(path)}")
    if not os.path.exists(real):
        raise _PathRefused(f"file not found: {_shorten(path)}")
    return real


def _is_inside(real: str, root: str | os.PathLike[str]) -> bool:
    """Tell whether the real path ``real`` lies inside directory ``root``."""
    real_root = os.path.realpath(root)
    try:
        return os.path.commonpath([real, real_root]) == real_root
    except ValueError:  # different drives on Windows
        return False


def _read_file(real: str, limits: ImageLimits) -> bytes:
    """Read a regular file, refusing devices, FIFOs and files over ``max_bytes``."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)  # O_NONBLOCK: opening a FIFO must not hang
    except OSError as exc:
        raise ImageInputError(f"cannot open file {_shorten(real)}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageInputError(f"not a regular file: {_shorten(real)}")
        if info.st_size > limits.max_bytes:
            raise _too_large("file", limits)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        return _read_capped(handle, limits, what="file")


def _strict_b64decode(text: str, limits: ImageLimits) -> bytes | None:
    """Decode strict standard base64 (whitespace ignored), or return ``None``.

    Raises:
        ImageInputError: If the decoded data would exceed ``max_bytes``.
    """
    compact = "".join(text.split())
    if not compact:
        return None
    if len(compact) // 4 * 3 > limits.max_bytes + 2:
        raise _too_large("base64 data", limits)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _buffer_bytes(data, limits)


def _data_uri_bytes(uri: str, limits: ImageLimits) -> bytes:
    """Decode a ``data:image/...;base64,...`` URI strictly."""
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise ImageInputError("malformed data URI: no ',' before the data")
    media_type, *params = [part.strip().lower() for part in header.split(";")]
    if not media_type.startswith("image/"):
        raise ImageInputError(f"data URI media type must be image/*, got {media_type or 'none'!r}")
    if not params or params[-1] != "base64":
        raise ImageInputError("data URI must be base64-encoded (';base64,')")
    data = _strict_b64decode(payload, limits)
    if data is None:
        raise ImageInputError("data URI payload is not valid base64")
    return data


def _describe_string(text: str) -> str:
    """Describe a string input without dumping base64 or URL queries."""
    stripped = text.strip()
    scheme = _scheme_of(stripped)
    if scheme == "data":
        media_type = stripped[len("data:") :].split(",", 1)[0].split(";", 1)[0].strip()
        return f"data URI ({_shorten(media_type, 40) or 'no media type'}, {len(text)} chars)"
    if scheme in ("http", "https"):
        return _redact_url(stripped)
    if scheme is not None or (_looks_like_path(text) and not _is_base64_text(text)):
        return _shorten(text)
    return f"base64 string ({len(text)} chars)"


def _is_base64_text(text: str) -> bool:
    """Tell whether a (short) string is valid strict base64."""
    try:
        base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _shorten(text: str, limit: int = 120) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _redact_url(url: str) -> str:
    """Return ``url`` without user info, query or fragment, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    query = "?..." if parts.query else ""
    return _shorten(f"{parts.scheme}://{netloc}{parts.path}{query}", 200)


# --------------------------------------------------------------------------- #
# URL fetching
# --------------------------------------------------------------------------- #
#
# Why http.client on raw sockets instead of urllib or httpx: the request must go
# to the address that was vetted, not to whatever a second DNS lookup returns,
# while the Host header, SNI and certificate check use the URL's host name.
# http.client lets us supply the connected socket ourselves (and it ignores
# proxy environment variables and never asks for compressed bodies), which
# keeps that guarantee in a few lines of stdlib code with no extra dependency.


@dataclass(frozen=True)
class _Url:
    """A parsed, fetchable URL."""

    scheme: str
    host: str
    port: int
    target: str
    text: str


@dataclass(frozen=True)
class _Address:
    """One vetted address to connect to."""

    family: int
    sockaddr: tuple[object, ...]


def _parse_url(url: str) -> _Url:
    """Parse an http(s) URL, refusing other schemes and malformed URLs."""
    scheme = _scheme_of(url)
    if scheme not in ("http", "https"):
        raise ImageInputError(f"unsupported URL scheme {scheme!r}; only http and https are fetched")
    parts = urlsplit(url)
    text = _redact_url(url)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ImageInputError(f"malformed URL {text}: {exc}") from exc
    host = parts.hostname
    if not host:
        raise ImageInputError(f"malformed URL {text}: no host name")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ImageInputError(f"malformed URL {text}: invalid host name") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Url(scheme=scheme, host=host, port=port, target=target, text=text)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address string from getaddrinfo (dropping any ``%scope``)."""
    return ipaddress.ip_address(address.split("%", 1)[0])


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def _blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Say why an address may not be fetched without ``allow_private_urls``, or ``None``."""
    for embedded in _embedded_ipv4(ip):
        reason = _blocked_reason(embedded)
        if reason is not None:
            return reason
    for label, attribute in _BLOCKED_IP_CATEGORIES:
        if getattr(ip, attribute, False):
            return label
    return None if ip.is_global else "not globally routable"


def _vetted_addresses(url: _Url, limits: ImageLimits) -> list[_Address]:
    """Resolve the URL's host and refuse it if any address is not allowed."""
    try:
        infos = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageInputError(f"cannot resolve host {url.host!r} of {url.text}: {exc}") from exc
    addresses: list[_Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        ip = _ip(str(sockaddr[0]))
        reason = None if limits.allow_private_urls else _blocked_reason(ip)
        if reason is not None:
            raise ImageInputError(
                f"refused to fetch {url.text}: address {ip} is {reason};"
                " pass allow_private_urls=True (ImageLimits) to allow private addresses"
            )
        address = _Address(family, tuple(sockaddr))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageInputError(f"cannot resolve host {url.host!r} of {url.text}: no addresses")
    return addresses


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; raise :class:`TimeoutError` if none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _connect_vetted(addresses: Sequence[_Address], connect_timeout: float, deadline: float) -> socket.socket:
    """Connect to the first reachable vetted address (never re-resolving the name)."""
    last_error: OSError = OSError("no address to connect to")
    for address in addresses:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(connect_timeout, _remaining(deadline)))
            sock.connect(address.sockaddr)
            sock.settimeout(_remaining(deadline))
        except OSError as exc:  # TimeoutError and ConnectionError included
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to pre-vetted addresses; the host name is only sent as ``Host``."""

    def __init__(self, url: _Url, addresses: Sequence[_Address], limits: ImageLimits, deadline: float) -> None:
        """Remember where to connect; nothing is opened yet."""
        super().__init__(url.host, url.port, timeout=limits.connect_timeout)
        self._addresses = tuple(addresses)
        self._connect_timeout = limits.connect_timeout
        self._deadline = deadline
        # http.client drops ``self.sock`` once a response will close the
        # connection, while the response keeps reading from the socket; keep
        # our own reference so timeouts and the hard deadline still reach it.
        self.active_socket: socket.socket | None = None

    def connect(self) -> None:
        """Open the socket to a vetted address."""
        self.sock = self.active_socket = _connect_vetted(self._addresses, self._connect_timeout, self._deadline)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The TLS variant: SNI and certificate checks use the URL's host name."""

    default_port = 443

    def connect(self) -> None:
        """Open the socket to a vetted address and wrap it in verified TLS."""
        super().connect()
        context = ssl.create_default_context()
        self.sock = self.active_socket = context.wrap_socket(self.sock, server_hostname=self.host)


@contextlib.contextmanager
def _hard_deadline(connection: _PinnedHTTPConnection, deadline: float) -> Iterator[None]:
    """Shut the connection's socket down when the deadline passes.

    Socket timeouts bound each receive; this bounds the whole exchange even
    when a server trickles header lines one byte at a time.
    """

    def abort() -> None:
        sock = connection.active_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), abort)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download an http(s) URL under the SSRF, redirect, time and size limits."""
    deadline = time.monotonic() + limits.timeout
    current = url
    for _hop in range(limits.max_redirects + 1):
        parsed = _parse_url(current)
        addresses = _vetted_addresses(parsed, limits)
        body, location = _get_once(parsed, addresses, limits, deadline)
        if location is None:
            return body
        current = urljoin(current, location)
    raise ImageInputError(
        f"too many redirects fetching {_redact_url(url)} (more than {limits.max_redirects});"
        " raise ImageLimits.max_redirects to follow more"
    )


def _get_once(
    url: _Url, addresses: Sequence[_Address], limits: ImageLimits, deadline: float
) -> tuple[bytes, str | None]:
    """Make one GET request; return ``(body, None)`` or ``(b"", redirect_location)``."""
    connection_type = _PinnedHTTPSConnection if url.scheme == "https" else _PinnedHTTPConnection
    connection = connection_type(url, addresses, limits, deadline)
    headers = {"User-Agent": limits.user_agent, "Accept": "image/*", "Connection": "close"}
    response: http.client.HTTPResponse | None = None
    try:
        with _hard_deadline(connection, deadline):
            connection.request("GET", url.target, headers=headers)
            response = connection.getresponse()
            if response.status in _REDIRECT_STATUSES:
                return b"", _redirect_location(response, url)
            if not 200 <= response.status < 300:
                raise ImageInputError(f"HTTP {response.status} {response.reason} fetching {url.text}")
            return _read_body(response, connection, url, limits, deadline), None
    except ImageInputError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _network_error(exc, url, limits, deadline) from exc
    finally:
        if response is not None:
            response.close()  # the response holds the socket open after connection.close()
        connection.close()


def _redirect_location(response: http.client.HTTPResponse, url: _Url) -> str:
    """Return a redirect's ``Location`` header or refuse the response."""
    location = response.getheader("Location")
    if not location:
        raise ImageInputError(f"HTTP {response.status} redirect without a Location header from {url.text}")
    return location.strip()


def _read_body(
    response: http.client.HTTPResponse,
    connection: _PinnedHTTPConnection,
    url: _Url,
    limits: ImageLimits,
    deadline: float,
) -> bytes:
    """Stream a response body, enforcing ``max_bytes`` and the deadline."""
    declared = _content_length(response)
    if declared is not None and declared > limits.max_bytes:
        raise _too_large(f"download ({declared} bytes declared by {url.text})", limits)
    chunks: list[bytes] = []
    total = 0
    while True:
        left = _remaining(deadline)
        if connection.active_socket is not None:
            connection.active_socket.settimeout(left)
        chunk = response.read1(_READ_CHUNK)  # at most one recv, so the timeout holds
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(f"download from {url.text}", limits)
        chunks.append(chunk)
    _remaining(deadline)  # an EOF caused by the hard deadline is a timeout
    if declared is not None and total != declared:
        raise ImageInputError(f"download from {url.text} incomplete: got {total} of {declared} bytes")
    return b"".join(chunks)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """Return the declared ``Content-Length``, or ``None`` if absent or invalid."""
    value = (response.getheader("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _network_error(exc: BaseException, url: _Url, limits: ImageLimits, deadline: float) -> ImageInputError:
    """Word a network failure as an :class:`ImageInputError`."""
    if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
        return ImageInputError(
            f"timed out fetching {url.text} (ImageLimits.timeout={limits.timeout}s,"
            f" connect_timeout={limits.connect_timeout}s)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImageInputError(f"TLS certificate check failed for {url.host}: {exc.verify_message}")
    if isinstance(exc, ConnectionRefusedError):
        return ImageInputError(f"connection refused fetching {url.text}")
    return ImageInputError(f"cannot fetch {url.text}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- #
# Decoding and conversion to RGB
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def _pillow_errors() -> Iterator[None]:
    """Turn Pillow failures (and its decompression-bomb warning) into ImageInputError.

    The warning filter is local to this block. ``warnings.catch_warnings`` is
    not thread-safe before Python 3.14, which is acceptable because it is only
    a second line of defence: ``max_pixels`` is checked from the header by
    :func:`_check_dimensions` before any pixel is decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageInputError(f"image too large: {exc}") from exc
        except Exception as exc:  # Pillow's plugins raise many types on hostile data
            raise ImageInputError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    """Refuse images under ``min_side`` or over ``max_pixels``."""
    width, height = size
    if width < limits.min_side or height < limits.min_side:
        raise ImageInputError(f"image is {width}x{height}; both sides must be at least {limits.min_side} pixels")
    if width * height > limits.max_pixels:
        raise ImageInputError(
            f"image is {width}x{height} ({width * height} pixels), over max_pixels="
            f"{limits.max_pixels}; raise ImageLimits.max_pixels to accept it"
        )


def _decode(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode encoded bytes into an RGB image under the limits."""
    if not data:
        raise ImageInputError("empty input (0 bytes)")
    with _pillow_errors():
        image = _open_restricted(data, limits)
        try:
            _check_dimensions(image.size, limits)
            image.load()
            oriented = ImageOps.exif_transpose(image)  # a new image, detached from the file
        finally:
            image.close()
        return _to_rgb(oriented)


def _open_restricted(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open ``data`` with Pillow, trying only the allowed formats."""
    Image.init()
    formats = [name for name in sorted(limits.formats) if name in Image.OPEN]
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as exc:
        raise ImageInputError(_unidentified_reason(data, limits)) from exc


def _unidentified_reason(data: bytes, limits: ImageLimits) -> str:
    """Explain why Pillow could not open ``data`` with the allowed formats."""
    detected = _sniff_format(data[:16])
    if detected is None:
        return "cannot decode image: not a recognised image format"
    if detected in limits.formats:
        return f"cannot decode image: corrupt or truncated {detected} data"
    return f"unsupported image format {detected!r} (allowed: {', '.join(sorted(limits.formats))})"


def _sniff_format(prefix: bytes) -> str | None:
    """Name the format of ``prefix`` using only Pillow's signature checks (no decoding)."""
    for signature, name in _EXTRA_SIGNATURES:
        if prefix.startswith(signature):
            return name
    for name, (_factory, accept) in Image.OPEN.items():
        if accept is None:
            continue
        try:
            matched = accept(prefix)
        except Exception:  # a signature check failing just means "not this format"
            continue
        if matched and not isinstance(matched, str):  # a str is Pillow's "maybe" warning
            return name
    return None


def _from_pil(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """Validate a caller's PIL image and return an RGB copy (no re-encoding)."""
    _check_dimensions(image.size, limits)
    with _pillow_errors():
        return _to_rgb(ImageOps.exif_transpose(image))


def _from_array(array: np.ndarray, limits: ImageLimits) -> Image.Image:
    """Convert a ``uint8`` HxW, HxWx3 or HxWx4 array into an RGB image."""
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype != np.uint8 or not shape_ok:
        raise ImageInputError(
            f"unsupported ndarray of shape {array.shape} and dtype {array.dtype};"
            " expected uint8 with shape (H, W), (H, W, 3) or (H, W, 4)"
        )
    height, width = array.shape[:2]
    _check_dimensions((width, height), limits)
    with _pillow_errors():
        return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB, compositing transparency on white."""
    if image.mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float pixels to ``uint8`` without clipping.

    ``I;16*`` modes map 0..65535 to 0..255. ``I`` and ``F`` use the first range
    that holds all values: 0..1 (``F`` only), 0..255, 0..65535, else the
    image's own minimum..maximum.
    """
    if mode.startswith("I;16"):
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    floats = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = _value_range(floats, mode)
    scaled = (floats - low) * (255.0 / (high - low)) + 0.5
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _value_range(values: np.ndarray, mode: str) -> tuple[float, float]:
    """Pick the nominal value range of an ``I`` or ``F`` image."""
    smallest, largest = float(values.min()), float(values.max())
    candidates = [(0.0, 1.0)] if mode == "F" else []
    candidates += [(0.0, 255.0), (0.0, 65535.0)]
    for low, high in candidates:
        if smallest >= low and largest <= high:
            return low, high
    return smallest, max(largest, smallest + 1.0)
