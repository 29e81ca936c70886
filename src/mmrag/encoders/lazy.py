"""``LazyEncoder``: an :class:`~mmrag.Encoder` that loads its weights on the first embedding.

Opening a store needs only the encoder's signature (model id, family,
dimension, preprocessing), which :func:`~mmrag.encoders.loading.encoder_signature`
computes from the config and the processor. So ``mmrag index`` over a folder
where nothing changed never loads the model, and neither does one whose
only changes are images that do not decode (:meth:`LazyEncoder._embed_images`
decodes a call's first image before loading).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.encoders.base import Batch, Encoder, FusedEmbeddings
from mmrag.encoders.loading import DEFAULT_BATCH_SIZE, encoder_signature, load_encoder
from mmrag.encoders.presets import DEFAULT_MODEL
from mmrag.inputs import ImageInput, ImageLimits, is_url, resolve_image
from mmrag.options import LoadOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from typing_extensions import Unpack

    from mmrag.cache import EmbeddingCache
    from mmrag.options import LoadOverrides

__all__ = ["LazyEncoder"]


class LazyEncoder(Encoder):
    """An encoder whose model loads on first use; its signature is known (and checked) before.

    Everything an :class:`~mmrag.Encoder` offers works: ``embed_*`` (and any
    attribute of the loaded encoder, such as ``max_text_length`` or ``dtype``)
    loads the model once, thread-safely, with :func:`mmrag.load_encoder`;
    ``model_id``, ``family``, ``dim``, ``signature``, ``batch_size`` and
    ``image_limits`` do not. A family without a way to tell its signature
    without the weights is loaded at construction. Before loading for
    images, the call's first image (a path, bytes or an encoded string) is
    decoded: if it fails, its :class:`~mmrag.ImageInputError` (index 0) is
    raised and nothing is loaded, so a caller that drops bad items and
    retries (``index_folder``) loads the model only for an image that decodes.

    Args:
        model: As for :func:`mmrag.load_encoder`.
        options: As for :func:`mmrag.load_encoder`.
        cache: As for :func:`mmrag.load_encoder`; consulted before the model
            is loaded, so a call whose vectors are all cached loads nothing.
        **overrides: As for :func:`mmrag.load_encoder`.

    Raises:
        mmrag.ModelNotAvailableError: The model is neither local nor
            downloadable (found at construction: the config is read then).
        mmrag.UnsupportedModelError: The checkpoint's family is unknown.
        mmrag.InvalidInputError: An unknown device.

    Example:
        >>> encoder = LazyEncoder("clip-vit-b-32", device="cpu")
        >>> encoder.loaded
        False
        >>> store = mmrag.MultimodalStore(encoder, path="./mmrag_db")  # no weights read yet
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        options: LoadOptions | None = None,
        cache: EmbeddingCache | None = None,
        **overrides: Unpack[LoadOverrides],
    ) -> None:
        opts = LoadOptions.merge(options, dict(overrides))
        batch_size = opts.batch_size_or(DEFAULT_BATCH_SIZE)
        super().__init__(batch_size=batch_size, image_limits=opts.image_limits, cache=cache)
        self._model = model
        self._options = opts
        self._load_lock = threading.Lock()
        self._loaded: Encoder | None = None
        self._own_forwards = 0
        signature = encoder_signature(model, options=opts)
        if signature is None:
            signature = self.encoder.signature
        self._signature = signature
        self.model_id = str(signature["model_id"])
        self.family = str(signature["family"])
        self.dim = int(signature["dim"])

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._loaded is not None

    @property
    def encoder(self) -> Encoder:
        """The loaded encoder (loading it now if needed).

        Raises:
            RuntimeError: The loaded encoder's signature differs from the one
                announced before loading (a family's signature function is wrong).
        """
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                encoder = load_encoder(self._model, options=self._options)
                announced = getattr(self, "_signature", None)
                if announced is not None and encoder.signature != announced:
                    encoder.close()
                    raise RuntimeError(
                        f"the loaded encoder's signature {encoder.signature!r} differs from the announced "
                        f"{announced!r}; please report this"
                    )
                self._loaded = encoder
            return self._loaded

    @property
    def signature(self) -> dict[str, str | int]:
        """The signature, known without loading the model."""
        return dict(self._signature)

    @property
    def preprocessing(self) -> str:
        """The preprocessing description, known without loading the model."""
        return str(self._signature["preprocessing"])

    @property
    def device(self) -> torch.device:  # type: ignore[override]  # read-only here: the loaded encoder's, else the asked-for one
        """The loaded encoder's device; before loading, the one the options name (or would pick)."""
        return self._loaded.device if self._loaded is not None else self._options.torch_device()

    @property
    def forward_count(self) -> int:
        """Forward passes the loaded encoder has run (0 before loading)."""
        return self._loaded.forward_count if self._loaded is not None else self._own_forwards

    @forward_count.setter
    def forward_count(self, value: int) -> None:
        self._own_forwards = value

    # ------------------------------------------------------ delegated methods
    def prepare_texts(self, texts: list[str]) -> Batch:
        """The loaded encoder's :meth:`~mmrag.Encoder.prepare_texts`."""
        return self.encoder.prepare_texts(texts)

    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """The loaded encoder's :meth:`~mmrag.Encoder.prepare_images`."""
        return self.encoder.prepare_images(images)

    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """The loaded encoder's :meth:`~mmrag.Encoder.forward_texts`."""
        return self.encoder.forward_texts(batch)

    def forward_images(self, batch: Batch) -> torch.Tensor:
        """The loaded encoder's :meth:`~mmrag.Encoder.forward_images`."""
        return self.encoder.forward_images(batch)

    def _embed_texts(self, items: list[str], batch_size: int | None, show_progress: bool | None = False) -> np.ndarray:
        # The uncached path of the loaded encoder: this encoder's ``cache`` is consulted first (before loading).
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)  # nothing to embed: nothing to load
        return self.encoder._embed_texts(items, batch_size, show_progress)

    def _embed_images(
        self, items: list[ImageInput], batch_size: int | None, active: ImageLimits, show_progress: bool | None = False
    ) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._loaded is None and _decodable_twice(items[0]):
            resolve_image(items[0], limits=active, index=0).close()  # a bad first image raises: nothing loaded
        return self.encoder._embed_images(items, batch_size, active, show_progress)

    def embed_fused(
        self, images: Iterable[ImageInput], texts: Iterable[str], *, batch_size: int | None = None
    ) -> FusedEmbeddings:
        """:meth:`mmrag.Encoder.embed_fused`, or the loaded encoder's own where its family fuses pairs itself.

        Visualized-BGE encodes a pair jointly; other families fuse the two
        vectors, through this encoder's cache.
        """
        if type(self.encoder).embed_fused is not Encoder.embed_fused:
            return self.encoder.embed_fused(images, texts, batch_size=batch_size)
        return super().embed_fused(images, texts, batch_size=batch_size)

    def find_batch_size(self, *, start: int = 8, limit: int = 1024) -> int:
        """:meth:`mmrag.Encoder.find_batch_size` of the loaded encoder."""
        return self.encoder.find_batch_size(start=start, limit=limit)

    def close(self) -> None:
        """Close the loaded encoder, if any (the model stays loaded)."""
        super().close()
        if self._loaded is not None:
            self._loaded.close()

    def __getattr__(self, name: str) -> Any:
        """Anything else (``max_text_length``, ``dtype``, ``model`` ...) comes from the loaded encoder."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def __repr__(self) -> str:
        state = repr(self._loaded) if self._loaded is not None else "not loaded yet"
        return f"LazyEncoder(model_id={self.model_id!r}, dim={self.dim}, {state})"


def _decodable_twice(item: ImageInput) -> bool:
    """Whether decoding ``item`` before the encoder does costs no more than a second decode.

    Local paths, bytes and encoded strings can be read again; a file object
    cannot (it is consumed), a URL would be fetched twice, and pixels have
    nothing to decode.
    """
    if isinstance(item, str):
        return not is_url(item)
    return isinstance(item, (bytes, bytearray, memoryview, os.PathLike))
