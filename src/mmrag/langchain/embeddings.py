"""``LocalMultiModalEmbeddings``: LangChain embeddings for texts and images from a local mmrag encoder."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from mmrag.batching import EmbeddingBatcher
from mmrag.components import options_for, recorded_options
from mmrag.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput, as_items
from mmrag.options import LoadOptions

__all__ = ["LocalMultiModalEmbeddings"]


class LocalMultiModalEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings for texts and images from a local mmrag encoder.

    Texts and images share one vector space, so image vectors from
    :meth:`embed_image` can be searched with text vectors from
    :meth:`embed_query` and the other way round. Vectors are L2-normalised:
    use a cosine (or inner product) index.

    The model is loaded when the object is made, so the fields are frozen
    afterwards (make a new object to change them). How it is loaded comes from
    ``options=`` (a :class:`mmrag.LoadOptions`) and any of its fields given as
    keywords (``device="cpu"``, ``revision=...``); ``device``, ``dtype``,
    ``batch_size`` and ``local_files_only`` are kept as fields, so a dumped
    object loads again the same way. Pass ``encoder=`` to reuse an encoder
    you already loaded (its settings then fill ``model``, ``device``,
    ``dtype`` and ``batch_size``).

    Example:
        >>> emb = LocalMultiModalEmbeddings(model="siglip2-base-224", batch_size=64)
        >>> emb.embed_query("a red circle")[:3]  # doctest: +SKIP
        >>> emb.embed_image(uris=["photo.jpg", "https://example.com/cat.png"])  # doctest: +SKIP
        >>> await emb.aembed_documents(["a", "b"])  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), use_attribute_docstrings=True)

    model: str = DEFAULT_MODEL
    """Preset alias (``mmrag.list_models()``), hub id, or local ``save_pretrained`` directory."""

    device: str | None = None
    """``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``; ``None`` picks CUDA, then MPS, then CPU."""

    dtype: str | None = None
    """``"float32"``, ``"float16"`` or ``"bfloat16"``; ``None`` picks per device (float32 on CPU)."""

    batch_size: int = Field(default=64, ge=1)
    """Most items per forward pass."""

    local_files_only: bool = False
    """Never use the network to load the model; fail unless it is local or cached."""

    batch_wait_ms: float = Field(default=2.0, ge=0.0)
    """How long the async batcher waits for concurrent calls to join a forward pass."""

    _encoder: Encoder | None = PrivateAttr(default=None)
    _options: LoadOptions | None = PrivateAttr(default=None)
    _batcher: EmbeddingBatcher | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, *, encoder: Encoder | None = None, options: LoadOptions | None = None, **data: Any) -> None:
        """Load the model, or adopt ``encoder``.

        Args:
            encoder: An already loaded :class:`mmrag.Encoder` to reuse instead
                of loading ``model``. ``model``, ``options`` and loading
                options cannot be passed with it; ``batch_size`` may only
                repeat the encoder's own.
            options: How to load ``model`` (:class:`mmrag.LoadOptions`).
            **data: The fields (``model``, ``batch_size``, ``batch_wait_ms``)
                and any :class:`mmrag.LoadOptions` field (``device``,
                ``dtype``, ``local_files_only``, ``revision``...), applied on
                top of ``options``.

        Raises:
            mmrag.InvalidInputError: Both ``encoder`` and loading options were
                given, or an option is invalid.
            pydantic.ValidationError: A field is invalid or unknown.
            mmrag.ModelNotAvailableError: The model cannot be found or loaded.
            mmrag.UnsupportedModelError: The checkpoint's architecture has no family.
        """
        batch_size = data.pop("batch_size", None)  # a field and an option: the encoder's batch size
        opts = options_for("encoder", encoder, options, data)
        if encoder is None:
            opts = opts if batch_size is None else opts.replace(batch_size=batch_size)
            fields = recorded_options(opts)
            if opts.batch_size is not None:
                fields["batch_size"] = opts.batch_size
            super().__init__(**data, **fields)
            self._options = opts.replace(batch_size=self.batch_size)
            self._encoder = load_encoder(self.model, options=self._options)
            return
        if "model" in data:
            raise InvalidInputError(
                f"pass either encoder= or model=, not both (got an encoder for {encoder.model_id!r} and "
                f"model={data['model']!r}); the encoder is already loaded"
            )
        if batch_size is not None and batch_size != encoder.batch_size:
            raise InvalidInputError(
                f"batch_size={batch_size} differs from the encoder's batch_size={encoder.batch_size}; "
                "load the encoder with the batch size you want, or leave batch_size out"
            )
        dtype = str(encoder.dtype).removeprefix("torch.")
        super().__init__(
            **data, model=encoder.model_id, device=str(encoder.device), dtype=dtype, batch_size=encoder.batch_size
        )
        self._encoder = encoder

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    # ------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder that computes the vectors (loaded on first use if needed)."""
        if self._encoder is None:  # e.g. made by model_validate, which skips __init__
            with self._lock:
                if self._encoder is None:
                    self._options = self._field_options()
                    self._encoder = load_encoder(self.model, options=self._options)
        return self._encoder

    @property
    def options(self) -> LoadOptions | None:
        """The :class:`mmrag.LoadOptions` the encoder is loaded with; ``None`` for one passed as ``encoder=``."""
        if self._options is None and self._encoder is None:
            return self._field_options()
        return self._options

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.encoder.dim

    # ------------------------------------------------------------------ sync
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts to store, in forward passes of at most ``batch_size``.

        Args:
            texts: The texts.

        Returns:
            One L2-normalised vector (list of floats) per text.

        Raises:
            mmrag.NotASequenceError: ``texts`` is a single string.
            mmrag.TextInputError: An item is not a string.
        """
        return _to_lists(self.encoder.embed_texts(as_items(texts, "texts"), batch_size=self.batch_size))

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            mmrag.TextInputError: ``text`` is not a string (also a ``TypeError``).
        """
        return _to_lists(self.encoder.embed_texts([_text(text)]))[0]

    def embed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Embed images, in forward passes of at most ``batch_size``.

        The name and the ``uris`` keyword are what ``langchain_chroma.Chroma``
        calls in ``add_images`` and ``similarity_search_by_image``.

        Args:
            uris: Anything :func:`mmrag.resolve_image` accepts: paths, http(s)
                URLs, data URIs, base64 strings, bytes, file objects, PIL
                images or numpy arrays. The encoder's ``image_limits`` apply.

        Returns:
            One L2-normalised vector per image.

        Raises:
            mmrag.NotASequenceError: ``uris`` is a single item instead of a list (also a ``TypeError``).
            mmrag.ImageInputError: An image could not be resolved; the message
                names its index.
        """
        return _to_lists(self.encoder.embed_images(as_items(uris, "uris"), batch_size=self.batch_size))

    # ----------------------------------------------------------------- async
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts without blocking the event loop; concurrent calls share forward passes.

        Args:
            texts: The texts.

        Returns:
            One L2-normalised vector per text.

        Raises:
            mmrag.NotASequenceError: ``texts`` is a single string.
            mmrag.TextInputError: An item is not a string.
            mmrag.QueueFullError: Too many items are already waiting.
        """
        return _to_lists(await self._get_batcher().aembed_texts(as_items(texts, "texts")))

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query text without blocking the event loop.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            mmrag.TextInputError: ``text`` is not a string (also a ``TypeError``).
        """
        return _to_lists(await self._get_batcher().aembed_texts([_text(text)]))[0]

    async def aembed_image(self, uris: Sequence[ImageInput]) -> list[list[float]]:
        """Embed images without blocking the event loop; concurrent calls share forward passes.

        Images are fetched and decoded on the batcher's worker thread, never
        on the event loop.

        Args:
            uris: Image inputs, as for :meth:`embed_image`.

        Returns:
            One L2-normalised vector per image.

        Raises:
            mmrag.NotASequenceError: ``uris`` is a single item instead of a list (also a ``TypeError``).
            mmrag.ImageInputError: An image could not be resolved; the message
                names its index within this call.
        """
        return _to_lists(await self._get_batcher().aembed_images(as_items(uris, "uris")))

    def close(self) -> None:
        """Stop the async batcher's worker thread (it restarts on the next async call).

        The encoder itself is left alone: it may be shared.
        """
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _field_options(self) -> LoadOptions:
        """The options the fields describe (for an object made without ``__init__``, e.g. by ``model_validate``)."""
        return LoadOptions(
            device=self.device, dtype=self.dtype, batch_size=self.batch_size, local_files_only=self.local_files_only
        )

    def _get_batcher(self) -> EmbeddingBatcher:
        batcher = self._batcher
        if batcher is None:
            encoder = self.encoder
            with self._lock:
                if self._batcher is None:
                    self._batcher = EmbeddingBatcher(
                        encoder, max_batch_items=self.batch_size, max_wait_ms=self.batch_wait_ms
                    )
                batcher = self._batcher
        return batcher


def _text(text: object) -> str:
    """A query text, refusing anything that is not a string."""
    if not isinstance(text, str):
        raise TextInputError(f"must be a string, got {type(text).__name__}")
    return text


def _to_lists(vectors: np.ndarray) -> list[list[float]]:
    """Vectors as LangChain wants them: lists of Python floats."""
    lists: list[list[float]] = vectors.tolist()
    return lists
