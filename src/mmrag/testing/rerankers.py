"""Tiny rerankers: BLIP / BLIP-2 image-text matching and text cross-encoders (for :mod:`mmrag.rerank`).

Same rules as the dual encoders: real transformers classes, a locally trained tokenizer, random
weights, ``save_pretrained`` so that ``BlipForImageTextRetrieval`` / ``Blip2ForImageTextRetrieval`` /
``AutoModelForSequenceClassification`` / ``AutoProcessor`` / ``AutoTokenizer.from_pretrained(path)``
load them exactly as they load hub checkpoints. Parity recipes (what mmrag.rerank must equal)::

    # BLIP:   p = model(**processor(images=ims, text=txts, padding=True, return_tensors="pt"),
    #                   use_itm_head=True).itm_score.softmax(-1)[:, 1]
    # BLIP-2: p = model(**processor(images=ims, text=txts, padding=True, return_tensors="pt"),
    #                   use_image_text_matching_head=True).logits_per_image.softmax(-1)[:, 1]
    # cross-encoder: logits = model(**tokenizer(queries, passages, padding=True, truncation=True,
    #                                           return_tensors="pt")).logits
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmrag.testing.building import TINY_TOWER, draw_model, save_model
from mmrag.testing.corpus import PROBE_TEXTS
from mmrag.testing.images import probe_images
from mmrag.testing.tokenizers import train_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = [
    "RERANKER_KINDS",
    "RerankerArchSpec",
    "build_reranker",
    "build_tiny_blip2_itm",
    "build_tiny_blip_itm",
    "build_tiny_cross_encoder",
    "reranker_probe_log_odds",
]

RERANKER_KINDS: tuple[str, ...] = ("blip_itm", "blip2_itm", "cross_encoder")
"""Reranker kinds the builders here produce (as :func:`mmrag.rerank.reranker_kind` names them)."""

_RERANK_PROBE_STD = 0.03
_RERANK_MIN_GAP = 1e-4


@dataclasses.dataclass(frozen=True)
class RerankerArchSpec:
    """A reranker architecture (tiny for tests, real sizes for benchmarks).

    Attributes:
        kind: One of :data:`RERANKER_KINDS`.
        config: Keyword arguments of the transformers config (``BlipConfig``, ``Blip2Config``
            or ``BertConfig``/``XLMRobertaConfig``); ``vocab_size``/``pad_token_id`` entries
            left out are taken from the tokenizer.
        image_size: Side of the square images the image processor produces (ITM kinds).
        model_type: ``"bert"`` or ``"xlm-roberta"`` for cross-encoders.
        reference: The hub checkpoint whose sizes are mirrored (never downloaded).
    """

    kind: str
    config: Mapping[str, Any]
    image_size: int = 0
    model_type: str = "bert"
    reference: str = ""


def _tiny_reranker_spec(kind: str, *, model_type: str = "bert", num_labels: int = 1) -> RerankerArchSpec:
    if kind == "blip_itm":
        return RerankerArchSpec(
            kind,
            {"vision_config": {**TINY_TOWER, "image_size": 32, "patch_size": 8},
             "text_config": {**TINY_TOWER, "max_position_embeddings": 64},
             "image_text_hidden_size": 16, "projection_dim": 16},
            32,
        )  # fmt: skip  # aligned by hand
    if kind == "blip2_itm":
        return RerankerArchSpec(
            kind,
            {"vision_config": {**TINY_TOWER, "image_size": 32, "patch_size": 8},
             "qformer_config": {**TINY_TOWER, "max_position_embeddings": 64, "encoder_hidden_size": 32,
                                "cross_attention_frequency": 1, "use_qformer_text_input": True},
             "num_query_tokens": 4, "image_text_hidden_size": 16},
            32,
        )  # fmt: skip  # aligned by hand
    if kind == "cross_encoder":
        if model_type not in ("bert", "xlm-roberta"):
            raise ValueError(f"cross-encoder model_type must be 'bert' or 'xlm-roberta', got {model_type!r}")
        if num_labels not in (1, 2):
            raise ValueError(f"num_labels must be 1 or 2, got {num_labels!r}")
        positions = 66 if model_type == "xlm-roberta" else 64  # RoBERTa positions start after padding_idx
        return RerankerArchSpec(
            kind,
            {**TINY_TOWER, "max_position_embeddings": positions, "num_labels": num_labels,
             "type_vocab_size": 1 if model_type == "xlm-roberta" else 2},
            model_type=model_type,
        )  # fmt: skip  # aligned by hand
    raise ValueError(f"unknown reranker kind {kind!r}; expected one of {RERANKER_KINDS}")


def _reranker_tokenizer(spec: RerankerArchSpec) -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer (like BLIP's and BLIP-2's), trained on the caption corpus.

    BLIP adds ``[DEC]`` as BOS and ``[ENC]``; an XLM-RoBERTa cross-encoder gets no
    ``token_type_ids`` (its real tokenizer returns none and its type vocabulary has one entry).
    """
    tokenizer = train_tokenizer("wordpiece", vocab_size=1000, lowercase=True, model_max_length=512)
    if spec.kind == "blip_itm":
        tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if spec.kind == "cross_encoder" and spec.model_type == "xlm-roberta":
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
        tokenizer.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    return tokenizer


