"""``LocalMultiModalEmbedding``: a LlamaIndex ``MultiModalEmbedding`` backed by a local mmrag encoder."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import BaseNode, ImageType

from mmrag.batching import EmbeddingBatcher
from mmrag.cache import EmbeddingCache, encoder_identity
from mmrag.components import options_for, recorded_options
from mmrag.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mmrag.errors import InvalidInputError
from mmrag.inputs import ImageInput
from mmrag.llama_index._names import check_model_name, model_from_name
from mmrag.llama_index._transform import aembed_nodes, embed_nodes
from mmrag.llama_index._truncation import warn_if_truncated
from mmrag.model_sharing import SharesModelWhenCopied
from mmrag.options import LoadOptions

__all__ = ["Embedding", "LocalMultiModalEmbedding"]

Embedding = list[float]
"""One embedding as LlamaIndex wants it: a list of Python floats."""


class LocalMultiModalEmbedding(SharesModelWhenCopied, MultiModalEmbedding):
    """A LlamaIndex multimodal embedding model that runs a local mmrag encoder.

    Texts, queries and images are embedded into one vector space (CLIP,
    SigLIP, SigLIP 2, Chinese-CLIP or the bundled ``"demo"`` model), with
    L2-normalised vectors, so cosine similarity and dot product agree.

    As a transformation (``IngestionPipeline(transformations=[embed])``, or
    ``from_documents(..., transformations=[...])``) it embeds image nodes
    (``ImageNode``, ``ImageDocument``) from their image with the image tower and
    other nodes from their text, leaving ``file_path`` metadata out of that text
    unless ``embed_file_path=True``. Texts longer than the model's text window
    are cut; a warning on the ``"mmrag"`` logger says so, once per call site.

    Copies (``copy.deepcopy``, ``model_copy``) share the loaded model; a pickle
    holds the settings, and the model loads again on first use after unpickling.

    The serialised fields (what LlamaIndex's ``IngestionCache`` keys a
    transformation by) depend on the vector space only: ``model`` is the loaded
    model's id and ``device``/``dtype`` what it runs in, whether it was named
    (``model="demo"``) or passed (``encoder=load_encoder("demo")``), and
    ``cache_identity`` is :func:`mmrag.cache.encoder_identity` of the encoder.

    Args:
        model: A preset alias (see :func:`mmrag.list_models`), a hub id or a
            local directory. Defaults to ``"siglip2-base-224"``. Leave it out
            when passing ``encoder``.
        model_name: ``ClipEmbedding``'s name for ``model``: an OpenAI CLIP name
            (``"ViT-B/32"``, ``"ViT-B/16"``, ``"ViT-L/14"``, ``"ViT-L/14@336px"``:
            the same weights from the Hugging Face hub) or anything ``model``
            takes. After construction it holds the loaded model's id.
        encoder: An already loaded :class:`mmrag.Encoder` to use instead of
            loading ``model``; ``model`` is then its ``model_id``.
        options: How to load ``model`` (:class:`mmrag.LoadOptions`); only
            without ``encoder``.
        embed_batch_size: Items per forward pass; default: ``options.batch_size``,
            else 64, or the encoder's ``batch_size`` when ``encoder`` is given.
        batch_wait_ms: How long concurrent async requests wait for others to
            join their forward pass.
        cache: An :class:`mmrag.EmbeddingCache` for the encoder (it becomes
            ``encoder.cache``, shared with everyone using that encoder): texts
            and images embedded before cost a lookup. Not serialised.
        **kwargs: Any :class:`mmrag.LoadOptions` field (``device="cpu"``,
            ``dtype="float16"``, ``local_files_only=True``...), applied on top
            of ``options``; and other ``BaseEmbedding`` fields, e.g. ``callback_manager``.

    Raises:
        mmrag.InvalidInputError: ``encoder`` is given together with a different
            ``model`` (or ``model_name``), or with loading options; ``model`` and
            ``model_name`` name different models; ``model_name`` is a ResNet CLIP.
        mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.

    Example:
        >>> from mmrag.llama_index import LocalMultiModalEmbedding
        >>> embed = LocalMultiModalEmbedding(model="demo", device="cpu")
        >>> len(embed.get_text_embedding("a red circle"))
        64
        >>> vectors = embed.get_image_embedding_batch(["a.png", "b.png"])  # doctest: +SKIP
    """

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Preset alias, hub id or local directory of the mmrag encoder.",
    )
    device: str | None = Field(
        default=None,
        description="Device to run on ('cuda', 'mps', 'cpu'...); None picks CUDA, then MPS, then CPU.",
    )
    dtype: str | None = Field(
        default=None,
        description="Weight dtype ('float32', 'float16', 'bfloat16'); None: half precision on a GPU, float32 on CPU.",
    )
    embed_batch_size: int = Field(
        default=64,
        description="Most items per forward pass (LlamaIndex hands batches of this size to the model).",
        gt=0,
        le=2048,
    )
    local_files_only: bool = Field(
        default=False,
        description="Never touch the network when loading the model.",
    )
    batch_wait_ms: float = Field(
        default=2.0,
        description="How long concurrent async requests wait for others to join a shared forward pass.",
        ge=0.0,
    )
    embed_file_path: bool = Field(
        default=False,
        description="As a transformation, keep 'file_path' metadata in the embedded text of text nodes.",
    )
    cache_identity: str = Field(
        default="",
        description="mmrag.cache.encoder_identity of the encoder: one value per vector space.",
    )

    _encoder: Encoder | None = PrivateAttr(default=None)
    _options: LoadOptions | None = PrivateAttr(default=None)
    _batcher: EmbeddingBatcher | None = PrivateAttr(default=None)
    _batcher_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_name: str | None = None,
        encoder: Encoder | None = None,
        options: LoadOptions | None = None,
        embed_batch_size: int | None = None,
        batch_wait_ms: float = 2.0,
        cache: EmbeddingCache | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("cache_identity", None)  # from_dict hands it back; it is computed from the encoder
        opts = options_for("encoder", encoder, options, kwargs)
        owned: LoadOptions | None = None  # the options, when this object loads (and so owns) the encoder
        if encoder is not None:
            if model is not None and str(model) not in (
                encoder.model_id,
                encoder.model_id.removeprefix("mmrag/"),
            ):
                raise InvalidInputError(
                    f"got model={str(model)!r} and an encoder for {encoder.model_id!r}; pass one of them"
                )
            check_model_name(model_name, model, encoder)
            loaded = encoder
            batch_size = encoder.batch_size if embed_batch_size is None else embed_batch_size
        else:
            owned = opts if embed_batch_size is None else opts.replace(batch_size=embed_batch_size)
            if model is not None:
                name: str | os.PathLike[str] = model
            else:
                name = DEFAULT_MODEL if model_name is None else model_from_name(model_name)
            loaded = load_encoder(name, options=owned)
            if model is not None:
                check_model_name(model_name, model, loaded)
            batch_size = loaded.batch_size
        fields: dict[str, Any] = {
            **(recorded_options(owned) if owned is not None else {}),
            "model": loaded.model_id,  # not the alias: one serialised identity per vector space
            "device": str(loaded.device),
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "cache_identity": encoder_identity(loaded),
        }
        if cache is not None:
            loaded.cache = cache
        super().__init__(
            model_name=loaded.model_id, embed_batch_size=batch_size, batch_wait_ms=batch_wait_ms, **fields, **kwargs
        )
        self._encoder = loaded
        self._options = owned

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this component.

        Returns:
            ``"LocalMultiModalEmbedding"``.
        """
        return "LocalMultiModalEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder doing the work (after unpickling, loaded again on first use)."""
        encoder = self._encoder
        if encoder is None:
            with self._batcher_lock:
                if self._encoder is None:
                    self._encoder = load_encoder(self.model, options=self._options)
                encoder = self._encoder
        return encoder

    @property
    def options(self) -> LoadOptions | None:
        """The :class:`mmrag.LoadOptions` the encoder was loaded with; ``None`` for one passed as ``encoder=``."""
        return self._options

    @property
    def batcher(self) -> EmbeddingBatcher:
        """The batcher that coalesces concurrent async requests (created on first use)."""
        encoder = self.encoder
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = EmbeddingBatcher(
                    encoder,
                    max_batch_items=self.embed_batch_size,
                    max_wait_ms=self.batch_wait_ms,
                )
            return self._batcher

    def close(self) -> None:
        """Stop the batcher's worker thread (and the encoder's, if this object loaded it).

        The object stays usable: threads restart on demand.
        """
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()
        if self._options is not None and self._encoder is not None:  # this object loaded the encoder
            self._encoder.close()

    # ------------------------------------------------------- transformation
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed nodes as a transformation: image nodes from their image, other nodes from their text.

        Args:
            nodes: The nodes (``ImageNode`` / ``ImageDocument`` with an image,
                path or URL are images); their ``embedding`` is set in place.
            **kwargs: ``show_progress``; other keywords of the pipeline are ignored.

        Returns:
            ``nodes``.
        """
        return embed_nodes(self, nodes, embed_file_path=self.embed_file_path, show_progress=_progress(kwargs))

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Async form of :meth:`__call__` (the model runs off the event loop); returns ``nodes``."""
        return await aembed_nodes(self, nodes, embed_file_path=self.embed_file_path, show_progress=_progress(kwargs))

    # ------------------------------------------------------ copy and pickle
    def _fresh_private(self) -> dict[str, Any]:
        return {"_batcher": None, "_batcher_lock": threading.Lock()}

    def _pickled_private(self) -> dict[str, Any]:
        options = self._options
        if options is None:  # an adopted encoder: load it again with what is known of it
            encoder = self.encoder
            options = LoadOptions(batch_size=encoder.batch_size, image_limits=encoder.image_limits)
        return {"_encoder": None, "_options": options}

    # ------------------------------------------------------------- sync hooks
    def _get_query_embedding(self, query: str) -> Embedding:
        """Embed one query text (the same text tower as documents; no prefix)."""
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        """Embed one text."""
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed texts: one forward pass per ``embed_batch_size`` texts."""
        encoder = self.encoder
        warn_if_truncated(encoder, texts)
        vectors: list[Embedding] = encoder.embed_texts(list(texts), batch_size=self.embed_batch_size).tolist()
        return vectors

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        """Embed one image (a path, URL, ``BytesIO`` or anything :func:`mmrag.resolve_image` takes)."""
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        """Embed images: one forward pass per ``embed_batch_size`` images."""
        images: list[ImageInput] = list(img_file_paths)
        vectors: list[Embedding] = self.encoder.embed_images(images, batch_size=self.embed_batch_size).tolist()
        return vectors

    # ------------------------------------------------------------ async hooks
    # Every async hook goes through the batcher: the model runs on its worker
    # thread, never on the event loop, and requests that arrive together (e.g.
    # many ``aget_image_embedding`` calls gathered at once) share forward passes.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        """Embed one query text off the event loop."""
        return (await self._aget_text_embeddings([query]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        """Embed one text off the event loop."""
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed texts off the event loop, sharing forward passes with concurrent calls."""
        batcher = self.batcher
        warn_if_truncated(batcher.encoder, texts)
        vectors: list[Embedding] = (await batcher.aembed_texts(list(texts))).tolist()
        return vectors

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        """Embed one image off the event loop."""
        return (await self._aget_image_embeddings([img_file_path]))[0]

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        """Embed images off the event loop, sharing forward passes with concurrent calls."""
        images: list[ImageInput] = list(img_file_paths)
        vectors: list[Embedding] = (await self.batcher.aembed_images(images)).tolist()
        return vectors


def _progress(kwargs: dict[str, Any]) -> bool:
    return bool(kwargs.get("show_progress", False))
