"""The built-in transformers dual-encoder families (CLIP, Chinese-CLIP, SigLIP, SigLIP 2): loader and signature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmrag.encoders.loading import PIL_BACKEND, LoadRequest, pick_dtype
from mmrag.logs import logger

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from mmrag.encoders.base import Encoder

__all__ = ["load_transformers_dual", "sdpa_attention", "transformers_dual_signature"]

_log = logger("encoders")


def load_transformers_dual(request: LoadRequest) -> Encoder:
    """Load a CLIP, Chinese-CLIP, SigLIP or SigLIP 2 checkpoint as a :class:`TransformersDualEncoder`."""
    from transformers import AutoModel, AutoProcessor

    from mmrag.encoders.transformers_dual import DUAL_FAMILIES, TransformersDualEncoder

    family = DUAL_FAMILIES[request.config.model_type]
    dtype = pick_dtype(request.dtype, request.device, family.gpu_dtype)
    shown_dtype = str(dtype).removeprefix("torch.")
    _log.info("loading %s (%s) on %s in %s", request.model_id, family.model_type, request.device, shown_dtype)
    model = AutoModel.from_pretrained(
        request.source, config=request.config, dtype=dtype, use_safetensors=request.use_safetensors,
        **sdpa_attention(request.config), **request.hub_kwargs(),
    )  # fmt: skip  # aligned by hand
    model = model.to(request.device).eval()
    processor = AutoProcessor.from_pretrained(request.source, **PIL_BACKEND, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    return TransformersDualEncoder(
        model,
        processor,
        family=family,
        model_id=request.model_id,
        batch_size=request.batch_size,
        image_limits=request.image_limits,
        image_workers=request.options.image_workers,
        fast_decode=request.options.fast_decode,
        gpu_decode=request.options.gpu_decode,
        compile_model=request.options.compile,
    )


def transformers_dual_signature(request: LoadRequest) -> dict[str, str | int]:
    """The encoder's signature from the config and the processor alone (no weights)."""
    from transformers import AutoProcessor

    from mmrag.encoders.dual_signature import dual_preprocessing, embedding_dim, text_length_limit
    from mmrag.encoders.preprocess.gpu_decode import gpu_decode_unavailable
    from mmrag.encoders.transformers_dual import DUAL_FAMILIES

    family = DUAL_FAMILIES[request.config.model_type]
    processor = AutoProcessor.from_pretrained(request.source, **PIL_BACKEND, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    length = text_length_limit(request.config, processor.tokenizer, family.default_text_length)
    gpu_decode = request.options.gpu_decode and gpu_decode_unavailable(request.device) is None
    return {
        "model_id": request.model_id,
        "family": family.model_type,
        "dim": embedding_dim(request.config),
        "preprocessing": dual_preprocessing(
            family, length, processor.image_processor, request.options.fast_decode, gpu_decode=gpu_decode
        ),
    }


def sdpa_attention(config: PretrainedConfig) -> dict[str, str]:
    """``{"attn_implementation": "sdpa"}`` when the model class for ``config`` supports it, else ``{}``.

    transformers 5 already picks SDPA by default where it can; asking for it
    explicitly keeps a saved ``attn_implementation="eager"`` or a changed
    default from slowing the model down (SDPA is PyTorch's fused attention).

    Args:
        config: The checkpoint's config.

    Returns:
        Keyword arguments for ``from_pretrained``.
    """
    from transformers import AutoModel

    try:
        model_class = AutoModel._model_mapping[type(config)]
    except (KeyError, AttributeError):  # not an AutoModel family: let transformers choose
        return {}
    return {"attn_implementation": "sdpa"} if getattr(model_class, "_supports_sdpa", False) else {}
