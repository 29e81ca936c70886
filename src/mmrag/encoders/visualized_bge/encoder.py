"""The :class:`~mmrag.Encoder` over a Visualized-BGE model.

``embed_texts`` is the original's ``encode_text``, ``embed_images`` its
``encode_image`` (image tokens with an empty prompt) and
``embed_fused(images, texts).fused`` its ``encode_mm``: one joint vector for
an image with a text, e.g. a composed query "this shoe, but in red".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmrag.encoders.base import Batch, Encoder, FusedEmbeddings, checked_pairs
from mmrag.encoders.visualized_bge.model import VisualizedBgeModel
from mmrag.encoders.visualized_bge.preprocess import eva_clip_pixels
from mmrag.inputs import ImageInput, ImageLimits, resolve_image

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["VisualizedBgeEncoder"]


class VisualizedBgeEncoder(Encoder):
    """Visualized-BGE (BAAI): BGE text vectors, image vectors and joint image+text vectors in one space.

    Built by :func:`mmrag.load_encoder` from a ``.pth`` checkpoint and its
    BGE text model; you rarely construct one directly.

    Args:
        model: The network, in eval mode on its device.
        tokenizer: The BGE model's tokenizer.
        model_id: What the encoder records as its identity.
        batch_size: Most items per forward pass.
        image_limits: Limits for resolving image inputs.
        text_model: The BGE text model it was loaded with (hub id or
            absolute directory); a store records it so that it reopens
            without being told again.

    Attributes:
        max_text_length: Token limit of a text (longer texts are truncated).
        max_prompt_length: Token limit of the text of an image+text pair (the
            image's patch tokens take the rest of the positions).
    """

    family = "visualized_bge"

    def __init__(
        self,
        model: VisualizedBgeModel,
        tokenizer: Any,
        *,
        model_id: str,
        batch_size: int = 64,
        image_limits: ImageLimits | None = None,
        text_model: str = "",
    ) -> None:
        super().__init__(batch_size=batch_size, image_limits=image_limits)
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.text_model = text_model
        config = model.text_model.config
        self.dim = int(config.hidden_size)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        positions = int(config.max_position_embeddings)
        if config.model_type == "xlm-roberta":  # positions start after the padding index
            positions -= int(config.pad_token_id) + 1
        tokenizer_limit = getattr(tokenizer, "model_max_length", positions) or positions
        self.max_text_length = min(positions, int(min(tokenizer_limit, 1 << 30)))
        self.max_prompt_length = min(self.max_text_length, int(config.max_position_embeddings) - model.image_tokens)

    # ------------------------------------------------------------------ hooks
    def prepare_texts(self, texts: list[str]) -> Batch:
        """Tokenise texts, truncated to ``max_text_length``.

        Args:
            texts: One batch of texts.

        Returns:
            The tokenizer's tensors.
        """
        return self._tokenize(texts, self.max_text_length)

    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """EVA-CLIP preprocessing: shortest side resize (bicubic), center crop, OpenAI mean/std.

        Args:
            images: One batch of RGB images.

        Returns:
            ``{"pixel_values": ...}`` and the empty prompts' tensors.
        """
        return {"pixel_values": self._pixels(images), **self._tokenize([""] * len(images), self.max_prompt_length)}

    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """The BGE ``[CLS]`` vector of each text.

        Args:
            batch: What :meth:`prepare_texts` returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return self.model.encode_text(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))

    def forward_images(self, batch: Batch) -> torch.Tensor:
        """Image tokens with an empty prompt through the text model (the ``[CLS]`` vector).

        Args:
            batch: What :meth:`prepare_images` (or the fused prepare step) returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return self.model.encode_mm(
            batch["pixel_values"].to(self.device, self.dtype),
            batch["input_ids"].to(self.device),
            batch["attention_mask"].to(self.device),
        )

    # ------------------------------------------------------------- public API
    def embed_fused(
        self, images: Iterable[ImageInput], texts: Iterable[str], *, batch_size: int | None = None
    ) -> FusedEmbeddings:
        """Embed image-text pairs; ``fused`` is the joint encoding of each image with its text.

        Args:
            images: One image per pair.
            texts: One text per pair, same length as ``images``.
            batch_size: Override the encoder's ``batch_size`` for this call.

        Returns:
            A :class:`~mmrag.FusedEmbeddings`: ``image`` and ``text`` are the
            single-modality vectors, ``fused`` the original's ``encode_mm``
            (image tokens followed by the text, one vector per pair).

        Raises:
            mmrag.NotASequenceError: ``images`` or ``texts`` is a single item.
            ValueError: ``images`` and ``texts`` differ in length.
            mmrag.TextInputError: A text is not a string or not valid Unicode.
            mmrag.ImageInputError: An image could not be resolved.

        Example:
            >>> pair = enc.embed_fused(["shoe.jpg"], ["make it red"])
            >>> pair.fused.shape
            (1, 768)
        """
        image_items, text_items = checked_pairs(images, texts)
        limits = self.image_limits

        def prepare(chunk: list[tuple[ImageInput, str]], start: int) -> Batch:
            decoded = [resolve_image(image, limits=limits, index=start + i) for i, (image, _) in enumerate(chunk)]
            prompts = self._tokenize([text for _, text in chunk], self.max_prompt_length)
            return {"pixel_values": self._pixels(decoded), **prompts}

        fused = self._pipeline(list(zip(image_items, text_items)), prepare, self.forward_images, batch_size)
        return FusedEmbeddings(
            image=self.embed_images(image_items, batch_size=batch_size),
            text=self.embed_texts(text_items, batch_size=batch_size),
            fused=fused,
        )

    @property
    def signature(self) -> dict[str, str | int]:
        """The base signature plus ``text_model`` (recorded by a store, not compared: the weights are the .pth's)."""
        signature = super().signature
        if self.text_model:
            signature["text_model"] = self.text_model
        return signature

    @property
    def preprocessing(self) -> str:
        """A short, stable description of the preprocessing (for store metadata)."""
        size = self.model.image_size
        return (
            f"eva-clip: shortest side {size} bicubic, center crop {size}, openai mean/std; "
            f"text [CLS] pooling, max {self.max_text_length} tokens; image = image tokens + empty prompt"
        )

    # -------------------------------------------------------------- internals
    def _tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(eva_clip_pixels(images, self.model.image_size)))
