"""The limits and switches applied while resolving image inputs: :class:`ImageLimits`.

Names not in ``__all__`` (``DEFAULT_LIMITS``, ``too_large``, ``capped_bytes``) are shared by the
modules of :mod:`mmrag.inputs` and are not part of its public API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mmrag.errors import ImageInputError

__all__ = ["ImageLimits"]

FORBIDDEN_FORMATS = frozenset({"EPS", "PS", "PDF", "WMF", "EMF"})
"""Pillow formats that hand data to external programs; never decoded."""

DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
"""The Pillow formats decoded by default."""


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
    formats: frozenset[str] = DEFAULT_FORMATS
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
        forbidden = sorted(formats & FORBIDDEN_FORMATS)
        if forbidden:
            raise ValueError(f"ImageLimits.formats may not include {', '.join(forbidden)}")
        object.__setattr__(self, "formats", formats)


DEFAULT_LIMITS = ImageLimits()
"""The limits used when a caller passes none."""


def too_large(what: str, limits: ImageLimits) -> ImageInputError:
    """Build the error for an input over ``max_bytes``.

    Args:
        what: What was too large, e.g. ``"file"`` or ``"download from ..."``.
        limits: The limits broken.

    Returns:
        The error to raise.
    """
    return ImageInputError(
        f"{what} is larger than max_bytes={limits.max_bytes} bytes; raise ImageLimits.max_bytes to accept it"
    )


def capped_bytes(data: bytes | bytearray | memoryview, limits: ImageLimits) -> bytes:
    """Check a bytes-like input against ``max_bytes`` and return it as ``bytes``.

    Args:
        data: Encoded image data.
        limits: The limits to enforce.

    Returns:
        ``data`` itself when it is ``bytes``, else a ``bytes`` copy.

    Raises:
        ImageInputError: ``data`` is over ``max_bytes``.
    """
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > limits.max_bytes:
        raise too_large("input", limits)
    return data if isinstance(data, bytes) else bytes(data)
