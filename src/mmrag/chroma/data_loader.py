"""``ImageLoader``: a Chroma data loader for ``uris=`` that decodes images with mmrag's resolver.

Chroma's own ``chromadb.utils.data_loaders.ImageLoader`` returns
``numpy.array(PIL.Image.open(uri))``: a palette PNG comes back as its palette
indices (a red picture turns into a dark grey one), a CMYK JPEG as four
channels read as RGBA, and EXIF rotation is ignored. This loader returns what
:func:`mmrag.resolve_image` makes of each URI instead: an RGB ``uint8`` array
of shape ``(H, W, 3)``, with the same :class:`mmrag.ImageLimits` checks (size
caps, formats, guarded http(s) fetching) as every other mmrag image input.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from chromadb.api.types import DataLoader

from mmrag.inputs import ImageLimits, resolve_image

__all__ = ["ImageLoader"]


class ImageLoader(DataLoader[list[np.ndarray | None]]):
    """Load the images named by Chroma URIs (paths or http(s) URLs) as RGB arrays.

    Args:
        limits: Limits for resolving the URIs; default ``ImageLimits()``.
        max_workers: Threads that read and decode in parallel (default: up
            to 8).

    Example:
        >>> from mmrag.chroma import ImageLoader, MultimodalEmbeddingFunction
        >>> photos = client.create_collection(  # doctest: +SKIP
        ...     "photos", embedding_function=MultimodalEmbeddingFunction(model="demo"), data_loader=ImageLoader()
        ... )
    """

    def __init__(self, limits: ImageLimits | None = None, max_workers: int = 8) -> None:
        self.limits = limits or ImageLimits()
        self.max_workers = max_workers

    def __call__(self, uris: Sequence[str | None]) -> list[np.ndarray | None]:
        """Read and decode the URIs.

        Args:
            uris: Paths or http(s) URLs; ``None`` (a record without a URI)
                gives ``None``.

        Returns:
            One RGB ``uint8`` array per URI, in order.

        Raises:
            mmrag.ImageInputError: A URI cannot be read or decoded; the message
                names its index and the reason.
        """
        items = list(uris)
        if len(items) < 2 or self.max_workers < 2:
            return [self._load(index, uri) for index, uri in enumerate(items)]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            return list(pool.map(self._load, range(len(items)), items))

    def _load(self, index: int, uri: str | None) -> np.ndarray | None:
        if uri is None:
            return None
        return np.asarray(resolve_image(uri, limits=self.limits, index=index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limits={self.limits!r})"
