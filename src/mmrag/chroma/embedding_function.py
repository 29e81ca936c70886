"""``MultimodalEmbeddingFunction``: an mmrag encoder as a Chroma 1.x embedding function.

It embeds documents and images into one vector space, so a collection can hold
both and be queried with either (``query_texts=``, ``query_images=``,
``query_uris=`` with a data loader). Chroma stores :meth:`get_config` with the
collection; a process that imports :mod:`mmrag.chroma` can reopen the
collection without passing ``embedding_function=`` and gets the same model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from mmrag.chroma import config as stored
from mmrag.chroma.encoder_cache import encoder_cache
from mmrag.chroma.routing import embed_items
from mmrag.encoders import DEFAULT_MODEL, Encoder, load_encoder
from mmrag.errors import InvalidInputError
from mmrag.options import LoadOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mmrag.options import LoadOverrides

__all__ = ["MultimodalEmbeddingFunction"]


@register_embedding_function
class MultimodalEmbeddingFunction(EmbeddingFunction[Embeddable]):
    """Chroma embedding function for texts and images from a local mmrag encoder.

    Pass it as ``embedding_function=`` where you would pass Chroma's
    ``OpenCLIPEmbeddingFunction``. Documents (``str``) go through the text
    tower, images (numpy arrays from ``images=`` or from a data loader for
    ``uris=``, PIL images, encoded bytes, :class:`pathlib.Path`) through the
    image tower; each kind is embedded in one batched call and the vectors
    come back in input order, float32 and L2-normalised (so ``"cosine"`` and
    ``"ip"`` rank alike; the default space is ``"cosine"``).

    Args:
        model: Preset alias (``mmrag.list_models()``), hub id or local
            ``save_pretrained`` directory; default ``mmrag.DEFAULT_MODEL``.
        encoder: An already loaded :class:`mmrag.Encoder` to use instead of
            loading ``model`` (then pass no loading options).
        options: How to load ``model`` (:class:`mmrag.LoadOptions`).
        **load_overrides: :class:`mmrag.LoadOptions` fields applied on top of
            ``options`` (``device="cpu"``, ``batch_size=32``,
            ``local_files_only=True`` ...).

    Raises:
        mmrag.InvalidInputError: Both ``model`` and ``encoder``, or
            ``encoder`` with loading options.
        TypeError: An override that is not a :class:`mmrag.LoadOptions` field.
        mmrag.ModelNotAvailableError: The model cannot be found or loaded.

    Example:
        >>> import chromadb
        >>> from mmrag.chroma import MultimodalEmbeddingFunction
        >>> ef = MultimodalEmbeddingFunction(model="demo")
        >>> photos = chromadb.Client().create_collection("photos", embedding_function=ef)
        >>> photos.add(ids=["a"], documents=["a red circle"])
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | None = None,
        options: LoadOptions | None = None,
        **load_overrides: Unpack[LoadOverrides],
    ) -> None:
        if encoder is not None:
            given = ["model"] if model is not None else []
            given += ["options"] if options is not None else []
            given += sorted(load_overrides)
            if given:
                raise InvalidInputError(
                    f"pass either encoder= or model= with loading options, not both (got encoder and "
                    f"{', '.join(given)}); the encoder is already loaded"
                )
            if not isinstance(encoder, Encoder):
                raise InvalidInputError(f"encoder must be a mmrag.Encoder, got {type(encoder).__name__}")
            opts = LoadOptions()
        else:
            opts = LoadOptions.merge(options, load_overrides)
            encoder = load_encoder(DEFAULT_MODEL if model is None else model, options=opts)
        self._adopt(encoder, stored.make_config(encoder.model_id, opts, encoder.batch_size))

    def _adopt(self, encoder: Encoder, config: dict[str, Any]) -> None:
        self._encoder = encoder
        self._config = config
        encoder_cache.remember(stored.config_key(config), encoder)

    # ------------------------------------------------------------- embedding
    def __call__(self, input: Embeddable | Sequence[Any]) -> Embeddings:  # noqa: A002 - Chroma passes input=
        """Embed documents and images.

        Args:
            input: Documents (``str``) and images (numpy arrays, PIL images,
                encoded bytes, :class:`pathlib.Path`). Chroma sends one kind
                per call; a mixed list works and keeps its order.

        Returns:
            One float32 vector per item, in input order.

        Raises:
            mmrag.InvalidInputError: ``input`` is empty, or an item is neither
                a document nor an image (the message names its index).
            mmrag.ImageInputError: An image cannot be decoded (the message
                names its index and the reason).
        """
        return list(embed_items(self._encoder, input))

    # ------------------------------------------------------ Chroma's protocol
    @staticmethod
    def name() -> str:
        """The name Chroma stores with a collection and looks up to rebuild this function."""
        return "mmrag"

    def get_config(self) -> dict[str, Any]:
        """What Chroma stores to rebuild this function when the collection is reopened.

        Returns:
            ``model`` (the encoder's ``model_id``), ``batch_size``,
            ``local_files_only``, and ``device``, ``dtype``, ``revision`` when
            they were set.
        """
        return dict(self._config)

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MultimodalEmbeddingFunction:
        """Rebuild the function from a stored config, loading each model once per process.

        Args:
            config: What :meth:`get_config` returned.

        Returns:
            An embedding function with the same model and options.

        Raises:
            mmrag.InvalidInputError: The config is malformed or asks for an
                option that is never restored (``trust_remote_code``,
                ``use_safetensors``).
            mmrag.ModelNotAvailableError: The model cannot be loaded here.
        """
        MultimodalEmbeddingFunction.validate_config(config)
        options = stored.options_from_config(config)
        encoder = encoder_cache.get_or_load(
            stored.config_key(config), lambda: load_encoder(config["model"], options=options)
        )
        function = MultimodalEmbeddingFunction.__new__(MultimodalEmbeddingFunction)
        function._adopt(encoder, dict(config))
        return function

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Check a config (see :func:`mmrag.chroma.config.validate_config`).

        Args:
            config: A config.

        Raises:
            mmrag.InvalidInputError: The config cannot be used.
        """
        stored.validate_config(config)

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Refuse a change of model on an existing collection (its vectors would not compare).

        Args:
            old_config: The stored config.
            new_config: The config of the function being set.

        Raises:
            mmrag.InvalidInputError: ``model`` differs.
        """
        if old_config.get("model") != new_config.get("model"):
            raise InvalidInputError(
                f"a collection's model cannot change (from {old_config.get('model')!r} to "
                f"{new_config.get('model')!r}): its stored vectors would not be comparable; make a new collection"
            )

    def is_legacy(self) -> bool:
        """``False``: this function has a name and a config (Chroma's default check would load the model again)."""
        return False

    def default_space(self) -> Space:
        """``"cosine"``: the vectors are L2-normalised."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Every Chroma space: on unit vectors ``cosine``, ``ip`` and ``l2`` rank alike."""
        return ["cosine", "ip", "l2"]

    # ------------------------------------------------------------- extras
    @property
    def encoder(self) -> Encoder:
        """The mmrag encoder that computes the vectors."""
        return self._encoder

    @property
    def model_id(self) -> str:
        """The encoder's ``model_id`` (what the config records)."""
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._encoder.dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_id!r}, dim={self.dim})"
