"""The string rule: what a ``str`` names (URL, data URI, file, base64), and the query rule built on it.

See :mod:`mmrag.inputs` for the rule itself. Everything here is lexical except
:func:`is_image_file` (one ``isfile`` call): deciding which branch of the rule
a string takes (:func:`string_branch`), the path heuristics, strict base64 and
data URIs, and the wording helpers (:func:`shorten`, :func:`redact_url`) the
other modules use so that no message dumps base64 or a URL's query string.

:func:`is_image_query` and the resolver (:func:`mmrag.inputs.resolve_image`)
both start from :func:`string_branch` and share :func:`could_be_path` and
:func:`local_path`, so a string the query rule calls an image is always
resolved by the branch that made it an image.

Names not in ``__all__`` are shared by the modules of :mod:`mmrag.inputs` and
are not part of its public API.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from mmrag.errors import ImageInputError
from mmrag.inputs.limits import ImageLimits, capped_bytes, too_large

__all__ = [
    "IMAGE_EXTENSIONS",
    "QueryType",
    "decode_base64_image",
    "image_reference",
    "is_image_query",
    "is_url",
]

QueryType = Literal["auto", "text", "image"]
"""How to read a query: ``"auto"`` applies :func:`is_image_query`; ``"text"``/``"image"`` force it."""

StringBranch = Literal["url", "data", "other-scheme", "local"]
"""Which branch of the string rule a (stripped) string takes: rule 1's three outcomes, or rules 3-4."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
"""File endings read as images (by ``index_folder`` and the query rule)."""

# Endings that make a string "look like" an image path, for error wording only.
_IMAGE_SUFFIXES = IMAGE_EXTENSIONS | {
    ".jpe",
    ".jfif",
    ".eps",
    ".ps",
    ".pdf",
    ".svg",
    ".heic",
    ".heif",
    ".avif",
    ".ico",
}
_MAX_PATH_CHARS = 4096

# Rule 1 of the string rule: "scheme://" (2+ chars) or "name:" (2+ chars, no dots).
_SCHEME_RE = re.compile(r"^(?:([A-Za-z][A-Za-z0-9+.\-]+)://|([A-Za-z][A-Za-z0-9+\-]+):)")


# --------------------------------------------------------------------------- #
# Which branch
# --------------------------------------------------------------------------- #


def scheme_of(text: str) -> str | None:
    """Return the lower-case URL scheme of ``text`` per rule 1, or ``None``."""
    match = _SCHEME_RE.match(text)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).lower()


def string_branch(stripped: str) -> StringBranch:
    """Which branch of the string rule a string (already stripped) takes.

    Returns:
        ``"url"`` for http(s), ``"data"`` for a data URI, ``"other-scheme"``
        for any other scheme (refused by the resolver), ``"local"`` for
        everything else (an existing file, else strict base64).
    """
    scheme = scheme_of(stripped)
    if scheme in ("http", "https"):
        return "url"
    if scheme == "data":
        return "data"
    return "local" if scheme is None else "other-scheme"


def could_be_path(text: str) -> bool:
    """Tell whether a string is short and clean enough to be a file path."""
    return 0 < len(text) <= _MAX_PATH_CHARS and "\0" not in text and "\n" not in text


def looks_like_path(text: str) -> bool:
    """Tell whether a string was probably meant as a path (for error wording)."""
    if not could_be_path(text):
        return False
    suffix = os.path.splitext(text.strip())[1].lower()
    return "/" in text or "\\" in text or suffix in _IMAGE_SUFFIXES


def local_path(text: str) -> str:
    """The file system path a (stripped) string names: a leading ``~`` is expanded."""
    return os.path.expanduser(text) if text.startswith("~") else text


def is_image_file(stripped: str) -> bool:
    """Whether a (stripped) string names an existing file with an image ending (rule 3 of the query rule)."""
    if not could_be_path(stripped) or os.path.splitext(stripped)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        return os.path.isfile(local_path(stripped))
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- #
# Public string helpers
# --------------------------------------------------------------------------- #


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
    return isinstance(text, str) and string_branch(text.strip()) == "url"


