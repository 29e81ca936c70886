"""The retriever's result counts and filters, under LlamaIndex's names (settable after construction)."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import MetadataFilters

from mmrag.errors import InvalidInputError
from mmrag.inputs import Modality
from mmrag.llama_index.filters import filters_to_where, merge_where
from mmrag.store import StoredModality

__all__ = ["DEFAULT_K", "RetrieverSettings"]

DEFAULT_K = 10
"""Results per modality when none of ``k``, ``similarity_top_k`` and ``image_similarity_top_k`` is given."""


class RetrieverSettings:
    """``k``, ``similarity_top_k``, ``image_similarity_top_k``, ``where`` and ``filters`` of a retriever.

    ``similarity_top_k`` caps text results and ``image_similarity_top_k`` image
    results. ``k`` sets both, and also caps the total of a search over both
    modalities; without ``k`` that total is their sum.
    """

    where: dict[str, Any] | None
    _top_k: dict[Modality, int]
    _total: int | None
    _filters: MetadataFilters | None
    _filters_where: dict[str, Any] | None

    def _set_counts(self, k: int | None, similarity_top_k: int | None, image_similarity_top_k: int | None) -> None:
        default = DEFAULT_K if k is None else _at_least_one("k", k)
        self._top_k = {
            "text": default if similarity_top_k is None else _at_least_one("similarity_top_k", similarity_top_k),
            "image": default
            if image_similarity_top_k is None
            else _at_least_one("image_similarity_top_k", image_similarity_top_k),
        }
        per_modality_only = k is None and (similarity_top_k, image_similarity_top_k) != (None, None)
        self._total = None if per_modality_only else default

    @property
    def k(self) -> int:
        """Most results of a search over both modalities; setting it sets both top-k numbers too."""
        return self._total if self._total is not None else self._top_k["text"] + self._top_k["image"]

    @k.setter
    def k(self, k: int) -> None:
        self._total = _at_least_one("k", k)
        self._top_k = {"text": k, "image": k}

    @property
    def similarity_top_k(self) -> int:
        """Most text results per query."""
        return self._top_k["text"]

    @similarity_top_k.setter
    def similarity_top_k(self, similarity_top_k: int) -> None:
        self._top_k["text"] = _at_least_one("similarity_top_k", similarity_top_k)

    @property
    def image_similarity_top_k(self) -> int:
        """Most image results per query."""
        return self._top_k["image"]

    @image_similarity_top_k.setter
    def image_similarity_top_k(self, image_similarity_top_k: int) -> None:
        self._top_k["image"] = _at_least_one("image_similarity_top_k", image_similarity_top_k)

    @property
    def filters(self) -> MetadataFilters | None:
        """LlamaIndex ``MetadataFilters`` applied to every query, together with ``where``."""
        return self._filters

    @filters.setter
    def filters(self, filters: MetadataFilters | None) -> None:
        self._filters_where = filters_to_where(filters)  # refused now, not at the first query
        self._filters = filters

    def top_k_for(self, modality: Modality) -> int:
        """Most results of a search over one modality.

        Args:
            modality: ``"image"`` or ``"text"``.

        Returns:
            ``image_similarity_top_k`` or ``similarity_top_k``.
        """
        return self._top_k[modality]

    def combined_where(self) -> dict[str, Any] | None:
        """The Chroma filter a query uses: ``where`` and ``filters`` together.

        Returns:
            The filter, or ``None`` for none.
        """
        return merge_where(self.where, self._filters_where)

    def _one_store_call(self, modality: StoredModality | None) -> bool:
        """One store search does it: one modality, or both with one count that is also the total."""
        return modality is not None or self._top_k["text"] == self._top_k["image"] == self.k


def _at_least_one(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be at least 1, got {value!r}")
    return value
