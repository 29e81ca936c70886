"""File names in the store: exact keys Chroma accepts, and readable forms for people.

Python hands a file name that is not valid UTF-8 (say the byte ``\\xff``) to
programs as a string with a lone surrogate (``"\\udcff"``, the
``surrogateescape`` convention of :func:`os.fsdecode`). Chroma refuses such
strings, and they cannot be printed or sent as JSON either. So a folder record
keeps two forms:

- ``source``: :func:`printable`, the name with every undecodable byte written
  as ``\\xNN`` (valid UTF-8, readable, what :class:`~mmrag.Record` shows);
- ``mmrag_path``: :func:`path_key`, the exact name (``"bytes:"`` and the hex of
  its bytes), stored only when the two differ, so a re-run matches the file.

For every ordinary (UTF-8) name both forms are the name itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__: list[str] = []  # internal to mmrag.store

BYTES_PREFIX = "bytes:"
"""Starts a :func:`path_key` of a name that is not UTF-8; no absolute path starts so."""

PATH_KEY = "mmrag_path"
"""The metadata key of the exact name, present only when it differs from ``source``."""


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` with undecodable bytes (surrogate escapes) as ``\\xNN`` and other lone surrogates as ``\\udNNN``.

    Args:
        text: A file name, or a message that may quote one.

    Returns:
        A string that encodes as UTF-8; ``text`` itself when it already does.
    """
    if is_utf8(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte escapes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def path_key(path: str) -> str:
    """The exact, Chroma-safe key of a file name: the name, or ``"bytes:"`` and the hex of its bytes."""
    if is_utf8(path):
        return path
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a surrogate no OS name decodes to (a caller's own string): kept as is
        raw = path.encode("utf-8", "surrogatepass")
    return BYTES_PREFIX + raw.hex()


def path_from_key(key: str) -> str:
    """The file name a :func:`path_key` was made from (surrogate-escaped as :func:`os.fsdecode` gives it)."""
    if key.startswith(BYTES_PREFIX):
        return os.fsdecode(bytes.fromhex(key[len(BYTES_PREFIX) :]))
    return key


def source_metadata(path: str) -> dict[str, str]:
    """The ``source`` (and, for a name that is not UTF-8, the exact ``mmrag_path``) of a record of ``path``."""
    shown = printable(path)
    return {"source": shown} if shown == path else {"source": shown, PATH_KEY: path_key(path)}


def recorded_path(meta: Mapping[str, Any]) -> str:
    """The exact file name a folder record was written for."""
    exact = meta.get(PATH_KEY)
    return path_from_key(str(exact)) if exact else str(meta.get("source", ""))