def is_image_query(query: object, query_type: QueryType = "auto") -> bool:
    """Whether a query (or a candidate) is an image rather than a text.

    The rule, for ``query_type="auto"``: anything that is not a ``str`` is an
    image; a string is an image when it is an http(s) URL, a ``data:`` URI, or
    an existing file with an image ending (:data:`IMAGE_EXTENSIONS`; a leading
    ``~`` is expanded); every other string is a text. ``"text"`` and
    ``"image"`` force the answer. A string called an image here is resolved
    by the same branch of :func:`mmrag.inputs.resolve_image` (fetched, decoded
    from the URI, or read from that file).

    Args:
        query: The query.
        query_type: ``"auto"``, ``"text"`` or ``"image"``.

    Returns:
        ``True`` for an image.

    Raises:
        ValueError: An unknown ``query_type``.

    Example:
        >>> is_image_query("a red shoe"), is_image_query("https://example.com/shoe.jpg")
        (False, True)
    """
    if query_type not in ("auto", "text", "image"):
        raise ValueError(f"query_type must be 'auto', 'text' or 'image', got {query_type!r}")
    if query_type != "auto":
        return query_type == "image"
    if not isinstance(query, str):
        return True
    text = query.strip()
    branch = string_branch(text)
    return branch in ("url", "data") or (branch == "local" and is_image_file(text))


def decode_base64_image(data: str | bytes) -> bytes | str:
    """Decode a stored base64 image (LlamaIndex ``ImageNode.image``, LangChain ``image_base64``).

    Args:
        data: Base64 text or bytes, or a ``data:`` URI.

    Returns:
        The decoded bytes; a data URI or data that is not strict base64 comes
        back unchanged (the resolver then names what is wrong with it).

    Example:
        >>> decode_base64_image("aGk=")
        b'hi'
    """
    if isinstance(data, str) and string_branch(data.strip()) == "data":
        return data
    compact = "".join(data.split()) if isinstance(data, str) else b"".join(data.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return data


def image_reference(text: str, *, may_be_base64: bool) -> str | bytes | Path:
    """A string that names an image, as the resolver and the query rule should see it.

    http(s) URLs and data URIs stay strings; strict base64 (where allowed)
    becomes bytes; anything else is a path, returned as :class:`pathlib.Path`
    (always read as an image, never as text).

    Args:
        text: A URL, data URI, path or (with ``may_be_base64``) base64 text.
        may_be_base64: Whether the string may hold base64 image data.

    Returns:
        A ``str``, ``bytes`` or ``Path``.

    Example:
        >>> image_reference("photos/cat.jpg", may_be_base64=False)
        PosixPath('photos/cat.jpg')
    """
    stripped = text.strip()
    if string_branch(stripped) in ("url", "data"):
        return stripped
    if may_be_base64 and not is_image_query(stripped):
        try:
            return base64.b64decode("".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    return Path(stripped)


# --------------------------------------------------------------------------- #
# Base64 and data URIs
# --------------------------------------------------------------------------- #


def strict_b64decode(text: str, limits: ImageLimits) -> bytes | None:
    """Decode strict standard base64 (whitespace ignored), or return ``None``.

    Raises:
        ImageInputError: If the decoded data would exceed ``max_bytes``.
    """
    compact = "".join(text.split())
    if not compact:
        return None
    if len(compact) // 4 * 3 > limits.max_bytes + 2:
        raise too_large("base64 data", limits)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return capped_bytes(data, limits)


def data_uri_bytes(uri: str, limits: ImageLimits) -> bytes:
    """Decode a ``data:image/...;base64,...`` URI strictly (rule 2)."""
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise ImageInputError("malformed data URI: no ',' before the data")
    media_type, *params = [part.strip().lower() for part in header.split(";")]
    if not media_type.startswith("image/"):
        raise ImageInputError(f"data URI media type must be image/*, got {media_type or 'none'!r}")
    if not params or params[-1] != "base64":
        raise ImageInputError("data URI must be base64-encoded (';base64,')")
    data = strict_b64decode(payload, limits)
    if data is None:
        raise ImageInputError("data URI payload is not valid base64")
    return data


def _is_base64_text(text: str) -> bool:
    """Tell whether a (short) string is valid strict base64."""
    try:
        base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- #
# Wording: descriptions without base64 dumps or URL secrets
# --------------------------------------------------------------------------- #


def describe_string(text: str) -> str:
    """Describe a string input without dumping base64 or URL queries."""
    stripped = text.strip()
    branch = string_branch(stripped)
    if branch == "data":
        media_type = stripped[len("data:") :].split(",", 1)[0].split(";", 1)[0].strip()
        return f"data URI ({shorten(media_type, 40) or 'no media type'}, {len(text)} chars)"
    if branch == "url":
        return redact_url(stripped)
    if branch == "other-scheme" or (looks_like_path(text) and not _is_base64_text(text)):
        return shorten(text)
    return f"base64 string ({len(text)} chars)"


def shorten(text: str, limit: int = 120) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact_url(url: str) -> str:
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
    return shorten(f"{parts.scheme}://{netloc}{parts.path}{query}", 200)