def _blip_image_processor(size: int) -> Any:
    import transformers
    from transformers.utils.import_utils import is_torchvision_available

    name = "BlipImageProcessor" if is_torchvision_available() else "BlipImageProcessorPil"
    return getattr(transformers, name)(size={"height": size, "width": size})


def _reranker_parts(spec: RerankerArchSpec, *, image_tokens: bool) -> tuple[PretrainedConfig, Any, Any]:
    """``(config, model class, processor or tokenizer)`` for ``spec``."""
    import transformers

    tokenizer = _reranker_tokenizer(spec)
    config: dict[str, Any] = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in spec.config.items()
    }
    processor: Any
    if spec.kind == "blip_itm":
        processor = transformers.BlipProcessor(  # type: ignore[no-untyped-call]  # transformers leaves it untyped
            image_processor=_blip_image_processor(spec.image_size), tokenizer=tokenizer
        )
        text = config["text_config"]
        text.setdefault("vocab_size", len(tokenizer))
        text.update(
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            sep_token_id=tokenizer.sep_token_id,
            eos_token_id=tokenizer.sep_token_id,
        )
        return transformers.BlipConfig(**config), transformers.BlipForImageTextRetrieval, processor
    if spec.kind == "blip2_itm":
        processor = transformers.Blip2Processor(  # type: ignore[no-untyped-call]  # transformers leaves it untyped
            image_processor=_blip_image_processor(spec.image_size), tokenizer=tokenizer,
            num_query_tokens=config["num_query_tokens"] if image_tokens else None,
        )  # fmt: skip  # aligned by hand
        qformer = config["qformer_config"]
        qformer.setdefault("vocab_size", len(tokenizer))
        qformer["pad_token_id"] = tokenizer.pad_token_id
        if image_tokens:
            config["image_token_index"] = tokenizer.convert_tokens_to_ids("<image>")
        return transformers.Blip2Config(**config), transformers.Blip2ForImageTextRetrieval, processor
    config.setdefault("vocab_size", len(tokenizer))
    config["pad_token_id"] = tokenizer.pad_token_id
    if spec.model_type == "xlm-roberta":
        cls = transformers.XLMRobertaForSequenceClassification
        return transformers.XLMRobertaConfig(**config), cls, tokenizer
    return transformers.BertConfig(**config), transformers.BertForSequenceClassification, tokenizer


def _spread_weights(model: Any) -> None:
    """Re-draw weights at unit-variance scale so tiny random models tell inputs apart.

    The default initialisers (std 0.02, and 1e-10 for BLIP's vision tower) make a tiny model's
    match logits nearly constant. Linear/conv weights get std ``1/sqrt(fan_in)``, embeddings and
    free parameters (class/position embeddings, BLIP-2 query tokens) std 1, biases std 0.1;
    layer norms keep their identity init. Uses the (already seeded) global torch RNG.
    """
    import math

    import torch

    with torch.no_grad():
        for module in model.modules():
            own = dict(module.named_parameters(recurse=False))
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = own["weight"][0].numel()
                own["weight"].normal_(0.0, 1.0 / math.sqrt(fan_in))
                if own.get("bias") is not None:
                    own["bias"].normal_(0.0, 0.1)
            elif isinstance(module, torch.nn.Embedding):
                own["weight"].normal_(0.0, 1.0)
                if module.padding_idx is not None:
                    own["weight"][module.padding_idx].zero_()
            elif not isinstance(module, torch.nn.LayerNorm):
                for param in own.values():
                    param.normal_(0.0, 1.0)


