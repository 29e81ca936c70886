"""Second-stage reranking: score (query, candidate) pairs with a stronger model.

Example:
    >>> import mmrag
    >>> rr = mmrag.load_reranker(["blip-itm-base-coco", "bge-reranker-base"])
    >>> hits = store.search("a dog on the beach", k=50)
    >>> best = rr.rerank("a dog on the beach", [h.document or h.source for h in hits], top_n=5)
    >>> [(item.index, round(item.score, 3), item.modality) for item in best]

Backends
--------
One :class:`Reranker` routes each (query, candidate) *modality pair* --
``text->text``, ``text->image``, ``image->text``, ``image->image`` -- to one
backend (:class:`RerankBackend`):

* ``blip_itm`` / ``blip2_itm``: the image-text matching head of
  ``BlipForImageTextRetrieval`` / ``Blip2ForImageTextRetrieval``
  (text<->image);
* ``blip2_itc``: BLIP-2's contrastive score, the maximum over the Q-Former's
  query tokens of the query-text cosine (text<->image;
  ``load_reranker(..., blip2_score="itc")``);
* ``cross_encoder``: a text ``*ForSequenceClassification`` relevance model
  such as the bge-reranker family (text->text);
* ``dual``: any encoder :func:`mmrag.load_encoder` loads (all four pairs).

Candidates of one call may mix texts and images; each is scored by the backend
of its pair. A candidate is read as an image by the rule of
:func:`mmrag.inputs.is_image_query` (non-strings, http(s) URLs, ``data:`` URIs,
existing image files); ``candidate_type=``/``query_type=`` override it.

Score semantics
---------------
Every backend outputs **log-odds** ``z`` that the pair matches, and
``score = sigmoid(z)``, a number in ``[0, 1]``:

============== ===========================================================
backend        log-odds ``z``
============== ===========================================================
ITM (BLIP/-2)  ``itm_logits[1] - itm_logits[0]``, so
               ``score = softmax(itm_logits)[1]``: the head's own match
               probability.
cross-encoder  the relevance logit (1-label head: ``score = sigmoid(logit)``,
               as bge-reranker documents) or ``logits[1] - logits[0]``
               (2-label head: ``softmax[1]``).
BLIP-2 ITC     the ITC score itself, ``max_q cos(query_q, text)`` (what
               transformers returns as ``logits_per_image``; no
               temperature), so ``score`` stays within ~[0.27, 0.73]:
               calibrate before mixing it with other backends.
dual encoder   ``scale * cos + bias``: SigLIP's learnt ``exp(logit_scale)``
               and ``logit_bias`` for text<->image (its trained sigmoid
               probability); otherwise ``exp(logit_scale)`` with a bias that
               scores 0.5 at a *neutral cosine*: 0.25 for CLIP text<->image,
               0.75 for text->text and image->image (heuristics; see
               :mod:`mmrag.rerank.dual`).
============== ===========================================================

An optional per-pair :class:`Calibration` maps ``z`` to ``a * z + b``
(``a > 0``) before the sigmoid.

What is guaranteed:

1. **Per-pair independence.** A candidate's score depends only on the query,
   the candidate and the backend: not on the other candidates, their order,
   the batch size, or the call (no softmax over candidates, no per-call
   normalisation). Scores from different calls of one reranker can be merged
   (up to float rounding: ~1e-6 between batch sizes).
2. **Native order within a pair.** Candidates scored by the same backend are
   ordered exactly as that backend's own logits order them (sigmoid and a
   calibration with ``a > 0`` are increasing). :meth:`Reranker.rerank` sorts
   by ``z`` (ties: candidate order), so candidates whose scores round to
   1.0 keep their order.
3. **One scale across pairs.** Every score is a match probability estimated
   by a model trained for binary match / relevance (ITM, cross-encoder,
   SigLIP), so a text and an image candidate in one ranked list are compared
   on the same [0, 1] axis.

What is *not* guaranteed: that probabilities from different backends are
equally **calibrated**. Each is calibrated only as well as its training made it
(ITM heads were trained with hard negatives, bge rerankers with a
contrastive loss, CLIP never as a classifier), so a 0.8 from BLIP and a 0.8
from bge-reranker need not mean the same precision, and the dual-encoder
neutral cosines are heuristics. Mixed-modality rankings are meaningful to the
extent the backends agree; to make them comparable on your data, fit a
:class:`Calibration` per pair (logistic regression of relevance labels on
:meth:`Reranker.log_odds`).

Cost
----
Scoring ``n`` candidates of one modality runs ``ceil(n / batch_size)`` batched
model calls (never one per candidate), plus one to encode the query where the
backend needs a model for that (an image query for ITM: the vision tower runs
once and its output is expanded over the candidates; any query for a dual
encoder). A text query is tokenised once; candidate texts are tokenised and
candidate images decoded/preprocessed per batch, the next batch on a worker
thread while the current one runs. :attr:`Reranker.forward_count` counts the
model calls.
"""

from __future__ import annotations

from mmrag.rerank.base import (
    ALL_PAIRS,
    Calibration,
    PairKey,
    RerankBackend,
    RerankQuery,
    UnsupportedPairError,
)
from mmrag.rerank.blip2_itc import Blip2ItcBackend
from mmrag.rerank.cross_encoder import CrossEncoderBackend
from mmrag.rerank.dual import DualEncoderBackend, DualScoreMap
from mmrag.rerank.itm import Blip2ItmBackend, BlipItmBackend
from mmrag.rerank.loading import (
    RERANKER_PRESETS,
    Blip2Score,
    RerankerKind,
    RerankerModels,
    RerankerPreset,
    RerankerSpec,
    describe_reranker_spec,
    get_reranker_preset,
    list_rerankers,
    load_reranker,
    reranker_kind,
)
from mmrag.rerank.reranker import InputType, RankedItem, Reranker, rerank_known_modalities

__all__ = [
    "ALL_PAIRS",
    "RERANKER_PRESETS",
    "Blip2ItcBackend",
    "Blip2ItmBackend",
    "Blip2Score",
    "BlipItmBackend",
    "Calibration",
    "CrossEncoderBackend",
    "DualEncoderBackend",
    "DualScoreMap",
    "InputType",
    "PairKey",
    "RankedItem",
    "RerankBackend",
    "RerankQuery",
    "Reranker",
    "RerankerKind",
    "RerankerModels",
    "RerankerPreset",
    "RerankerSpec",
    "UnsupportedPairError",
    "describe_reranker_spec",
    "get_reranker_preset",
    "list_rerankers",
    "load_reranker",
    "rerank_known_modalities",
    "reranker_kind",
]
