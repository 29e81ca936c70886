"""The :class:`Reranker`: routes each (query, candidate) pair to a backend and merges the scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from mmrag.errors import ImageInputError
from mmrag.inputs import ImageInput, ImageLimits, Modality, QueryType, as_items, is_image_query, resolve_image
from mmrag.rerank.base import (
    ALL_PAIRS,
    Calibration,
    PairKey,
    RerankBackend,
    RerankQuery,
    UnsupportedPairError,
    pair_key,
)

__all__ = ["InputType", "RankedItem", "Reranker", "rerank_known_modalities"]

InputType = QueryType
"""How to read a query or candidates: ``"auto"`` applies :func:`mmrag.inputs.is_image_query`."""

_MODALITY_ORDER: tuple[Modality, ...] = ("text", "image")


@dataclass(frozen=True)
class RankedItem:
    """One candidate in a :meth:`Reranker.rerank` result.

    Attributes:
        index: Position of the candidate in the list passed in.
        score: Match probability in ``[0, 1]``: ``sigmoid(log_odds)``.
        log_odds: The (calibrated) log-odds the score comes from; results are
            sorted by it, so candidates whose scores round to 1.0 keep their order.
        modality: ``"text"`` or ``"image"``: how the candidate was read.
        backend: Name of the backend that scored it, e.g.
            ``"blip_itm(Salesforce/blip-itm-base-coco)"``.
        candidate: The candidate object itself, as passed in.
    """

    index: int
    score: float
    log_odds: float
    modality: Modality
    backend: str
    candidate: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Scored:
    log_odds: np.ndarray
    modalities: list[Modality]
    backends: list[str]


class Reranker:
    """Score candidates against a query with the backend that fits each modality pair.

    Get one with :func:`mmrag.load_reranker`, or build one from backends.
    See :mod:`mmrag.rerank` for what the scores mean.

    Args:
        routes: The backend for each (query, candidate) modality pair it
            should serve, e.g. ``{"text->image": blip, "image->text": blip,
            "text->text": bge}``. Pairs left out are refused.
        batch_size: Most pairs per model call.
        image_limits: Limits for resolving image queries and candidates.
        calibration: Optional :class:`Calibration` per pair, applied to that
            pair's log-odds.

    Raises:
        ValueError: A key is not a pair, a backend cannot serve its pair, or
            ``batch_size`` is below 1.

    Attributes:
        routes: Read-only mapping of the pairs served to their backends.
        backends: The distinct backends, in route order.
        batch_size: Most pairs per model call.
        image_limits: Limits for resolving image inputs.
        calibration: Read-only mapping of pairs to their calibration.
    """

    def __init__(
        self,
        routes: Mapping[PairKey, RerankBackend],
        *,
        batch_size: int = 32,
        image_limits: ImageLimits | None = None,
        calibration: Mapping[PairKey, Calibration] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not routes:
            raise ValueError("a Reranker needs at least one route")
        for pair, backend in routes.items():
            if pair not in ALL_PAIRS:
                raise ValueError(f"unknown pair {pair!r}; pairs are {', '.join(ALL_PAIRS)}")
            if pair not in backend.pairs:
                raise ValueError(f"{backend.name} cannot score {pair} pairs; it serves {sorted(backend.pairs)}")
        for pair in calibration or {}:
            if pair not in ALL_PAIRS:
                raise ValueError(f"unknown calibration pair {pair!r}; pairs are {', '.join(ALL_PAIRS)}")
        ordered = {pair: routes[pair] for pair in ALL_PAIRS if pair in routes}
        self.routes: Mapping[PairKey, RerankBackend] = MappingProxyType(ordered)
        self.backends: tuple[RerankBackend, ...] = tuple({id(b): b for b in ordered.values()}.values())
        self.batch_size = batch_size
        self.image_limits = image_limits or ImageLimits()
        self.calibration: Mapping[PairKey, Calibration] = MappingProxyType(dict(calibration or {}))

    # ------------------------------------------------------------- public API
    @property
    def forward_count(self) -> int:
        """Batched model calls run so far by all backends (query encodings included).

        Scoring ``n`` candidates of one modality costs ``ceil(n / batch_size)``
        calls, plus one for the query where the backend encodes it with a model
        (an image query for BLIP/BLIP-2, any query for a dual encoder).
        """
        return sum(backend.forward_count for backend in self.backends)

    def score(
        self,
        query: str | ImageInput,
        candidates: Iterable[str | ImageInput],
        *,
        query_type: InputType = "auto",
        candidate_type: InputType = "auto",
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Match probabilities of each candidate for the query.

        Args:
            query: A text, or an image as anything :func:`mmrag.resolve_image`
                accepts.
            candidates: Texts and/or images, mixed freely.
            query_type: ``"auto"`` (non-strings are images; a string is an
                image if it is an http(s) URL, a ``data:`` URI or an existing
                image file; see :func:`mmrag.inputs.is_image_query`), ``"text"``
                or ``"image"``.
            candidate_type: The same rule for every candidate, or a forced
                ``"text"``/``"image"`` for all of them.
            batch_size: Override :attr:`batch_size` for this call.

        Returns:
            Float64 array of shape ``(len(candidates),)`` with values in
            ``[0, 1]``, in candidate order.

        Raises:
            UnsupportedPairError: No backend serves a needed modality pair
                (nothing is scored).
            mmrag.ImageInputError: The query or a candidate image could not be
                resolved (the message names the candidate's index).
            mmrag.NotASequenceError: ``candidates`` is a single item (a
                string, a path, bytes, a PIL image ...), a set or a mapping
                (a ``TypeError``).
            TypeError: A text query or candidate is not a string.

        Example:
            >>> rr = mmrag.load_reranker("blip-itm-base-coco")
            >>> rr.score("a cat on a sofa", ["cat.jpg", "dog.jpg"])
            array([0.93, 0.02])
        """
        scored = self._evaluate(query, candidates, query_type, candidate_type, batch_size)
        return _sigmoid(scored.log_odds)

    def log_odds(
        self,
        query: str | ImageInput,
        candidates: Iterable[str | ImageInput],
        *,
        query_type: InputType = "auto",
        candidate_type: InputType = "auto",
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The (calibrated) log-odds behind :meth:`score`: ``score = sigmoid(log_odds)``.

        Useful for fitting a :class:`Calibration`, and free of the rounding
        that makes scores of very confident matches all equal 1.0.

        Args:
            query: As in :meth:`score`.
            candidates: As in :meth:`score`.
            query_type: As in :meth:`score`.
            candidate_type: As in :meth:`score`.
            batch_size: As in :meth:`score`.

        Returns:
            Float64 array of shape ``(len(candidates),)``.

        Raises:
            UnsupportedPairError: As in :meth:`score`.
            mmrag.ImageInputError: As in :meth:`score`.
            mmrag.NotASequenceError: As in :meth:`score`.
            TypeError: As in :meth:`score`.
        """
        return self._evaluate(query, candidates, query_type, candidate_type, batch_size).log_odds

    def rerank(
        self,
        query: str | ImageInput,
        candidates: Iterable[str | ImageInput],
        top_n: int | None = None,
        *,
        query_type: InputType = "auto",
        candidate_type: InputType = "auto",
        batch_size: int | None = None,
    ) -> list[RankedItem]:
        """Candidates sorted best first.

        Args:
            query: As in :meth:`score`.
            candidates: As in :meth:`score`.
            top_n: Keep the best ``top_n`` (``None``: all).
            query_type: As in :meth:`score`.
            candidate_type: As in :meth:`score`.
            batch_size: As in :meth:`score`.

        Returns:
            :class:`RankedItem` objects sorted by log-odds (equivalently
            score), highest first; ties keep candidate order.

        Raises:
            ValueError: ``top_n`` is negative.
            UnsupportedPairError: As in :meth:`score`.
            mmrag.ImageInputError: As in :meth:`score`.
            mmrag.NotASequenceError: As in :meth:`score`.
            TypeError: As in :meth:`score`.

        Example:
            >>> best = rr.rerank("red running shoe", hits, top_n=3)
            >>> [(item.index, round(item.score, 2)) for item in best]
            [(4, 0.97), (0, 0.88), (7, 0.41)]
        """
        if top_n is not None and top_n < 0:
            raise ValueError(f"top_n must be None or >= 0, got {top_n}")
        items = as_items(candidates, "candidates")
        scored = self._evaluate(query, items, query_type, candidate_type, batch_size)
        order = sorted(range(len(items)), key=lambda i: (-scored.log_odds[i], i))
        probabilities = _sigmoid(scored.log_odds)
        return [
            RankedItem(
                index=i,
                score=float(probabilities[i]),
                log_odds=float(scored.log_odds[i]),
                modality=scored.modalities[i],
                backend=scored.backends[i],
                candidate=items[i],
            )
            for i in order[:top_n]
        ]

    def supports(self, query: Modality, candidate: Modality) -> bool:
        """Whether this reranker can score the pair.

        Args:
            query: ``"text"`` or ``"image"``.
            candidate: ``"text"`` or ``"image"``.

        Returns:
            ``True`` if a backend serves it.
        """
        return pair_key(query, candidate) in self.routes

    def close(self) -> None:
        """Stop the backends' prefetch threads (the reranker stays usable)."""
        for backend in self.backends:
            backend.close()

    def __repr__(self) -> str:
        routes = ", ".join(f"{pair}: {backend.name}" for pair, backend in self.routes.items())
        return f"Reranker({routes}; batch_size={self.batch_size})"

    # -------------------------------------------------------------- internals
    def _evaluate(
        self,
        query: str | ImageInput,
        candidates: Iterable[str | ImageInput],
        query_type: InputType,
        candidate_type: InputType,
        batch_size: int | None,
    ) -> _Scored:
        items = as_items(candidates, "candidates")
        query_modality = _modality(query, query_type, "query")
        modalities = [_modality(item, candidate_type, f"candidate {i}") for i, item in enumerate(items)]
        groups = {m: [(i, items[i]) for i in range(len(items)) if modalities[i] == m] for m in _MODALITY_ORDER}
        self._check_routes(query_modality, groups)
        log_odds = np.zeros(len(items), dtype=np.float64)
        backends = [""] * len(items)
        if not items:
            return _Scored(log_odds, modalities, backends)
        resolved = self._resolve_query(query, query_modality)
        for modality, group in groups.items():
            if not group:
                continue
            pair = pair_key(query_modality, modality)
            backend = self.routes[pair]
            values = backend.log_odds(
                resolved, group, modality, batch_size=batch_size or self.batch_size, limits=self.image_limits
            )
            calibration = self.calibration.get(pair)
            if calibration is not None:
                values = calibration.apply(values)
            positions = [i for i, _ in group]
            log_odds[positions] = values
            for i in positions:
                backends[i] = backend.name
        return _Scored(log_odds, modalities, backends)

    def _check_routes(self, query_modality: Modality, groups: Mapping[Modality, list[tuple[int, Any]]]) -> None:
        for modality, group in groups.items():
            pair = pair_key(query_modality, modality)
            if group and pair not in self.routes:
                indices = [i for i, _ in group]
                shown = ", ".join(map(str, indices[:5])) + (", ..." if len(indices) > 5 else "")
                raise UnsupportedPairError(
                    f"this reranker cannot score {pair} pairs (candidates {shown}); it serves "
                    f"{', '.join(self.routes) or 'nothing'}. Add a model for that pair, e.g. "
                    f"{_SUGGESTIONS[pair]}, or pass candidate_type/query_type if the inputs were misread"
                )

    def _resolve_query(self, query: Any, modality: Modality) -> RerankQuery:
        if modality == "text":
            return RerankQuery("text", text=query)
        try:
            return RerankQuery("image", image=resolve_image(query, limits=self.image_limits))
        except ImageInputError as exc:
            raise ImageInputError(exc.reason, item=f"query {exc.item}" if exc.item else "query") from exc


_SUGGESTIONS: dict[str, str] = {
    "text->text": "load_reranker(['<image-text model>', 'bge-reranker-base'])",
    "text->image": "load_reranker(['blip-itm-base-coco', ...])",
    "image->text": "load_reranker(['blip-itm-base-coco', ...])",
    "image->image": "a dual encoder: load_reranker([..., 'siglip2-base-224'])",
}


def _modality(item: Any, input_type: InputType, what: str) -> Modality:
    if input_type not in ("auto", "text", "image"):
        raise ValueError(f"{what.split()[0]}_type must be 'auto', 'text' or 'image', got {input_type!r}")
    if is_image_query(item, input_type):
        return "image"
    if not isinstance(item, str):
        raise TypeError(f"{what}: a text must be a string, got {type(item).__name__}")
    return "text"


def _sigmoid(log_odds: np.ndarray) -> np.ndarray:
    log_odds = np.asarray(log_odds, dtype=np.float64)
    out = np.empty_like(log_odds)
    positive = log_odds >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-log_odds[positive]))
    exp = np.exp(log_odds[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def rerank_known_modalities(
    reranker: Reranker,
    query: Any,
    query_type: InputType,
    items: list[Any],
    modalities: list[Modality],
    top_n: int | None,
    batch_size: int,
) -> list[RankedItem]:
    """Rerank candidates whose modality the caller already knows (adapters' nodes and documents).

    Args:
        reranker: The reranker.
        query: The query (text or image input).
        query_type: ``"auto"``, ``"text"`` or ``"image"``.
        items: The candidates' payloads (texts, or image paths/URLs/bytes).
        modalities: The known modality of each candidate.
        top_n: Most items to return (``None``: all).
        batch_size: Pairs per forward pass.

    Returns:
        Ranked items, best first, indices into ``items``.

    One modality: one call with that ``candidate_type``. Mixed: one call with
    ``"auto"`` when :func:`~mmrag.inputs.is_image_query` reads every item as
    its known modality; otherwise one call per modality, merged exactly as
    :meth:`~mmrag.Reranker.rerank` orders (log-odds, ties by position).
    """
    kinds = set(modalities)
    if len(kinds) <= 1 or all(is_image_query(item) == (kind == "image") for item, kind in zip(items, modalities)):
        candidate_type: InputType = kinds.pop() if len(kinds) == 1 else "auto"
        return reranker.rerank(
            query, items, top_n, query_type=query_type, candidate_type=candidate_type, batch_size=batch_size
        )
    merged: list[RankedItem] = []
    for kind in ("text", "image"):
        positions = [i for i, modality in enumerate(modalities) if modality == kind]
        group = reranker.rerank(
            query, [items[i] for i in positions], None, query_type=query_type, candidate_type=kind,
            batch_size=batch_size,
        )  # fmt: skip  # aligned by hand
        merged.extend(dataclasses.replace(item, index=positions[item.index]) for item in group)
    merged.sort(key=lambda item: (-item.log_odds, item.index))
    return merged[:top_n]
