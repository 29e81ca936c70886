"""Dual encoders as rerankers: any :class:`mmrag.Encoder`, every modality pair.

A dual encoder embeds the query and each candidate separately; the pair's
cosine ``cos`` becomes log-odds by an affine map ``scale * cos + bias``
(:class:`DualScoreMap`):

* cross-modal pairs of a model with a learnt bias (SigLIP, SigLIP 2):
  ``scale = exp(logit_scale)`` and ``bias = logit_bias``, the model's own
  values. ``sigmoid`` of that is exactly the probability SigLIP was trained to
  output (``sigmoid(model(...).logits_per_text)``).
* every other pair: ``scale = exp(logit_scale)`` (CLIP: 100; ``100`` when the
  model has none) and ``bias = -scale * neutral_cosine``, so a cosine of
  ``neutral_cosine`` scores 0.5. Defaults: :data:`CROSS_MODAL_NEUTRAL_COSINE`
  (0.25) for text->image / image->text on models without a bias (CLIP's
  matching pairs typically have cosines around 0.3, unrelated ones around
  0.15-0.2) and :data:`SAME_MODAL_NEUTRAL_COSINE` (0.75) for text->text and
  image->image, whose cosines run much higher. A model can ship its own
  values in its config as ``mmrag_neutral_cosine`` (a ``{pair: cosine}``
  mapping; the bundled ``demo`` model does, measured on held-out data by its
  training script); they replace the defaults for the pairs they name. These
  are heuristics, not probabilities the model learnt: calibrate on your data
  if you mix them with other backends.

Query and candidates are embedded through the encoder's own hooks
(``prepare_*``/``forward_*``), so vectors equal ``embed_texts``/``embed_images``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mmrag.inputs import Modality
from mmrag.rerank.base import ALL_PAIRS, CROSS_MODAL_PAIRS, Batch, PairKey, RerankBackend, RerankQuery, pair_key

if TYPE_CHECKING:
    import torch

    from mmrag.encoders.base import Encoder

__all__ = [
    "CROSS_MODAL_NEUTRAL_COSINE",
    "DEFAULT_LOGIT_SCALE",
    "SAME_MODAL_NEUTRAL_COSINE",
    "DualEncoderBackend",
    "DualScoreMap",
]

CROSS_MODAL_NEUTRAL_COSINE = 0.25
"""Cosine scoring 0.5 for text<->image pairs of dual encoders without a learnt bias (CLIP)."""

SAME_MODAL_NEUTRAL_COSINE = 0.75
"""Cosine scoring 0.5 for text->text and image->image pairs of every dual encoder."""

DEFAULT_LOGIT_SCALE = 100.0
"""Scale used for encoders whose model has no ``logit_scale`` (CLIP's trained value)."""


@dataclass(frozen=True)
class DualScoreMap:
    """How a dual encoder's cosine becomes log-odds: ``scale * cos + bias``.

    Attributes:
        scale: Multiplies the cosine.
        bias: Added to it.
        source: ``"model"`` (the model's learnt scale and bias) or
            ``"neutral_cosine=<c>"`` (the model's scale, and a bias that puts
            0.5 at cosine ``c``).
    """

    scale: float
    bias: float
    source: str


@dataclass(frozen=True)
class _DualContext:
    modality: Modality
    vector: torch.Tensor


class DualEncoderBackend(RerankBackend):
    """Rerank with a dual encoder (usually a larger one than the first-stage retriever).

    Args:
        encoder: Any encoder :func:`mmrag.load_encoder` returns.
        neutral_cosine: Override the cosine that scores 0.5, per pair (see the
            module docstring). Pairs not given keep the model's own values
            (config ``mmrag_neutral_cosine``) or the defaults.

    Raises:
        ValueError: A ``neutral_cosine`` key is not a pair or its value is not
            a finite number.
    """

    kind: ClassVar[str] = "dual"
    pairs: ClassVar[frozenset[PairKey]] = frozenset(ALL_PAIRS)
    specialised: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, *, neutral_cosine: Mapping[PairKey, float] | None = None) -> None:
        super().__init__(model_id=encoder.model_id, device=encoder.device, dtype=encoder.dtype)
        self.encoder = encoder
        config = getattr(getattr(encoder, "model", None), "config", None)
        shipped = getattr(config, "mmrag_neutral_cosine", None) or {}
        overrides = {
            **_checked_neutral_cosines(shipped, f"{encoder.model_id}: the model config's mmrag_neutral_cosine"),
            **_checked_neutral_cosines(neutral_cosine or {}, "neutral_cosine"),
        }
        scale, bias = _learnt_scale_and_bias(encoder)
        self._maps = {pair: _score_map(pair, scale, bias, overrides.get(pair)) for pair in ALL_PAIRS}

    @property
    def name(self) -> str:
        """A short label such as ``"dual:siglip(google/siglip2-base-patch16-224)"``."""
        return f"dual:{self.encoder.family}({self.model_id})"

    def score_map(self, pair: PairKey) -> DualScoreMap:
        """The cosine-to-log-odds map used for ``pair``.

        Args:
            pair: E.g. ``"text->image"``.

        Returns:
            Its :class:`DualScoreMap`.
        """
        return self._maps[pair]

    # ------------------------------------------------------------------ hooks
    def encode_query(self, query: RerankQuery) -> _DualContext:
        """Embed the query once (one counted forward).

        Args:
            query: The resolved query.

        Returns:
            The query's modality and unit vector.
        """
        item = query.text if query.modality == "text" else query.image
        batch = self.cpu_step(self.prepare, None, [item], query.modality)
        return _DualContext(query.modality, self.run_model(self._unit_vectors, batch)[0])

    def prepare(self, context: Any, items: list[Any], modality: Modality) -> Batch:
        """Tokenise texts or preprocess images with the encoder's hooks.

        Args:
            context: The prepared query (unused).
            items: Candidate texts or decoded images.
            modality: Their modality.

        Returns:
            ``(modality, encoder batch)``.
        """
        if modality == "text":
            return modality, self.encoder.prepare_texts(items)
        return modality, self.encoder.prepare_images(items)

    def forward(self, context: _DualContext, batch: Batch) -> torch.Tensor:
        """Embed one batch of candidates and map their cosines to log-odds.

        Args:
            context: The prepared query.
            batch: What :meth:`prepare` returned.

        Returns:
            ``scale * cos + bias``, shape ``(n,)``.
        """
        modality, _ = batch
        cosines = self._unit_vectors(batch) @ context.vector
        score_map = self._maps[pair_key(context.modality, modality)]
        return cosines * score_map.scale + score_map.bias

    def _unit_vectors(self, batch: Batch) -> torch.Tensor:
        import torch

        modality, inputs = batch
        forward = self.encoder.forward_texts if modality == "text" else self.encoder.forward_images
        return torch.nn.functional.normalize(forward(inputs).float(), dim=-1)


