"""Tiny (and real-size) random-weight models of real CLIP-family architectures and rerankers, built offline.

This package is a test/benchmark helper. It never downloads anything: tokenizers are trained
locally on a small built-in bilingual caption corpus with the ``tokenizers`` library, weights are
random, and everything is written with ``save_pretrained`` so that the result loads through the
very same ``AutoModel`` / ``AutoProcessor`` / ``AutoTokenizer`` / ``AutoImageProcessor`` /
``AutoConfig`` ``from_pretrained(path)`` code path that real hub ids use.

Families and the real classes they produce:

* ``"clip"``: ``CLIPModel`` + ``CLIPProcessor`` (``CLIPImageProcessor`` + ``CLIPTokenizer``,
  byte-level BPE with ``</w>`` suffix, lowercasing). Text max length 77.
* ``"siglip"``: ``SiglipModel`` + ``SiglipProcessor`` (``SiglipImageProcessor`` +
  ``GemmaTokenizer``, like the multilingual ``google/siglip2-*-patch16-224`` checkpoints, whose
  ``model_type`` is ``"siglip"``). Text must be padded to ``max_length`` 64.
* ``"siglip2"``: ``Siglip2Model`` + ``Siglip2Processor`` (NaFlex ``Siglip2ImageProcessor`` +
  ``Siglip2Tokenizer``: Gemma-style Metaspace BPE with lowercasing). Text padded to 64.
* ``"chinese_clip"``: ``ChineseCLIPModel`` + ``ChineseCLIPProcessor``
  (``ChineseCLIPImageProcessor`` + ``BertTokenizer`` WordPiece with CJK character splitting).
  Text max length 52 (as in the original Chinese-CLIP ``context_length``).

Rerankers (:data:`RERANKER_KINDS`): BLIP and BLIP-2 image-text matching, BERT / XLM-RoBERTa
cross-encoders.

Tokenizers are always built *as the transformers class that reload will produce* (from the
trained vocab/merges), then saved, reloaded with ``AutoTokenizer`` and compared on sample
sentences; a mismatch raises ``RuntimeError`` at build time.

Reference vectors with plain transformers (the parity recipe; see :func:`text_kwargs`)::

    model = AutoModel.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    t = processor(text=texts, return_tensors="pt", **text_kwargs(family))
    # clip: padding=True, truncation=True, max_length=77 (chinese_clip: 52)
    # siglip / siglip2: padding="max_length", max_length=64, truncation=True
    i = processor.image_processor(images=images, return_tensors="pt")
    # identical to processor(images=...) for every family here (siglip2 included: the image
    # processor is saved with the Siglip2Processor call defaults patch_size=16,
    # max_num_patches=256); siglip2 returns pixel_values, pixel_attention_mask, spatial_shapes.
    text = model.get_text_features(**t)    # transformers 5.x: an output object,
    image = model.get_image_features(**i)  # the embedding is ``.pooler_output``

Modules, one job each (everything public is re-exported here):

* :mod:`~mmrag.testing.corpus`: the caption corpus, sample and probe texts.
* :mod:`~mmrag.testing.images`: :func:`speckled_image` and the probe images.
* :mod:`~mmrag.testing.tokenizers`: locally trained tokenizers.
* :mod:`~mmrag.testing.families`: family names, text lengths, :class:`ArchSpec`.
* :mod:`~mmrag.testing.clip`, :mod:`~mmrag.testing.siglip`, :mod:`~mmrag.testing.chinese_clip`:
  each family's classes, tiny sizes and config.
* :mod:`~mmrag.testing.dual_encoders`: :func:`build_tiny_model` (any family).
* :mod:`~mmrag.testing.rerankers`: the tiny BLIP / BLIP-2 / cross-encoder builders.
* :mod:`~mmrag.testing.real_size`: :data:`ARCHS`, :data:`RERANKER_ARCHS` and their builders.
* :mod:`~mmrag.testing.building`: the seeded draw and checked save every builder shares.

Import cost: ``torch``/``transformers``/``tokenizers`` are imported lazily inside functions.
"""

from __future__ import annotations

from mmrag.testing.corpus import PROBE_TEXTS, SAMPLE_SENTENCES, caption_corpus
from mmrag.testing.dual_encoders import build_tiny_model
from mmrag.testing.families import FAMILIES, MAX_TEXT_LENGTH, ArchSpec, text_kwargs
from mmrag.testing.images import probe_images, speckled_image
from mmrag.testing.real_size import ARCHS, RERANKER_ARCHS, arch_config, build_random_model, build_random_reranker
from mmrag.testing.rerankers import (
    RERANKER_KINDS,
    RerankerArchSpec,
    build_tiny_blip2_itm,
    build_tiny_blip_itm,
    build_tiny_cross_encoder,
    reranker_probe_log_odds,
)
from mmrag.testing.tokenizers import TokenizerKind, family_tokenizer, train_tokenizer

__all__ = [
    "ARCHS",
    "FAMILIES",
    "MAX_TEXT_LENGTH",
    "PROBE_TEXTS",
    "RERANKER_ARCHS",
    "RERANKER_KINDS",
    "SAMPLE_SENTENCES",
    "ArchSpec",
    "RerankerArchSpec",
    "TokenizerKind",
    "arch_config",
    "build_random_model",
    "build_random_reranker",
    "build_tiny_blip2_itm",
    "build_tiny_blip_itm",
    "build_tiny_cross_encoder",
    "build_tiny_model",
    "caption_corpus",
    "family_tokenizer",
    "probe_images",
    "reranker_probe_log_odds",
    "speckled_image",
    "text_kwargs",
    "train_tokenizer",
]
