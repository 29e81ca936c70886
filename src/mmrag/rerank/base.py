"""The backend interface and the one batching loop every reranker backend shares.

A backend scores (query, candidate) pairs of the modality pairs it serves and
returns *log-odds*: the logit of its estimate that the pair matches. A backend
implements three small hooks:

* :meth:`RerankBackend.encode_query`: everything that depends on the query
  alone, done once per call (tokenise a text query, preprocess an image query
  and run the vision tower once, embed the query with a dual encoder);
* :meth:`RerankBackend.prepare`: CPU work for one batch of candidates
  (tokenise texts; preprocess already decoded images), run through
  :meth:`RerankBackend.cpu_step` so that concurrent calls never use a
  tokenizer at the same time;
* :meth:`RerankBackend.forward`: one batched model call for that batch.

:meth:`RerankBackend.log_odds` owns the rest: splitting candidates into
batches of at most ``batch_size`` pairs, decoding candidate images with
:func:`mmrag.resolve_image` (errors name the candidate's index; an image it
already resolved, e.g. in a store or a service, is used as is), preparing
batch *i+1* on a worker thread while batch *i* runs, ``torch.inference_mode``
and counting model calls in :attr:`RerankBackend.forward_count`.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

import numpy as np

from mmrag.errors import UnsupportedPairError
from mmrag.inputs import ImageLimits, Modality, resolve_image
from mmrag.prefetch import Prefetcher

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "ALL_PAIRS",
    "CROSS_MODAL_PAIRS",
    "Calibration",
    "PairKey",
    "RerankBackend",
    "RerankQuery",
    "UnsupportedPairError",
    "move_batch",
    "pair_key",
    "text_limit",
]

PairKey = Literal["text->text", "text->image", "image->text", "image->image"]
"""A (query modality, candidate modality) pair, written ``"query->candidate"``."""

ALL_PAIRS: tuple[PairKey, ...] = ("text->text", "text->image", "image->text", "image->image")
"""Every modality pair, in a fixed order."""

CROSS_MODAL_PAIRS: frozenset[PairKey] = frozenset({"text->image", "image->text"})
"""The pairs whose query and candidate differ in modality."""

Batch = Any
"""Whatever a backend's ``prepare`` returns and its ``forward`` accepts."""

_T = TypeVar("_T")


def pair_key(query: Modality, candidate: Modality) -> PairKey:
    """The :data:`PairKey` for a query and a candidate modality.

    Args:
        query: ``"text"`` or ``"image"``.
        candidate: ``"text"`` or ``"image"``.

    Returns:
        E.g. ``"text->image"``.
    """
    return cast("PairKey", f"{query}->{candidate}")  # two Literal modalities make one of the four PairKeys


@dataclass(frozen=True)
class Calibration:
    """An affine correction of a backend's log-odds: ``scale * log_odds + bias``.

    Use it to make backends comparable on your own data (Platt scaling: fit
    ``scale`` and ``bias`` by logistic regression of relevance labels on
    :meth:`mmrag.Reranker.log_odds`). ``scale`` must be positive, so a
    calibration never changes the order of candidates scored by one backend.

    Attributes:
        scale: Multiplies the log-odds; must be positive and finite.
        bias: Added after scaling; must be finite.

    Raises:
        ValueError: ``scale`` is not positive or either value is not finite.

    Example:
        >>> Calibration(scale=0.5, bias=-1.0).apply(np.array([2.0]))
        array([0.])
    """

    scale: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        """Validate the parameters."""
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Calibration.scale must be positive and finite, got {self.scale!r}")
        if not math.isfinite(self.bias):
            raise ValueError(f"Calibration.bias must be finite, got {self.bias!r}")

    def apply(self, log_odds: np.ndarray) -> np.ndarray:
        """Return the corrected log-odds.

        Args:
            log_odds: Backend log-odds.

        Returns:
            ``scale * log_odds + bias`` as float64.
        """
        return np.asarray(log_odds, dtype=np.float64) * self.scale + self.bias


@dataclass(frozen=True)
class RerankQuery:
    """A query resolved once per call and shared by every backend.

    Attributes:
        modality: ``"text"`` or ``"image"``.
        text: The query text (text queries).
        image: The decoded RGB image (image queries).
    """

    modality: Modality
    text: str | None = None
    image: Image.Image | None = None