def reranker_probe_log_odds(model: Any, processor: Any, kind: str) -> Any:
    """Log-odds of the probe pairs, computed with plain transformers (the parity recipe).

    ITM kinds: the first 4 :data:`PROBE_TEXTS` x the first 4 :func:`probe_images`; cross-encoders:
    the first 3 probe texts as queries x all probe texts as passages.

    Args:
        model: A loaded reranker model of ``kind``.
        processor: Its processor (ITM) or tokenizer (cross-encoder).
        kind: One of :data:`RERANKER_KINDS`.

    Returns:
        A float64 numpy array of shape ``(queries, candidates)``.
    """
    import torch

    model.eval()
    if kind == "cross_encoder":
        queries, passages = list(PROBE_TEXTS[:3]), list(PROBE_TEXTS)
        pairs = [(q, p) for q in queries for p in passages]
        inputs = processor([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True,
                           return_tensors="pt")  # fmt: skip  # aligned by hand
        with torch.no_grad():
            logits = model(**inputs).logits.double()
        values = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
        return values.reshape(len(queries), len(passages)).numpy()
    texts, images = list(PROBE_TEXTS[:4]), probe_images()[:4]
    inputs = processor(images=[im for _ in texts for im in images], text=[t for t in texts for _ in images],
                       padding=True, return_tensors="pt")  # fmt: skip  # aligned by hand
    with torch.no_grad():
        if kind == "blip_itm":
            logits = model(**inputs, use_itm_head=True).itm_score
        else:
            logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
    logits = logits.double()
    return (logits[:, 1] - logits[:, 0]).reshape(len(texts), len(images)).numpy()


def _probe_is_discriminative(values: Any) -> bool:
    """Both the query and the candidate must move the score, and no two probe pairs may tie."""
    import numpy as np

    if not np.isfinite(values).all():
        return False
    flat = np.sort(values.reshape(-1))
    return (
        float(values.std(axis=0).min()) > _RERANK_PROBE_STD
        and float(values.std(axis=1).min()) > _RERANK_PROBE_STD
        and float(np.diff(flat).min()) > _RERANK_MIN_GAP
    )


def build_reranker(
    spec: RerankerArchSpec, path: str | os.PathLike[str], *, seed: int, tiny: bool, image_tokens: bool = False
) -> pathlib.Path:
    """Draw random weights for ``spec`` and save model + processor (or tokenizer) to ``path``.

    Args:
        spec: The architecture (a tiny one, or a :data:`~mmrag.testing.RERANKER_ARCHS` preset).
        path: Output directory (created if needed).
        seed: Seed of the random weights (the global torch RNG state is restored).
        tiny: Spread the weights and re-draw until the probe scores depend on both inputs (see
            :func:`reranker_probe_log_odds`); real-size models take the first draw.
        image_tokens: BLIP-2 only: the newer hub layout with ``<image>`` tokens (see
            :func:`build_tiny_blip2_itm`).

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        RuntimeError: No tiny draw was discriminative, or the saved tokenizer does not reload
            identically.
    """
    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config, model_cls, processor = _reranker_parts(spec, image_tokens=image_tokens)

    def reject(model: Any) -> str | None:
        _spread_weights(model)
        if _probe_is_discriminative(reranker_probe_log_odds(model, processor, spec.kind)):
            return None
        return "the probe scores tie or ignore an input"

    model = draw_model(
        lambda: model_cls(config),
        reject if tiny else None,
        seed=seed,
        what=f"a discriminative tiny {spec.kind} reranker",
    )
    tokenizer = processor if spec.kind == "cross_encoder" else processor.tokenizer
    return save_model(model, processor, tokenizer, out)


def build_tiny_blip_itm(path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a tiny random ``BlipForImageTextRetrieval`` + ``BlipProcessor`` in ``path``.

    Vision: ViT hidden 32, 2 layers, 32 px images, patch 8. Text: BLIP's BERT with cross-attention,
    hidden 32, 2 layers, 64 positions; tokenizer: ``BertTokenizer`` WordPiece (~640 tokens, ``[DEC]``
    BOS and ``[ENC]`` like the real checkpoints). Weights are re-drawn until the ITM log-odds of the
    probe pairs depend on both text and image (see :func:`reranker_probe_log_odds`).

    Args:
        path: Output directory (created if needed).
        seed: Seed for the random weights (the global torch RNG state is restored).

    Returns:
        ``pathlib.Path(path)``.
    """
    return build_reranker(_tiny_reranker_spec("blip_itm"), path, seed=seed, tiny=True)


def build_tiny_blip2_itm(path: str | os.PathLike[str], *, seed: int = 0, image_tokens: bool = False) -> pathlib.Path:
    """Build a tiny random ``Blip2ForImageTextRetrieval`` + ``Blip2Processor`` in ``path``.

    Vision hidden 32 (2 layers, 32 px, patch 8); Q-Former hidden 32, 2 layers, cross-attention every
    layer, ``use_qformer_text_input=True``, 4 query tokens; WordPiece ``BertTokenizer``.

    Args:
        path: Output directory.
        seed: Seed for the random weights.
        image_tokens: Save the processor with ``num_query_tokens`` and the config with
            ``image_token_index``, so the processor prepends ``<image>`` tokens that the model strips
            (the newer hub layout); ``False`` gives the older layout without them.

    Returns:
        ``pathlib.Path(path)``.
    """
    return build_reranker(_tiny_reranker_spec("blip2_itm"), path, seed=seed, tiny=True, image_tokens=image_tokens)


def build_tiny_cross_encoder(
    path: str | os.PathLike[str], *, seed: int = 0, model_type: str = "bert", num_labels: int = 1
) -> pathlib.Path:
    """Build a tiny random text cross-encoder (``*ForSequenceClassification``) in ``path``.

    Hidden 32, 2 layers, 64 text positions, WordPiece ``BertTokenizer``.

    Args:
        path: Output directory.
        seed: Seed for the random weights.
        model_type: ``"bert"`` (``BertForSequenceClassification``) or ``"xlm-roberta"``
            (``XLMRobertaForSequenceClassification``, the bge-reranker architecture; the tokenizer
            then returns no ``token_type_ids``).
        num_labels: 1 (a relevance logit, like bge-reranker) or 2 (no match / match).

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        ValueError: Unknown ``model_type`` or ``num_labels``.
    """
    spec = _tiny_reranker_spec("cross_encoder", model_type=model_type, num_labels=num_labels)
    return build_reranker(spec, path, seed=seed, tiny=True)
