"""BLIP-2 features: the Q-Former's contrastive (ITC) space of a ``Blip2ForImageTextRetrieval`` checkpoint.

What LAVIS's ``blip2_feature_extractor`` gives, as one :class:`~mmrag.Encoder`
(``family == "blip2"``, e.g. ``Salesforce/blip2-itm-vit-g``, 256-d):

* **text vector**: the Q-Former reads the text alone; its ``[CLS]`` output goes
  through ``text_projection`` and is L2-normalised (the ITC text feature);
* **image vector**: the ViT output is read by the Q-Former's learnt query
  tokens (32 for the real checkpoints); each query's output goes through
  ``vision_projection`` and is L2-normalised, then the normalised *mean* of
  those per-query vectors is the image's one vector (what the seed's
  ``/similarity`` service did), so an image fits a vector store as one row.

BLIP-2's own ITC score of an (image, text) pair is not the cosine of those two
vectors but the **maximum over the queries** of ``cos(query_i, text)``:
``Blip2ForImageTextRetrieval(..., use_image_text_matching_head=False)``
returns exactly that as ``logits_per_image`` (a plain cosine: transformers
applies no temperature; LAVIS divides by its learnt ``temp`` for training
only). A store ranks by the mean-pooled vector; for the exact ITC score (or
the ITM head) rerank with ``mmrag.load_reranker(path, blip2_score="itc")``
(see :class:`mmrag.rerank.Blip2ItcBackend`).

``embed_fused`` is the base class's normalised sum of the two vectors. The
Q-Former's multimodal feature (queries and text attending to each other) is
not used: it is the ITM head's input, unprojected (768-d), and lies outside
the space texts and images are embedded in.

The Q-Former runs in float32 (transformers keeps it so on load); the vision
tower and the projections run in the encoder's dtype (float16 by default on a
GPU, float32 on the CPU).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mmrag.encoders.base import Batch, Encoder
from mmrag.encoders.dual_signature import text_length_limit
from mmrag.errors import UnsupportedModelError
from mmrag.inputs import ImageLimits

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from mmrag.encoders.loading import LoadRequest

__all__ = [
    "BLIP2_FAMILY",
    "BLIP2_MODEL_TYPE",
    "Blip2FeatureEncoder",
    "blip2_query_features",
    "blip2_text_features",
    "load_blip2_encoder",
]

BLIP2_MODEL_TYPE = "blip-2"
"""The config ``model_type`` of BLIP-2 checkpoints."""

BLIP2_FAMILY = "blip2"
"""``Encoder.family`` of a BLIP-2 feature encoder."""

_RETRIEVAL_CLASS = "Blip2ForImageTextRetrieval"
_DEFAULT_TEXT_LENGTH = 512


def blip2_text_features(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """ITC text features: ``text_projection`` of the Q-Former's ``[CLS]`` output, text alone.

    Args:
        model: A ``Blip2ForImageTextRetrieval`` in eval mode.
        input_ids: Token ids on the model's device, shape ``(n, length)``, no ``<image>`` tokens.
        attention_mask: Their attention mask.

    Returns:
        Un-normalised features, shape ``(n, image_text_hidden_size)``.
    """
    embeds = model.embeddings(input_ids=input_ids)
    hidden = model.qformer(query_embeds=embeds, query_length=0, attention_mask=attention_mask).last_hidden_state
    projection = model.text_projection
    features: torch.Tensor = projection(hidden[:, 0, :].to(projection.weight.dtype))
    return features


def blip2_query_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Per-query ITC image features: ViT -> Q-Former with the query tokens -> ``vision_projection``.

    Args:
        model: A ``Blip2ForImageTextRetrieval`` in eval mode.
        pixel_values: Preprocessed images on the model's device, shape ``(n, 3, h, w)``.

    Returns:
        L2-normalised features, shape ``(n, num_query_tokens, image_text_hidden_size)``.
    """
    import torch

    vision = model.vision_model
    image_embeds = vision(pixel_values=pixel_values.to(next(vision.parameters()).dtype)).last_hidden_state
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    hidden = model.qformer(
        query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
    ).last_hidden_state
    projection = model.vision_projection
    return torch.nn.functional.normalize(projection(hidden.to(projection.weight.dtype)).float(), dim=-1)


