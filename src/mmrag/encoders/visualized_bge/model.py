"""The Visualized-BGE network: a BGE text model that also reads EVA02 image tokens.

Text alone runs through the BGE model as usual (``[CLS]`` pooling). For an
image with a prompt the sequence is ``[CLS]``, the image's patch tokens
(projected to the text width, placed at positions ``1..L`` without a
token-type embedding), then the prompt's remaining tokens at positions
``L+1...``; the ``[CLS]`` output is the joint vector. An image alone is the
same with an empty prompt.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from mmrag.encoders.visualized_bge.checkpoint import VisualizedBgeCheckpoint
from mmrag.encoders.visualized_bge.eva02 import Eva02Config, Eva02VisionTower
from mmrag.errors import UnsupportedModelError

__all__ = ["TEXT_MODEL_TYPES", "VisualizedBgeModel"]

TEXT_MODEL_TYPES = ("bert", "xlm-roberta")
"""Text model ``model_type`` values Visualized-BGE is built on (bge-base-en-v1.5, bge-m3)."""


class VisualizedBgeModel(nn.Module):
    """The BGE text model, the EVA02 tower and the projection between them.

    Args:
        text_model: A transformers ``BertModel`` or ``XLMRobertaModel``.
        vision: The EVA02 tower.
        visual_proj: Maps tower width to text width.
    """

    def __init__(self, text_model: Any, vision: Eva02VisionTower, visual_proj: nn.Linear) -> None:
        super().__init__()
        self.text_model = text_model
        self.vision = vision
        self.visual_proj = visual_proj

    @classmethod
    def from_checkpoint(cls, parts: VisualizedBgeCheckpoint, text_config: Any, name: str) -> VisualizedBgeModel:
        """Build the network from its config and load every weight from the checkpoint.

        Args:
            parts: The checkpoint, split by part.
            text_config: The BGE model's transformers config.
            name: The checkpoint's name, for messages.

        Returns:
            The model in eval mode, float32, on the CPU.

        Raises:
            UnsupportedModelError: The text config is not BERT or XLM-RoBERTa,
                or the tensors do not fit the configs.
        """
        from transformers import AutoModel

        if text_config.model_type not in TEXT_MODEL_TYPES:
            raise UnsupportedModelError(
                f"Visualized-BGE needs a BERT or XLM-RoBERTa text model (bge-base-en-v1.5, bge-m3), got model_type "
                f"{text_config.model_type!r}"
            )
        try:
            with _skip_random_init():  # every parameter is overwritten from the checkpoint just below
                vision = Eva02VisionTower(Eva02Config.from_state_dict(parts.vision))
                weight = parts.visual_proj["weight"]
                visual_proj = nn.Linear(weight.shape[1], weight.shape[0])
                text_model = AutoModel.from_config(text_config, add_pooling_layer=bool(parts.pooler))  # type: ignore[no-untyped-call]  # transformers is untyped here
            vision.load_state_dict(parts.vision)  # strict loads: nothing keeps its uninitialised value
            visual_proj.load_state_dict(parts.visual_proj)
            text_model.embeddings.load_state_dict(parts.embeddings)
            text_model.encoder.load_state_dict(parts.encoder)
            if parts.pooler:
                text_model.pooler.load_state_dict(parts.pooler)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UnsupportedModelError(
                f"{name!r} does not fit its text model's config ({text_config.model_type}, hidden size "
                f"{text_config.hidden_size}): {str(exc).splitlines()[0]}"
            ) from exc
        if visual_proj.out_features != text_config.hidden_size:
            raise UnsupportedModelError(
                f"{name!r} projects image tokens to {visual_proj.out_features} channels but its text model has "
                f"{text_config.hidden_size}: pass the text model the checkpoint was trained with"
            )
        return cls(text_model, vision, visual_proj).eval()

    @property
    def image_size(self) -> int:
        """Input side of the vision tower in pixels."""
        return self.vision.config.image_size

    @property
    def image_tokens(self) -> int:
        """Patch tokens one image contributes to the sequence."""
        return self.vision.config.grid**2

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text vectors: the ``[CLS]`` output (un-normalised).

        Args:
            input_ids: ``(n, t)`` token ids.
            attention_mask: ``(n, t)`` padding mask.

        Returns:
            ``(n, hidden)`` features.
        """
        out = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        )
        cls: torch.Tensor = out.last_hidden_state[:, 0]
        return cls

    def encode_mm(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Joint image+prompt vectors: the ``[CLS]`` output over image tokens and prompt (un-normalised).

        Args:
            pixel_values: ``(n, 3, s, s)`` preprocessed images.
            input_ids: ``(n, t)`` prompt token ids, ``[CLS]`` first.
            attention_mask: ``(n, t)`` prompt padding mask.

        Returns:
            ``(n, hidden)`` features.
        """
        embeddings = self.text_model.embeddings
        image = self.visual_proj(self.vision(pixel_values)[:, 1:])
        # The embeddings layer adds a token-type vector to every input; the original gives image tokens none.
        image = image - embeddings.token_type_embeddings.weight[0]
        words = embeddings.word_embeddings(input_ids)
        inputs = torch.cat([words[:, :1], image, words[:, 1:]], dim=1)
        batch, length = inputs.shape[:2]
        positions = torch.arange(length, device=inputs.device).expand(batch, length)
        ones = torch.ones(batch, image.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
        out = self.text_model(
            inputs_embeds=inputs,
            attention_mask=torch.cat([ones, attention_mask], dim=1),
            token_type_ids=torch.zeros_like(positions),
            position_ids=positions,
        )
        cls: torch.Tensor = out.last_hidden_state[:, 0]
        return cls


def _skip_random_init() -> AbstractContextManager[Any]:
    """transformers' context that turns torch's init functions into no-ops (its module moved in 5.x)."""
    import importlib

    for module in ("transformers.initialization", "transformers.modeling_utils"):  # 5.x, then 4.x
        factory = getattr(importlib.import_module(module), "no_init_weights", None)
        if factory is not None:
            context: AbstractContextManager[Any] = factory()
            return context
    return nullcontext()
