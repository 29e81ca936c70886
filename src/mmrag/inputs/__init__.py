"""Resolve every kind of image input into a loaded RGB :class:`PIL.Image.Image`.

This package is the one place where mmrag turns user-supplied image inputs into
pixels. It accepts file paths, ``http``/``https`` URLs, data URIs, base64 text,
raw encoded bytes, binary file-like objects, PIL images and numpy arrays (see
:data:`ImageInput`), enforces the limits of an :class:`ImageLimits`, and raises
:class:`~mmrag.errors.ImageInputError` (a ``ValueError``) for anything it
refuses, naming the item and the reason. It also holds the checks every batch
API shares (:func:`as_items`, :func:`as_texts`) and the rule that tells an
image query from a text query (:func:`is_image_query`).

Modules, one job each: :mod:`~mmrag.inputs.limits` (:class:`ImageLimits`),
:mod:`~mmrag.inputs.strings` (the string rule and the query rule),
:mod:`~mmrag.inputs.files` (local paths and file objects),
:mod:`~mmrag.inputs.fetch` (the SSRF-guarded URL fetcher),
:mod:`~mmrag.inputs.decode` (Pillow decoding and RGB conversion),
:mod:`~mmrag.inputs.resolve` (:func:`resolve_image` and friends) and
:mod:`~mmrag.inputs.items` (:func:`as_items`, :func:`as_texts`).

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
   up. Relative paths are relative to the current working directory, a
   leading ``~`` is expanded, and surrounding whitespace is ignored.
4. **Otherwise** it must be strict base64: whitespace (including newlines) is
   removed and the rest is decoded with ``base64.b64decode(text,
   validate=True)`` (standard alphabet, correct padding). If that fails the
   error is "not a URL, data URI, existing file or valid base64", unless the
   string looks like a path (it contains ``/`` or ``\\`` or ends with an image
   file extension), in which case the error is the path's own
   ("file not found: ...", "local file paths are disabled ...", or "... is
   outside ImageLimits.local_root ...").

:class:`os.PathLike` objects (e.g. :class:`pathlib.Path`) are always paths.

The query rule and the string rule
----------------------------------
:func:`is_image_query` decides whether a query or a rerank candidate is an
image or a text. Anything that is not a ``str`` is an image; a string is an
image exactly when rule 1 makes it an http(s) URL, rule 2 a data URI, or rule 3
an existing file with an image ending (:data:`IMAGE_EXTENSIONS`); every other
string is a text (an ``ftp:`` URL, base64 text and a missing ``cat.jpg`` are
texts to the query rule). Both rules are built from the same helpers (the
scheme pattern, the path checks, ``~`` expansion), so a string the query rule
calls an image is always resolved by the branch that made it one: fetched,
decoded from its data URI, or read from that file (subject to the limits,
e.g. ``allow_local_paths``). The converse does not hold: the resolver also
reads base64 text, which the query rule leaves to be a text.

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

Resolved once
-------------
:func:`resolve_image` remembers the images it returns (weakly, by identity).
Given one of them again it returns that very object, with no copy, fetch or
decode, so an image resolved by a service or a store passes through the
encoder's and the reranker's own resolving for free. A caller's own PIL image
is never returned as is: it is validated and copied.

Example:
    >>> from mmrag.inputs import ImageLimits, resolve_images
    >>> images = resolve_images(["cat.jpg", "https://example.com/dog.png"])
    >>> strict = ImageLimits(allow_local_paths=False, max_bytes=5_000_000)
"""

from __future__ import annotations

from mmrag.inputs.decode import image_mime_type, probe_image
from mmrag.inputs.items import Modality, as_items, as_texts
from mmrag.inputs.limits import ImageLimits
from mmrag.inputs.resolve import (
    ImageInput,
    describe_image_input,
    image_source,
    read_image_bytes,
    resolve_image,
    resolve_images,
)
from mmrag.inputs.strings import (
    IMAGE_EXTENSIONS,
    QueryType,
    decode_base64_image,
    image_reference,
    is_image_query,
    is_url,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInput",
    "ImageLimits",
    "Modality",
    "QueryType",
    "as_items",
    "as_texts",
    "decode_base64_image",
    "describe_image_input",
    "image_mime_type",
    "image_reference",
    "image_source",
    "is_image_query",
    "is_url",
    "probe_image",
    "read_image_bytes",
    "resolve_image",
    "resolve_images",
]
