"""Image inputs of the service: read, admitted to the decode budget, decoded once, shrunk to what the model needs.

Each input is handled on one decoding thread:

1. its encoded bytes are read (base64 and data URIs decoded, URLs fetched
   under the SSRF guard) by :func:`mmrag.inputs.read_image_bytes`;
2. its header gives its size without decoding a pixel, and the image waits
   for that many pixels of the :class:`~mmrag.server.limits.DecodeBudget`
   (``--max-decode-pixels``), so the memory of images being decoded is
   bounded however many arrive at once;
3. it is decoded by :func:`mmrag.inputs.resolve_image` under the server's
   :class:`~mmrag.ImageLimits` (a JPEG much larger than the model's input is
   decoded at a reduced scale, Pillow's ``draft``, and budgeted at that scale);
4. an image still more than :data:`KEEP` times larger than the model's input
   is shrunk by an integer factor (``Image.reduce``) right away, so what
   waits for the model is small. The model's own resize then works from at
   least :data:`KEEP` times its input size, so vectors stay close to those of
   the full image (cosine above 0.99 in the tests).

The result is an image :func:`~mmrag.inputs.resolve_image` produced, which the
batcher and the encoder use as it is (no second decode or copy).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from PIL import Image

from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits, describe_image_input, read_image_bytes, resolve_image

if TYPE_CHECKING:
    from mmrag.server.limits import DecodeBudget

__all__ = ["KEEP", "ImageDecoder", "input_scale"]

KEEP = 3
"""An image is shrunk only while it stays at least this many times the model's input size."""

Scale = Callable[[int, int], float]
"""``(width, height) -> factor`` the model's preprocessing resizes an image of that size by."""


class _Header(NamedTuple):
    width: int
    height: int
    format: str | None


def input_scale(image_processor: Any) -> Scale | None:
    """How an image processor resizes images, from its saved settings.

    Args:
        image_processor: A transformers image processor (``encoder.image_processor``).

    Returns:
        A function of the image's width and height giving the resize factor,
        or ``None`` when it does not resize or its rule is unknown (images
        are then never shrunk).
    """
    if image_processor is None or getattr(image_processor, "do_resize", True) is False:
        return None
    patch, patches = getattr(image_processor, "patch_size", None), getattr(image_processor, "max_num_patches", None)
    if isinstance(patch, int) and isinstance(patches, int):  # SigLIP 2 NaFlex: at most `patches` patches
        return lambda w, h: patch * math.sqrt(patches / (w * h))
    size = getattr(image_processor, "size", None)

    def field(name: str) -> int | None:
        value = size.get(name) if isinstance(size, Mapping) else getattr(size, name, None)
        return value if isinstance(value, int) and value > 0 else None

    shortest, height, width, longest = (field(n) for n in ("shortest_edge", "height", "width", "longest_edge"))
    if shortest:
        return lambda w, h: shortest / min(w, h)
    if height and width:
        return lambda w, h: max(height / h, width / w)
    if longest:
        return lambda w, h: longest / max(w, h)
    return None


class ImageDecoder:
    """Resolves the service's image inputs under its limits and decode budget (call from decoding threads).

    Args:
        limits: The server's image policy.
        budget: Pixels that may be decoded at once.
    """

    def __init__(self, limits: ImageLimits, budget: DecodeBudget) -> None:
        self.limits = limits
        self.budget = budget
        self.scale: Scale | None = None
        self.shrunk = 0
        self._decoded_bytes = 0
        self._lock = threading.Lock()

    def use_model(self, encoder: Any) -> None:
        """Shrink images for this encoder's input size (its ``image_processor``)."""
        self.scale = input_scale(getattr(encoder, "image_processor", None))

    def take_decoded_bytes(self) -> int:
        """Bytes of pixels decoded since the last call (how much memory was churned)."""
        with self._lock:
            taken, self._decoded_bytes = self._decoded_bytes, 0
        return taken

    def resolve(self, item: str, index: int) -> Image.Image | ImageInputError:
        """One input as a loaded RGB image, or the error that refused it.

        Args:
            item: Base64, a data URI, a URL (or a path below ``--allow-local-root``).
            index: Its position in the request's list.

        Returns:
            The image, or the :class:`~mmrag.ImageInputError` (naming ``item``).
        """
        try:
            data = read_image_bytes(item, limits=self.limits, index=index)
            if data is None:  # pragma: no cover - strings always have bytes
                return resolve_image(item, limits=self.limits, index=index)
            header = _header(data, self.limits)
            factor = self._factor(header.width, header.height) if header else 1
            draft = _draft_scale(factor) if header and header.format == "JPEG" and self._fits(header) else 1
            cost = math.ceil(header.width / draft) * math.ceil(header.height / draft) if header else 0
            with self.budget.hold(cost):
                try:
                    image = self._decode(data, draft, index)
                    image = self._shrink(image, index)
                except ImageInputError as exc:
                    return ImageInputError(exc.reason, index=index, item=describe_image_input(item))
            with self._lock:
                self._decoded_bytes += cost * 4  # Pillow keeps RGB as 4 bytes a pixel
            return image
        except ImageInputError as exc:
            return exc

    def _fits(self, header: _Header) -> bool:
        limits = self.limits
        pixels_ok = header.width * header.height <= limits.max_pixels
        return pixels_ok and min(header.width, header.height) >= limits.min_side and "JPEG" in limits.formats

    def _factor(self, width: int, height: int) -> int:
        if self.scale is None or width < 1 or height < 1:
            return 1
        return max(1, math.floor(1.0 / (KEEP * self.scale(width, height))))

    def _decode(self, data: bytes, draft: int, index: int) -> Image.Image:
        if draft == 1:
            return resolve_image(data, limits=self.limits, index=index)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as opened:
            opened.draft("RGB", (math.ceil(opened.width / draft), math.ceil(opened.height / draft)))
            return resolve_image(opened, limits=self.limits, index=index)  # loads at the reduced scale

    def _shrink(self, image: Image.Image, index: int) -> Image.Image:
        factor = self._factor(image.width, image.height)
        if factor < 2:
            return image
        reduced = image.reduce(factor)
        image.close()
        try:
            self.shrunk += 1
            return resolve_image(reduced, limits=self.limits, index=index)
        finally:
            reduced.close()


def _draft_scale(factor: int) -> int:
    """The JPEG decoder's scale (1, 2, 4 or 8) that keeps the image at least ``factor`` times reduced or less."""
    scale = 1
    while scale * 2 <= min(factor, 8):
        scale *= 2
    return scale


def _header(data: bytes, limits: ImageLimits) -> _Header | None:
    """Width, height and format from the header (no pixels decoded); ``None`` if Pillow cannot open it."""
    Image.init()
    formats = [name for name in sorted(limits.formats) if name in Image.OPEN]
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            return _Header(image.width, image.height, image.format)
    except Exception:  # the decoder reports the real problem with its own message
        return None