def _checked_neutral_cosines(values: Mapping[Any, Any], what: str) -> dict[PairKey, float]:
    """``values`` as ``{pair: float}``, or a ValueError naming ``what`` and the bad entry."""
    checked: dict[PairKey, float] = {}
    for key, value in dict(values).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if key not in ALL_PAIRS or not math.isfinite(number):
            raise ValueError(f"{what} needs pair keys {ALL_PAIRS} and finite values, got {key!r}: {value!r}")
        checked[key] = number
    return checked


def _learnt_scale_and_bias(encoder: Encoder) -> tuple[float, float | None]:
    """``exp(logit_scale)`` and ``logit_bias`` of the encoder's model, where it has them."""
    model = getattr(encoder, "model", None)
    log_scale = getattr(model, "logit_scale", None)
    scale = math.exp(float(log_scale.detach().float().reshape(-1)[0])) if log_scale is not None else DEFAULT_LOGIT_SCALE
    bias = getattr(model, "logit_bias", None)
    return scale, (float(bias.detach().float().reshape(-1)[0]) if bias is not None else None)


def _score_map(pair: PairKey, scale: float, bias: float | None, neutral: float | None) -> DualScoreMap:
    if neutral is None and pair in CROSS_MODAL_PAIRS and bias is not None:
        return DualScoreMap(scale, bias, "model")
    if neutral is None:
        neutral = CROSS_MODAL_NEUTRAL_COSINE if pair in CROSS_MODAL_PAIRS else SAME_MODAL_NEUTRAL_COSINE
    return DualScoreMap(scale, -scale * neutral, f"neutral_cosine={neutral:g}")
