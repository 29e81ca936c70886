"""Build a dual-encoder model of any family (tiny for tests, or from a real-size :class:`ArchSpec`).

Everything is written with ``save_pretrained`` so that the result loads through the very same
``AutoModel`` / ``AutoProcessor`` / ``AutoTokenizer`` / ``AutoImageProcessor`` / ``AutoConfig``
``from_pretrained(path)`` code path that real hub ids use.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmrag.testing.building import draw_model, save_model
from mmrag.testing.chinese_clip import CHINESE_CLIP
from mmrag.testing.clip import CLIP
from mmrag.testing.corpus import PROBE_TEXTS
from mmrag.testing.families import FAMILIES, ArchSpec, FamilyRecipe, text_kwargs
from mmrag.testing.images import probe_images
from mmrag.testing.siglip import SIGLIP, SIGLIP2
from mmrag.testing.tokenizers import family_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase, ProcessorMixin

__all__ = ["MAX_PROBE_COSINE", "RECIPES", "build_dual_encoder", "build_tiny_model", "dual_config"]

RECIPES: dict[str, FamilyRecipe] = {recipe.family: recipe for recipe in (CLIP, SIGLIP, SIGLIP2, CHINESE_CLIP)}
"""The recipe of each family in :data:`~mmrag.testing.FAMILIES`."""

MAX_PROBE_COSINE = 0.97
"""A tiny model is re-drawn until its probe texts (and images) have pairwise cosines below this."""


def dual_config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, *, tiny: bool) -> PretrainedConfig:
    """The transformers config of ``spec`` for a model saved with ``tokenizer``.

    Args:
        spec: The architecture.
        tokenizer: The tokenizer (its size is the default ``vocab_size``, its special ids are used).
        tiny: Use the larger init scale of tiny test models.

    Returns:
        A ``CLIPConfig`` / ``SiglipConfig`` / ``Siglip2Config`` / ``ChineseCLIPConfig``.
    """
    return RECIPES[spec.family].make_config(spec, tokenizer, tiny)


def _image_processor(recipe: FamilyRecipe, kwargs: Mapping[str, Any]) -> Any:
    """Instantiate the family's image processor with the backend AutoImageProcessor would pick."""
    import transformers
    from transformers.utils.import_utils import is_torchvision_available

    name = recipe.image_processor_class
    if not is_torchvision_available() and hasattr(transformers, name + "Pil"):
        name += "Pil"
    return getattr(transformers, name)(**dict(kwargs))


def _make_processor(recipe: FamilyRecipe, spec: ArchSpec, tokenizer: PreTrainedTokenizerBase) -> ProcessorMixin:
    import transformers

    image_processor = _image_processor(recipe, spec.image_processor)
    processor: ProcessorMixin = getattr(transformers, recipe.processor_class)(
        image_processor=image_processor, tokenizer=tokenizer
    )
    return processor


def _features(output: Any) -> Any:
    """``get_*_features`` may return a tensor or a model output (transformers 5.x)."""
    return output if hasattr(output, "dim") else output.pooler_output


def _probe_max_cosine(model: Any, processor: Any, family: str) -> float:
    """Largest off-diagonal cosine between probe-text features and between probe-image features."""
    import torch

    model.eval()
    with torch.no_grad():
        t = processor(text=list(PROBE_TEXTS), return_tensors="pt", **text_kwargs(family))
        i = processor(images=probe_images(), return_tensors="pt")
        feats = [_features(model.get_text_features(**t)), _features(model.get_image_features(**i))]
    worst = -1.0
    for f in feats:
        f = torch.nn.functional.normalize(f.float(), dim=-1)
        sim = f @ f.T
        sim.fill_diagonal_(-1.0)
        if not torch.isfinite(sim).all():
            return float("inf")
        worst = max(worst, float(sim.max()))
    return worst


def build_dual_encoder(spec: ArchSpec, path: str | os.PathLike[str], *, seed: int, tiny: bool) -> pathlib.Path:
    """Draw random weights for ``spec`` and save model + processor to ``path``.

    Args:
        spec: The architecture (a tiny one, or a :data:`~mmrag.testing.ARCHS` preset).
        path: Output directory (created if needed).
        seed: Seed of the random weights (the global torch RNG state is restored).
        tiny: Re-draw until the probe inputs give distinct vectors (see :data:`MAX_PROBE_COSINE`);
            real-size models take the first draw.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        RuntimeError: No tiny draw was distinct enough, or the saved tokenizer does not reload
            identically.
    """
    import transformers

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    recipe = RECIPES[spec.family]
    tokenizer = family_tokenizer(spec.family)
    processor = _make_processor(recipe, spec, tokenizer)
    config = dual_config(spec, tokenizer, tiny=tiny)
    model_cls = getattr(transformers, recipe.model_class)

    def reject(model: Any) -> str | None:
        if recipe.condition_tiny_weights is not None:
            recipe.condition_tiny_weights(model)
        worst = _probe_max_cosine(model, processor, spec.family)
        return None if worst < MAX_PROBE_COSINE else f"max probe cosine {worst:.4f}"

    model = draw_model(
        lambda: model_cls(config),
        reject if tiny else None,
        seed=seed,
        what=f"a non-degenerate tiny {spec.family} model",
    )
    return save_model(model, processor, tokenizer, out)


def build_tiny_model(
    family: str, path: str | os.PathLike[str], *, seed: int = 0, projection_dim: int = 32
) -> pathlib.Path:
    """Build a tiny random-weight model of ``family``, save model+processor to ``path``.

    Sizes: hidden 32, intermediate 64, 2 layers, 4 heads for both towers (SigLIP families:
    hidden = ``projection_dim``, since SigLIP has no projection); clip/siglip/chinese_clip images
    are 32x32 with patch 8; siglip2 uses patch 16 and at most 256 patches (the
    ``Siglip2Processor`` call defaults). The tokenizer is the family's locally trained tokenizer
    (~1k tokens; see :func:`~mmrag.testing.train_tokenizer`). Weights are deterministic given
    ``seed`` (the global torch RNG state is restored afterwards).

    Args:
        family: One of :data:`~mmrag.testing.FAMILIES`.
        path: Output directory (created if needed).
        seed: Seed for the random weights.
        projection_dim: Embedding dimension of ``get_text_features`` / ``get_image_features``.

    Returns:
        ``pathlib.Path(path)``, loadable with ``AutoModel`` / ``AutoProcessor.from_pretrained``.

    Raises:
        ValueError: For an unknown family.
        RuntimeError: If the saved tokenizer does not reload identically.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    return build_dual_encoder(RECIPES[family].tiny_spec(projection_dim), path, seed=seed, tiny=True)