class Blip2FeatureEncoder(Encoder):
    """An :class:`~mmrag.Encoder` over the ITC features of a ``Blip2ForImageTextRetrieval`` model.

    Built by :func:`mmrag.load_encoder`; see the module docstring for what the
    vectors are. ``dim`` is the config's ``image_text_hidden_size`` (256 for
    ``Salesforce/blip2-itm-vit-g``).

    Args:
        model: A loaded ``Blip2ForImageTextRetrieval`` in eval mode on its device.
        processor: Its ``Blip2Processor`` (tokenizer + image processor).
        model_id: Hub id or absolute local path, recorded on the encoder.
        batch_size: Most items per forward pass.
        image_limits: Limits for resolving image inputs.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        batch_size: int = 64,
        image_limits: ImageLimits | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, image_limits=image_limits)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.model_id = model_id
        self.family = BLIP2_FAMILY
        self.dim = int(model.config.image_text_hidden_size)
        parameter = next(model.vision_model.parameters())
        self.device = parameter.device
        self.dtype = parameter.dtype
        self.num_query_tokens = int(model.query_tokens.shape[1])
        self.max_text_length = text_length_limit(
            model.config, self.tokenizer, _DEFAULT_TEXT_LENGTH, tower="qformer_config"
        )

    # ------------------------------------------------------------------ hooks
    def prepare_texts(self, texts: list[str]) -> Batch:
        """Tokenise texts (padded to the longest, truncated to ``max_text_length``).

        The tokenizer is called directly, so no ``<image>`` placeholder tokens
        are prepended (the model strips those before its text pass anyway).

        Args:
            texts: One batch of texts.

        Returns:
            ``input_ids`` and ``attention_mask`` tensors.
        """
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """Run the image processor with its saved settings (224 px, bicubic, CLIP mean/std for vit-g).

        Args:
            images: One batch of RGB images.

        Returns:
            The ``pixel_values`` tensor.
        """
        pixel_values: torch.Tensor = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return pixel_values

    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """ITC text features of one tokenised batch.

        Args:
            batch: What :meth:`prepare_texts` returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return blip2_text_features(
            self.model, batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        )

    def forward_images(self, batch: Batch) -> torch.Tensor:
        """Mean of the normalised per-query features of one preprocessed batch.

        Args:
            batch: What :meth:`prepare_images` returned.

        Returns:
            Un-normalised (mean) features, shape ``(n, dim)``.
        """
        return self.query_features(batch).mean(dim=1)

    def query_features(self, batch: Batch) -> torch.Tensor:
        """The per-query image features BLIP-2's ITC score takes the maximum over.

        Args:
            batch: What :meth:`prepare_images` returned.

        Returns:
            Float32 L2-normalised features, shape ``(n, num_query_tokens, dim)``.
        """
        return blip2_query_features(self.model, batch.to(self.device))

    @property
    def preprocessing(self) -> str:
        """Text length, query count and the image processor's size/normalisation settings."""
        ip = self.image_processor
        parts = [
            f"text:max_length={self.max_text_length},padding=longest",
            f"image:{type(ip).__name__},queries={self.num_query_tokens},pool=mean",
        ]
        for name in ("size", "image_mean", "image_std", "resample"):
            value = getattr(ip, name, None)
            if value is not None:
                parts.append(f"{name}={_stable(value)}")
        return ";".join(parts)


def load_blip2_encoder(request: LoadRequest) -> Blip2FeatureEncoder:
    """The family loader :func:`mmrag.load_encoder` uses for ``model_type == "blip-2"``.

    Args:
        request: What to load and how.

    Returns:
        A :class:`Blip2FeatureEncoder`.

    Raises:
        UnsupportedModelError: The checkpoint is another BLIP-2 architecture
            (e.g. ``Blip2ForConditionalGeneration``) or lacks weights of the
            Q-Former text side or the projections.
    """
    import torch
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    from mmrag.encoders.loading import PIL_BACKEND, pick_dtype

    architectures = tuple(getattr(request.config, "architectures", None) or ())
    if architectures and _RETRIEVAL_CLASS not in architectures:
        raise UnsupportedModelError(
            f"{request.model_id!r} is a BLIP-2 {'/'.join(architectures)} checkpoint; BLIP-2 features need a "
            f"{_RETRIEVAL_CLASS} checkpoint (its Q-Former text side and projections), such as "
            "Salesforce/blip2-itm-vit-g (preset 'blip2-feature-vit-g')"
        )
    dtype = pick_dtype(request.dtype, request.device, torch.float16)
    retrieval: Any = Blip2ForImageTextRetrieval  # output_loading_info=True returns a tuple the stubs do not know
    model, info = retrieval.from_pretrained(
        request.source, config=request.config, dtype=dtype, use_safetensors=request.use_safetensors,
        output_loading_info=True, **request.hub_kwargs(),
    )  # fmt: skip  # aligned by hand
    missing = sorted(key for key in info.get("missing_keys") or () if not key.startswith("itm_head"))
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise UnsupportedModelError(
            f"{request.model_id!r} has no weights for {len(missing)} parameters of {_RETRIEVAL_CLASS} ({shown}); "
            "it is not a trained BLIP-2 retrieval checkpoint and would embed at random"
        )
    processor = AutoProcessor.from_pretrained(request.source, **PIL_BACKEND, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    return Blip2FeatureEncoder(
        model.to(request.device).eval(),
        processor,
        model_id=request.model_id,
        batch_size=request.batch_size,
        image_limits=request.image_limits,
    )


def _stable(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # transformers' SizeDict
        value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_stable(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_stable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
