"""BLIP-2's image-text contrastive (ITC) score as a reranker backend.

BLIP-2 scores an (image, text) pair by the **maximum over its query tokens**
of the cosine between a query's projected feature and the text's projected
``[CLS]`` feature. The log-odds this backend returns are that score itself,
equal to plain transformers::

    out = model(**processor(images=images, text=texts, padding=True, return_tensors="pt"),
                use_image_text_matching_head=False)   # Blip2ForImageTextRetrieval
    itc = out.logits_per_image                         # (n_images, n_texts), a cosine in [-1, 1]

transformers returns the raw cosine (no temperature; LAVIS divides by its
learnt ``temp`` only in its training loss), so ``score = sigmoid(itc)`` stays
between about 0.27 and 0.73: the order is BLIP-2's, but it is no match
probability. To merge ITC scores with other backends' probabilities, give the
reranker a :class:`~mmrag.rerank.Calibration` for ``text->image`` and
``image->text`` (e.g. ``Calibration(scale=100.0, bias=-30.0)`` puts 0.5 at a
cosine of 0.3; fit it on your data).

The features come from :class:`mmrag.encoders.blip2.Blip2FeatureEncoder`'s
hooks, so they are the vectors ``embed_texts`` gives and the per-query image
features whose normalised mean ``embed_images`` gives. A text query is
embedded once; an image query's query features are computed once and compared
with each batch of candidate texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mmrag.inputs import Modality
from mmrag.rerank.base import CROSS_MODAL_PAIRS, Batch, PairKey, RerankBackend, RerankQuery

if TYPE_CHECKING:
    import torch

    from mmrag.encoders.blip2 import Blip2FeatureEncoder

__all__ = ["Blip2ItcBackend"]


@dataclass(frozen=True)
class _ItcContext:
    """The query's features: ``(1, dim)`` for a text query, ``(queries, dim)`` for an image query."""

    modality: Modality
    features: torch.Tensor


class Blip2ItcBackend(RerankBackend):
    """BLIP-2's ITC score (max over query tokens) for ``text->image`` and ``image->text``.

    Get one with ``mmrag.load_reranker(path, blip2_score="itc")``, or wrap an
    encoder you already loaded: ``Blip2ItcBackend(mmrag.load_encoder(
    "blip2-feature-vit-g"))`` (the backend then shares its model).

    Args:
        encoder: A BLIP-2 feature encoder (``encoder.family == "blip2"``).

    Raises:
        TypeError: ``encoder`` is not a BLIP-2 feature encoder.
    """

    kind: ClassVar[str] = "blip2_itc"
    pairs: ClassVar[frozenset[PairKey]] = CROSS_MODAL_PAIRS
    specialised: ClassVar[bool] = True

    def __init__(self, encoder: Blip2FeatureEncoder) -> None:
        from mmrag.encoders.blip2 import Blip2FeatureEncoder

        if not isinstance(encoder, Blip2FeatureEncoder):
            raise TypeError(
                f"Blip2ItcBackend needs a BLIP-2 feature encoder (mmrag.load_encoder of a "
                f"Blip2ForImageTextRetrieval checkpoint), got {type(encoder).__name__}"
            )
        super().__init__(model_id=encoder.model_id, device=encoder.device, dtype=encoder.dtype)
        self.encoder = encoder

    # ------------------------------------------------------------------ hooks
    def encode_query(self, query: RerankQuery) -> _ItcContext:
        """Embed the query once (one counted model call).

        Args:
            query: The resolved query.

        Returns:
            The unit text feature, or the image's unit per-query features.
        """
        if query.modality == "text":
            tokens = self.cpu_step(self.encoder.prepare_texts, [query.text or ""])
            return _ItcContext("text", self.run_model(self._text_units, tokens))
        pixels = self.cpu_step(self.encoder.prepare_images, [query.image])
        return _ItcContext("image", self.run_model(self.encoder.query_features, pixels)[0])

    def prepare(self, context: Any, items: list[Any], modality: Modality) -> Batch:
        """Tokenise candidate texts or preprocess candidate images with the encoder's hooks.

        Args:
            context: The prepared query (unused).
            items: Candidate texts or decoded images.
            modality: Their modality.

        Returns:
            The encoder's batch.
        """
        return self.encoder.prepare_texts(items) if modality == "text" else self.encoder.prepare_images(items)

    def forward(self, context: _ItcContext, batch: Batch) -> torch.Tensor:
        """ITC scores of one batch of candidates: the best query's cosine.

        Args:
            context: The prepared query.
            batch: What :meth:`prepare` returned.

        Returns:
            ``max_q cos(query_q, text)``, shape ``(n,)``.
        """
        if context.modality == "text":  # image candidates: (n, q, d) @ (d,) -> (n, q)
            cosines = self.encoder.query_features(batch) @ context.features[0]
        else:  # text candidates: (n, d) @ (d, q) -> (n, q)
            cosines = self._text_units(batch) @ context.features.T
        return cosines.max(dim=1).values

    def _text_units(self, batch: Batch) -> torch.Tensor:
        import torch

        return torch.nn.functional.normalize(self.encoder.forward_texts(batch).float(), dim=-1)
