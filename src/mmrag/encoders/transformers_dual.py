"""CLIP-style dual encoders loaded through transformers.

One class serves CLIP, Chinese-CLIP, SigLIP and SigLIP 2 (NaFlex); what
differs between them is a row in :data:`DUAL_FAMILIES`: how texts are padded,
how long they may be, and which half-precision type the family runs in on a
GPU. Vectors are exactly what plain transformers gives
(``model.get_text_features(**processor(text=...))`` and
``model.get_image_features(**image_processor(images=...))``) before L2
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mmrag.encoders.base import Batch, Encoder
from mmrag.inputs import ImageLimits

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PretrainedConfig

__all__ = ["DUAL_FAMILIES", "DualFamily", "TransformersDualEncoder"]


@dataclass(frozen=True)
class DualFamily:
    """How one transformers dual-encoder family is driven.

    Attributes:
        model_type: The config's ``model_type`` this row applies to.
        pad_to_max_length: Pad every text to ``max_text_length`` (SigLIP was
            trained that way; shorter padding gives wrong vectors).
        default_text_length: Token limit used when neither tokenizer nor
            config states a usable one.
        gpu_dtype: Default dtype on a GPU: ``float16`` or ``bfloat16``.
    """

    model_type: str
    pad_to_max_length: bool
    default_text_length: int
    gpu_dtype: torch.dtype


DUAL_FAMILIES: dict[str, DualFamily] = {
    family.model_type: family
    for family in (
        DualFamily("clip", pad_to_max_length=False, default_text_length=77, gpu_dtype=torch.float16),
        DualFamily("chinese_clip", pad_to_max_length=False, default_text_length=52, gpu_dtype=torch.float16),
        DualFamily("siglip", pad_to_max_length=True, default_text_length=64, gpu_dtype=torch.bfloat16),
        DualFamily("siglip2", pad_to_max_length=True, default_text_length=64, gpu_dtype=torch.bfloat16),
    )
}
"""The transformers families this module serves, by ``model_type``."""


class TransformersDualEncoder(Encoder):
    """An :class:`~mmrag.Encoder` over a transformers CLIP-family model.

    Built by :func:`mmrag.load_encoder`; you rarely construct one directly.

    Args:
        model: A loaded ``CLIPModel``, ``ChineseCLIPModel``, ``SiglipModel`` or
            ``Siglip2Model`` in eval mode on its device.
        processor: The matching processor (tokenizer + image processor).
        family: The family row for the model's ``model_type``.
        model_id: Hub id or absolute local path, recorded on the encoder.
        batch_size: Most items per forward pass.
        image_limits: Limits for resolving image inputs.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        family: DualFamily,
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
        self.family = family.model_type
        self._family = family
        self.dim = embedding_dim(model.config)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_text_length = text_length_limit(model.config, self.tokenizer, family.default_text_length)

    # ------------------------------------------------------------------ hooks
    def prepare_texts(self, texts: list[str]) -> Batch:
        """Tokenise texts: truncated to ``max_text_length``; SigLIP pads to it.

        Args:
            texts: One batch of texts.

        Returns:
            The tokenizer's tensors.
        """
        return self.tokenizer(
            texts,
            padding="max_length" if self._family.pad_to_max_length else True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )

    def prepare_images(self, images: list[Image.Image]) -> Batch:
        """Run the image processor with its own saved settings.

        The processor's call defaults can override the image processor's
        configuration (``Siglip2Processor`` forces 16 px patches and 256
        patches), so the image processor is called directly.

        Args:
            images: One batch of RGB images.

        Returns:
            The image processor's tensors (``pixel_values``, plus the patch mask
            and spatial shapes for SigLIP 2).
        """
        return self.image_processor(images=images, return_tensors="pt")

    def forward_texts(self, batch: Batch) -> torch.Tensor:
        """Text features for one tokenised batch.

        Args:
            batch: What :meth:`prepare_texts` returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return pooled_features(self.model.get_text_features(**self._to_device(batch)))

    def forward_images(self, batch: Batch) -> torch.Tensor:
        """Image features for one preprocessed batch.

        Args:
            batch: What :meth:`prepare_images` returned.

        Returns:
            Un-normalised features, shape ``(n, dim)``.
        """
        return pooled_features(self.model.get_image_features(**self._to_device(batch)))

    @property
    def preprocessing(self) -> str:
        """Text length, padding and the image processor's size/normalisation settings."""
        ip = self.image_processor
        padding = "max_length" if self._family.pad_to_max_length else "longest"
        parts = [
            f"text:max_length={self.max_text_length},padding={padding}",
            f"image:{type(ip).__name__}",
        ]
        for name in ("size", "crop_size", "patch_size", "max_num_patches", "image_mean", "image_std", "resample"):
            value = getattr(ip, name, None)
            if value is not None:
                parts.append(f"{name}={_stable(value)}")
        return ";".join(parts)

    # -------------------------------------------------------------- internals
    def _to_device(self, batch: Batch) -> dict[str, Any]:
        pin = self.device.type == "cuda"
        moved: dict[str, Any] = {}
        for key, value in dict(batch).items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point():
                    value = value.to(self.dtype)
                if pin:
                    value = value.pin_memory()
                value = value.to(self.device, non_blocking=pin)
            moved[key] = value
        return moved


def pooled_features(output: Any) -> torch.Tensor:
    """The feature tensor from ``get_text_features``/``get_image_features``.

    transformers 5 returns an output object whose ``pooler_output`` holds the
    projected features; older releases return the tensor itself.

    Args:
        output: What the model method returned.

    Returns:
        The ``(n, dim)`` feature tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor | None = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot find features in {type(output).__name__}: no pooler_output")
    return pooled


def embedding_dim(config: PretrainedConfig) -> int:
    """Embedding dimension of a dual-encoder config.

    Args:
        config: A CLIP-family config.

    Returns:
        ``projection_dim`` where the family projects (CLIP, Chinese-CLIP), else
        the vision tower's hidden size (SigLIP's pooled head keeps it).
    """
    projection = getattr(config, "projection_dim", None)
    if projection:
        return int(projection)
    return int(config.vision_config.hidden_size)


def text_length_limit(config: PretrainedConfig, tokenizer: Any, default: int) -> int:
    """The most text tokens the model takes: the smaller of tokenizer and position limits.

    Args:
        config: The model config.
        tokenizer: The loaded tokenizer.
        default: Fallback when neither states a usable limit.

    Returns:
        The token limit texts are truncated (and, for SigLIP, padded) to.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limits.append(tokenizer_limit)
    positions = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else default


def _stable(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_stable(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_stable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
