"""Image-text matching (ITM) heads: BLIP and BLIP-2 retrieval checkpoints.

An ITM head reads a text fused with an image by cross-attention and outputs
two logits, ``(no match, match)``; ``softmax(logits)[1]`` is the model's
match probability, so the backend's log-odds are ``logits[1] - logits[0]``.

The scores equal plain transformers::

    out = model(**processor(images=images, text=texts, padding=True, return_tensors="pt"),
                use_itm_head=True)                       # BlipForImageTextRetrieval
    p = out.itm_score.softmax(-1)[:, 1]
    out = model(**inputs, use_image_text_matching_head=True)  # Blip2ForImageTextRetrieval
    p = out.logits_per_image.softmax(-1)[:, 1]

but the model's forward is split in two so that an image *query* goes through
the vision tower once per call, not once per candidate: the query's image
embeddings are computed once and expanded over each batch of candidate texts.
A text query is tokenised once and expanded over each batch of images.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mmrag.inputs import Modality
from mmrag.rerank.base import CROSS_MODAL_PAIRS, Batch, PairKey, RerankBackend, RerankQuery, move_batch, text_limit

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["Blip2ItmBackend", "BlipItmBackend"]


@dataclass(frozen=True)
class _ItmContext:
    """The query, prepared once: tokens of a text query or image embeddings of an image query."""

    tokens: dict[str, torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None


class _ItmBackend(RerankBackend):
    """What BLIP and BLIP-2 ITM share: tokenising, preprocessing, the vision tower, expansion.

    Args:
        model: A loaded retrieval model in eval mode on its device.
        processor: Its processor (tokenizer + image processor).
        model_id: Hub id or absolute local path, recorded on the backend.
        max_text_length: Token limit for texts; default: the smaller of the
            tokenizer's ``model_max_length`` and the text position limit.
    """

    pairs: ClassVar[frozenset[PairKey]] = CROSS_MODAL_PAIRS
    specialised: ClassVar[bool] = True

    def __init__(self, model: Any, processor: Any, *, model_id: str, max_text_length: int | None = None) -> None:
        parameter = next(model.vision_model.parameters())
        super().__init__(model_id=model_id, device=parameter.device, dtype=parameter.dtype)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.max_text_length = max_text_length or text_limit(self.tokenizer, self._text_positions())

    # ------------------------------------------------------------------ hooks
    def encode_query(self, query: RerankQuery) -> _ItmContext:
        """Tokenise a text query, or run the vision tower once on an image query.

        Args:
            query: The resolved query.

        Returns:
            The prepared query.
        """
        if query.modality == "text":
            return _ItmContext(tokens=move_batch(self.cpu_step(self._tokenize, [query.text or ""]), self.device))
        pixels = self.cpu_step(self._preprocess, [query.image])
        return _ItmContext(image_embeds=self.run_model(self._image_embeds, pixels))

    def prepare(self, context: _ItmContext, items: list[Any], modality: Modality) -> Batch:
        """Tokenise candidate texts or preprocess candidate images.

        Args:
            context: The prepared query (unused).
            items: Candidate texts or decoded images.
            modality: Their modality.

        Returns:
            Token tensors or ``pixel_values``.
        """
        return self._tokenize(items) if modality == "text" else self._preprocess(items)

    def forward(self, context: _ItmContext, batch: Batch) -> torch.Tensor:
        """Match logits for one batch of pairs, as log-odds.

        Args:
            context: The prepared query.
            batch: Candidate tokens (image query) or pixel values (text query).

        Returns:
            ``logits[:, 1] - logits[:, 0]``, shape ``(n,)``.
        """
        if context.image_embeds is not None:  # image query, text candidates
            tokens = move_batch(batch, self.device)
            n = tokens["input_ids"].shape[0]
            image_embeds = context.image_embeds.expand(n, -1, -1)
        else:  # text query, image candidates
            image_embeds = self._image_embeds(batch)
            n = image_embeds.shape[0]
            tokens = {key: value.expand(n, -1) for key, value in (context.tokens or {}).items()}
        logits = self._match_logits(image_embeds, tokens["input_ids"], tokens["attention_mask"]).float()
        return logits[:, 1] - logits[:, 0]

    # ----------------------------------------------------------- model parts
    @abstractmethod
    def _match_logits(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The ITM head's ``(n, 2)`` logits for paired image embeddings and texts."""

    @abstractmethod
    def _text_positions(self) -> int | None:
        """How many text tokens the text/Q-Former position embeddings cover."""

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        pixel_values: torch.Tensor = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return pixel_values

    def _image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        hidden: torch.Tensor = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
        return hidden


class BlipItmBackend(_ItmBackend):
    """The ITM head of a ``BlipForImageTextRetrieval`` checkpoint (e.g. ``Salesforce/blip-itm-base-coco``).

    Serves ``text->image`` and ``image->text``. Texts are read by BLIP's BERT
    text encoder, which cross-attends to the ViT's patch embeddings; the head
    reads the first token.
    """

    kind: ClassVar[str] = "blip_itm"

    def _text_positions(self) -> int | None:
        return getattr(self.model.config.text_config, "max_position_embeddings", None)

    def _match_logits(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        import torch

        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        hidden = self.model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        logits: torch.Tensor = self.model.itm_head(hidden[:, 0, :])
        return logits


class Blip2ItmBackend(_ItmBackend):
    """The ITM head of a ``Blip2ForImageTextRetrieval`` checkpoint (e.g. ``Salesforce/blip2-itm-vit-g``).

    Serves ``text->image`` and ``image->text``. The Q-Former's learnt query
    tokens and the text attend to each other and cross-attend to the ViT
    output; the head's logits are averaged over the query tokens. Texts are
    tokenised without the ``<image>`` placeholder tokens the processor may
    prepend: the model strips those anyway, and the attention mask built here
    is the same.
    """

    kind: ClassVar[str] = "blip2_itm"

    def _text_positions(self) -> int | None:
        return getattr(self.model.config.qformer_config, "max_position_embeddings", None)

    def _match_logits(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        import torch

        model = self.model
        n = input_ids.shape[0]
        query_tokens = model.query_tokens.expand(n, -1, -1)
        n_queries = query_tokens.shape[1]
        query_mask = torch.ones((n, n_queries), dtype=attention_mask.dtype, device=attention_mask.device)
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        hidden = model.qformer(
            query_embeds=model.embeddings(input_ids=input_ids, query_embeds=query_tokens),
            query_length=n_queries,
            attention_mask=torch.cat([query_mask, attention_mask], dim=1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        hidden = hidden.to(dtype=model.itm_head.weight.dtype)
        logits: torch.Tensor = model.itm_head(hidden[:, :n_queries, :]).mean(dim=1)
        return logits
