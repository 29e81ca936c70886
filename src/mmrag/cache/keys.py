"""Cache keys: one identity per vector space, one content key per item.

An *identity* names a vector space: a hash of everything an encoder's
:attr:`~mmrag.Encoder.signature` records (model id, family, dimension,
preprocessing). ``load_encoder("demo")`` loaded twice, or an encoder built
elsewhere and handed over, give the same identity; two models never do.

A *content key* names an item: a text's UTF-8 bytes, an image's encoded
bytes (for paths, URLs, data URIs, base64, bytes and file objects), or an
image's decoded pixels (mode, size and pixel data, for PIL images and
arrays). The same photo given once as a path and once as a PIL image thus
has two keys; the same bytes reached by two paths have one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Protocol

import numpy as np
from PIL import Image

from mmrag.errors import InvalidInputError
from mmrag.inputs import ImageInput, ImageLimits, read_image_bytes, resolve_image

__all__ = ["HasSignature", "encoder_identity", "image_key", "text_key"]

IDENTITY_VERSION = 1
"""Bumped when the identity recipe changes, so old cache entries are never reused by mistake."""

_REQUIRED = ("model_id", "family", "dim")


class HasSignature(Protocol):
    """Anything with an encoder's ``signature`` (every :class:`~mmrag.Encoder`)."""

    @property
    def signature(self) -> Mapping[str, str | int]:
        """``model_id``, ``family``, ``dim``, ``preprocessing`` and any other facts of the vector space."""


def encoder_identity(encoder: HasSignature | Mapping[str, str | int]) -> str:
    """The stable name of an encoder's vector space.

    Args:
        encoder: An encoder, or its ``signature`` mapping.

    Returns:
        32 hex characters: a SHA-256 over every signature entry (sorted) and
        :data:`IDENTITY_VERSION`.

    Raises:
        InvalidInputError: The signature lacks ``model_id``, ``family`` or
            ``dim``, or its ``dim`` is not a positive integer.

    Example:
        >>> len(encoder_identity({"model_id": "mmrag/demo", "family": "clip", "dim": 64, "preprocessing": ""}))
        32
    """
    signature = encoder if isinstance(encoder, Mapping) else encoder.signature
    missing = [name for name in _REQUIRED if name not in signature]
    if missing:
        raise InvalidInputError(f"encoder signature lacks {', '.join(missing)}; got keys {sorted(signature)}")
    signature_dim(signature)
    payload = {"mmrag_cache": IDENTITY_VERSION, **{str(k): signature[k] for k in signature}}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def signature_dim(signature: Mapping[str, object]) -> int:
    """The ``dim`` of a signature, checked to be a positive integer."""
    dim = signature.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InvalidInputError(f"encoder signature dim must be a positive integer, got {dim!r}")
    return int(dim)


def text_key(text: str) -> str:
    """The content key of a text: ``"t:"`` and the SHA-256 of its UTF-8 bytes.

    Example:
        >>> text_key("a red circle")[:2]
        't:'
    """
    return "t:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_key(
    item: ImageInput, *, limits: ImageLimits | None = None, index: int | None = None
) -> tuple[str, ImageInput]:
    """The content key of an image input, and what to embed it from.

    Encoded inputs are read once, under ``limits`` (files read, URLs fetched,
    base64 decoded, file objects consumed); the key is ``"b:"`` and the
    SHA-256 of those bytes, and the bytes are returned to embed from, so
    nothing is read or fetched twice. PIL images and arrays are resolved
    (validated and converted to RGB) and keyed by their pixels (``"p:"``);
    the resolved image is returned.

    Args:
        item: Anything :func:`mmrag.resolve_image` accepts.
        limits: Limits for reading and resolving; ``ImageLimits()`` when omitted.
        index: The item's position in its batch, for error messages.

    Returns:
        ``(key, payload)``: the content key and an input equivalent to
        ``item`` that can be embedded without reading ``item`` again.

    Raises:
        mmrag.ImageInputError: The input cannot be read, fetched or resolved.
    """
    data = read_image_bytes(item, limits=limits, index=index)
    if data is not None:
        return "b:" + hashlib.sha256(data).hexdigest(), data
    image = resolve_image(item, limits=limits, index=index)
    return pixel_key(image), image


def pixel_key(image: Image.Image) -> str:
    """The content key of decoded pixels: mode, size and pixel data."""
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return "p:" + digest.hexdigest()
