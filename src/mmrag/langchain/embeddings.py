"""``LocalMultiModalEmbeddings``: LangChain embeddings for texts and images from a local mmrag encoder."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mmrag.batching import EmbeddingBatcher
from mmrag.cache import EmbeddingCache, encoder_identity
from mmrag.components import options_for, recorded_options
from mmrag.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mmrag.inputs import ImageInput, as_items
from mmrag.langchain._arguments import adopted_fields, model_from_open_clip_names
from mmrag.langchain._documents import query_text, vector_lists
from mmrag.langchain._progress import embed_with_progress
from mmrag.model_sharing import SharesModelWhenCopied
from mmrag.options import LoadOptions

__all__ = ["LocalMultiModalEmbeddings"]


class LocalMultiModalEmbeddings(SharesModelWhenCopied, BaseModel, Embeddings):
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

    Coming from ``OpenCLIPEmbeddings``: its ``model_name`` and ``checkpoint``
    are accepted; a pair with a known Hugging Face copy of its weights (e.g.
    ``model_name="ViT-H-14", checkpoint="laion2b_s32b_b79k"``) loads that copy,
    and ``model_name`` alone may be anything ``model`` takes. Copies
    (``copy.deepcopy``, ``model_copy``) share the loaded model; a pickle holds
    the settings only, and the model loads again on first use after unpickling.

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

    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = 64
    """Most items per forward pass; ``"auto"``: the largest that fits the GPU (see :class:`mmrag.LoadOptions`)."""

    local_files_only: bool = False
    """Never use the network to load the model; fail unless it is local or cached."""

    batch_wait_ms: float = Field(default=2.0, ge=0.0)
    """How long the async batcher waits for concurrent calls to join a forward pass."""

    show_progress: bool | None = None
    """A progress bar for :meth:`embed_documents` and :meth:`embed_image`; ``None``: past one batch, where
    the user can see it (a widget in Jupyter, a bar in a terminal, none in pipes and services)."""

    _encoder: Encoder | None = PrivateAttr(default=None)
    _options: LoadOptions | None = PrivateAttr(default=None)
    _batcher: EmbeddingBatcher | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        *,
        encoder: Encoder | None = None,
        options: LoadOptions | None = None,
        cache: EmbeddingCache | None = None,
        **data: Any,
    ) -> None:
        """Load the model, or adopt ``encoder``.

        Args:
            encoder: An already loaded :class:`mmrag.Encoder` to reuse instead
                of loading ``model``. ``model``, ``options`` and loading
                options cannot be passed with it; ``batch_size`` may only
                repeat the encoder's own.
            options: How to load ``model`` (:class:`mmrag.LoadOptions`).
            cache: An :class:`mmrag.EmbeddingCache` for the encoder (it becomes
                ``encoder.cache``, shared with everyone using that encoder):
                :meth:`embed_documents`, :meth:`embed_query` *and*
                :meth:`embed_image` then embed what is new only. Not serialised.
            **data: The fields (``model``, ``batch_size``, ``batch_wait_ms``),
                OpenCLIPEmbeddings' ``model_name`` and ``checkpoint`` (instead
                of ``model``), and any :class:`mmrag.LoadOptions` field
                (``device``, ``dtype``, ``revision``...), applied on top of ``options``.

        Raises:
            mmrag.InvalidInputError: Both ``encoder`` and loading options were
                given, an option is invalid, or ``model_name``/``checkpoint``
                name OpenCLIP weights with no known Hugging Face copy.
            pydantic.ValidationError: A field is invalid or unknown.
            mmrag.ModelNotAvailableError: The model cannot be found or loaded.
            mmrag.UnsupportedModelError: The checkpoint's architecture has no family.
        """
        data = model_from_open_clip_names(data)
        batch_size = data.pop("batch_size", None)  # a field and an option: the encoder's batch size
        opts = options_for("encoder", encoder, options, data)
        if encoder is None:
            opts = opts if batch_size is None else opts.replace(batch_size=batch_size)
            fields = recorded_options(opts)
            if opts.batch_size is not None:
                fields["batch_size"] = opts.batch_size
            super().__init__(**data, **fields)
            self._options = opts.replace(batch_size=self.batch_size)
            self._encoder = load_encoder(self.model, options=self._options, cache=cache)
            return
        super().__init__(**adopted_fields(encoder, data, batch_size))
        self._encoder = encoder
        if cache is not None:
            encoder.cache = cache

    @model_validator(mode="before")
    @classmethod
    def _open_clip_names(cls, data: Any) -> Any:
        """``model_name`` / ``checkpoint`` (OpenCLIPEmbeddings' names) also for ``model_validate``."""
        return model_from_open_clip_names(data) if isinstance(data, dict) else data

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    # ------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder that computes the vectors (loaded on first use if needed)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:  # made by model_validate, or unpickled
                    self._options = self._options or self._field_options()
                    self._encoder = load_encoder(self.model, options=self._options)
        return self._encoder

    @property
    def options(self) -> LoadOptions | None:
        """The :class:`mmrag.LoadOptions` the encoder is loaded with; ``None`` for one passed as ``encoder=``."""
        if self._options is None and self._encoder is None:
            return self._field_options()
        return self._options

    @property
    def model_name(self) -> str:
        """``model``, under the name OpenCLIPEmbeddings gives it (e.g. for a cache ``namespace``)."""
        return self.model

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.encoder.dim

    @property
    def cache_identity(self) -> str:
        """One string per vector space (:func:`mmrag.cache.encoder_identity`).

        Pass it as the ``namespace`` of LangChain's caches, e.g.
        ``CacheBackedEmbeddings.from_bytes_store(emb, store, namespace=emb.cache_identity)``,
        so that their entries are keyed by the model, not by a name you chose.
        """
        return encoder_identity(self.encoder)

    @property
    def forward_batch(self) -> int:
        """The batch size in effect (``batch_size``, or what ``"auto"`` chose)."""
        return self.encoder.batch_size if self.batch_size == "auto" else self.batch_size

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
        encoder, size = self.encoder, self.forward_batch
        items = as_items(texts, "texts")
        embed = lambda chunk: encoder.embed_texts(chunk, batch_size=size)  # noqa: E731 - one call per progress step
        return vector_lists(embed_with_progress(embed, items, batch_size=size, show=self.show_progress, unit="text"))

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            mmrag.TextInputError: ``text`` is not a string (also a ``TypeError``).
        """
        return vector_lists(self.encoder.embed_texts([query_text(text)]))[0]

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
        encoder, size = self.encoder, self.forward_batch
        items = as_items(uris, "uris")
        embed = lambda chunk: encoder.embed_images(chunk, batch_size=size)  # noqa: E731 - one call per progress step
        return vector_lists(embed_with_progress(embed, items, batch_size=size, show=self.show_progress, unit="image"))

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
        return vector_lists(await self._get_batcher().aembed_texts(as_items(texts, "texts")))

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query text without blocking the event loop.

        Args:
            text: The query.

        Returns:
            Its L2-normalised vector.

        Raises:
            mmrag.TextInputError: ``text`` is not a string (also a ``TypeError``).
        """
        return vector_lists(await self._get_batcher().aembed_texts([query_text(text)]))[0]

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
        return vector_lists(await self._get_batcher().aembed_images(as_items(uris, "uris")))

    def close(self) -> None:
        """Stop the async batcher's worker thread (it restarts on the next async call).

        The encoder itself is left alone: it may be shared.
        """
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _fresh_private(self) -> dict[str, Any]:
        return {"_batcher": None, "_lock": threading.Lock()}

    def _pickled_private(self) -> dict[str, Any]:
        options = self.options
        if self._options is None and self._encoder is not None:  # adopted: what is known of how it was loaded
            options = self._field_options().replace(image_limits=self._encoder.image_limits)
        return {"_encoder": None, "_options": options}

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
                        encoder, max_batch_items=self.forward_batch, max_wait_ms=self.batch_wait_ms
                    )
                batcher = self._batcher
        return batcher
