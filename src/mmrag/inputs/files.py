"""Local sources: paths checked against the limits, regular files, and binary file objects.

Everything here is internal to :mod:`mmrag.inputs`.
"""

from __future__ import annotations

import os
import stat
from typing import IO

from mmrag.errors import ImageInputError
from mmrag.inputs.limits import ImageLimits, too_large
from mmrag.inputs.strings import local_path, shorten

__all__: list[str] = []

_READ_CHUNK = 1 << 16


class _PathRefused(ImageInputError):
    """A path that is disabled, outside ``local_root`` or missing (never raised publicly)."""


def checked_real_path(path: str, limits: ImageLimits) -> str:
    """Return the real path of an existing file the limits allow reading.

    A leading ``~`` is expanded (as the query rule does). The order of checks
    means no error reveals whether a file exists where the limits forbid
    looking.

    Raises:
        _PathRefused: If local paths are disabled, the path leaves
            ``local_root``, or nothing exists there.
    """
    if not limits.allow_local_paths:
        raise _PathRefused(f"local file paths are disabled (ImageLimits.allow_local_paths=False): {shorten(path)}")
    real = os.path.realpath(local_path(path))
    if limits.local_root is not None and not _is_inside(real, limits.local_root):
        root = os.fspath(limits.local_root)
        raise _PathRefused(f"path is outside ImageLimits.local_root ({root}): {shorten(path)}")
    if not os.path.exists(real):
        raise _PathRefused(f"file not found: {shorten(path)}")
    return real


def _is_inside(real: str, root: str | os.PathLike[str]) -> bool:
    """Tell whether the real path ``real`` lies inside directory ``root``."""
    real_root = os.path.realpath(root)
    try:
        return os.path.commonpath([real, real_root]) == real_root
    except ValueError:  # different drives on Windows
        return False


def read_file(real: str, limits: ImageLimits) -> bytes:
    """Read a regular file, refusing devices, FIFOs and files over ``max_bytes``."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)  # O_NONBLOCK: opening a FIFO must not hang
    except OSError as exc:
        raise ImageInputError(f"cannot open file {shorten(real)}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageInputError(f"not a regular file: {shorten(real)}")
        if info.st_size > limits.max_bytes:
            raise too_large("file", limits)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        return read_capped(handle, limits, what="file")


def read_capped(stream: IO[bytes], limits: ImageLimits, *, what: str) -> bytes:
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
            raise too_large(what, limits)
        chunks.append(bytes(chunk))