class RerankBackend(ABC):
    """One model that scores (query, candidate) pairs as log-odds of a match.

    Subclasses set :attr:`kind` and :attr:`pairs` and implement the three
    hooks; see the module docstring. A backend is safe to call from several
    threads.

    Attributes:
        kind: ``"blip_itm"``, ``"blip2_itm"``, ``"blip2_itc"``, ``"cross_encoder"`` or ``"dual"``.
        pairs: The modality pairs this backend can score.
        specialised: ``True`` for joint (cross-attention) scorers; a dual
            encoder is ``False`` and only serves pairs no specialised backend
            of the same reranker serves.
        model_id: Hub id or absolute local path of the checkpoint.
        device: The torch device the model runs on.
        dtype: The torch dtype of the model weights.
    """

    kind: ClassVar[str]
    pairs: ClassVar[frozenset[PairKey]]
    specialised: ClassVar[bool] = True
    model_id: str
    device: torch.device
    dtype: torch.dtype

    def __init__(self, *, model_id: str, device: torch.device, dtype: torch.dtype) -> None:
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self._forward_count = 0
        self._count_lock = threading.Lock()
        self._prefetcher = Prefetcher("mmrag-rerank")
        self._prepare_lock = threading.Lock()

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def encode_query(self, query: RerankQuery) -> Any:
        """Do the query-only work once per call (may run one counted model call).

        Args:
            query: The resolved query.

        Returns:
            A context object handed to :meth:`prepare` and :meth:`forward`.
        """

    @abstractmethod
    def prepare(self, context: Any, items: list[Any], modality: Modality) -> Batch:
        """CPU work for one batch of candidates (runs on the prefetch thread).

        Args:
            context: What :meth:`encode_query` returned.
            items: At most ``batch_size`` candidates: strings, or decoded RGB
                images when ``modality`` is ``"image"``.
            modality: The candidates' modality.

        Returns:
            Model inputs for :meth:`forward`.
        """

    @abstractmethod
    def forward(self, context: Any, batch: Batch) -> torch.Tensor:
        """Score one prepared batch with one batched model call.

        Args:
            context: What :meth:`encode_query` returned.
            batch: What :meth:`prepare` returned.

        Returns:
            Log-odds of a match, shape ``(n,)``.
        """

    # ------------------------------------------------------------- public API
    @property
    def name(self) -> str:
        """A short label such as ``"blip_itm(Salesforce/blip-itm-base-coco)"``."""
        return f"{self.kind}({self.model_id})"

    @property
    def forward_count(self) -> int:
        """Batched model calls run so far (query encodings included)."""
        return self._forward_count

    def log_odds(
        self,
        query: RerankQuery,
        candidates: Sequence[tuple[int, Any]],
        modality: Modality,
        *,
        batch_size: int,
        limits: ImageLimits,
    ) -> np.ndarray:
        """Score candidates of one modality against the query.

        Args:
            query: The resolved query.
            candidates: ``(index, item)`` pairs; ``index`` is the position in
                the caller's candidate list (used in error messages).
            modality: Modality of every candidate here.
            batch_size: Most pairs per model call.
            limits: Limits for resolving image candidates.

        Returns:
            Float64 log-odds, one per candidate, in order.

        Raises:
            UnsupportedPairError: This backend does not serve the pair.
            mmrag.ImageInputError: An image candidate could not be resolved;
                the message names its index.
        """
        pair = pair_key(query.modality, modality)
        if pair not in self.pairs:
            raise UnsupportedPairError(f"{self.name} cannot score {pair} pairs; it serves {sorted(self.pairs)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not candidates:
            return np.zeros(0, dtype=np.float64)
        context = self.encode_query(query)

        def prepare(chunk: Sequence[tuple[int, Any]]) -> Batch:
            if modality == "image":
                items = [resolve_image(item, limits=limits, index=index) for index, item in chunk]
            else:
                items = [item for _, item in chunk]
            return self.cpu_step(self.prepare, context, items, modality)

        chunks = [candidates[start : start + batch_size] for start in range(0, len(candidates), batch_size)]
        scores = [self.run_model(self.forward, context, batch) for batch in self._prefetcher.run(chunks, prepare)]
        return np.concatenate([s.detach().float().cpu().numpy().reshape(-1) for s in scores]).astype(np.float64)

    def run_model(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one batched model call under ``torch.inference_mode`` and count it.

        Args:
            fn: The call.
            *args: Its arguments.

        Returns:
            What ``fn`` returned.
        """
        import torch

        with torch.inference_mode():
            result = fn(*args)
        with self._count_lock:
            self._forward_count += 1
        return result

    def cpu_step(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a tokenizer or image-processor step, one at a time per backend.

        Fast tokenizers are not re-entrant (concurrent calls with padding or
        truncation can fail with "Already borrowed"), so concurrent
        :meth:`log_odds` calls serialise their CPU steps; image decoding and
        model calls stay concurrent.

        Args:
            fn: The step.
            *args: Its arguments.

        Returns:
            What ``fn`` returned.
        """
        with self._prepare_lock:
            return fn(*args)

    def close(self) -> None:
        """Stop the prefetch thread (the backend stays usable; it restarts on demand)."""
        self._prefetcher.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, device={str(self.device)!r})"


def move_batch(batch: Mapping[str, Any], device: torch.device, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Move a batch's tensors to ``device``; floating tensors are cast to ``dtype``.

    Args:
        batch: A tokenizer or image-processor output (or any mapping).
        device: Target device.
        dtype: Dtype for floating-point tensors (``pixel_values``), or ``None``
            to keep theirs.

    Returns:
        A new dict with the moved tensors (other values unchanged).
    """
    import torch

    moved: dict[str, Any] = {}
    for key, value in dict(batch).items():
        if isinstance(value, torch.Tensor):
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            value = value.to(device)
        moved[key] = value
    return moved


def text_limit(tokenizer: Any, positions: int | None, default: int = 512) -> int:
    """The most tokens a text may have: the smaller of the tokenizer's and the model's limit.

    Args:
        tokenizer: The loaded tokenizer (its ``model_max_length`` is used when sane).
        positions: Tokens the model's position embeddings cover, if known.
        default: Used when neither states a usable limit.

    Returns:
        The token limit texts are truncated to.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limits.append(tokenizer_limit)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else default
