"""LlamaIndex ``MetadataFilters`` as a Chroma ``where`` filter, for :class:`MultimodalStoreRetriever`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from mmrag.errors import InvalidFilterError

__all__ = ["filters_to_where", "merge_where"]

_OPERATORS: dict[FilterOperator, str] = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_CONDITIONS: dict[FilterCondition, str] = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}


def filters_to_where(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex metadata filters into a Chroma ``where`` filter.

    The operators Chroma has are supported: ``EQ``, ``NE``, ``GT``, ``GTE``,
    ``LT``, ``LTE``, ``IN`` and ``NIN``, combined with ``AND`` or ``OR`` and
    nested ``MetadataFilters``.

    Args:
        filters: The filters, or ``None``.

    Returns:
        The ``where`` dict, or ``None`` for no filter (``None`` or an empty list).

    Raises:
        mmrag.InvalidFilterError: An operator or condition Chroma has no
            equivalent for (``TEXT_MATCH``, ``CONTAINS``, ``ANY``, ``ALL``,
            ``IS_EMPTY``, ``NOT``...), ``IN``/``NIN`` without a list, or a
            ``None`` value; the message names the filter's key.

    Example:
        >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        >>> filters_to_where(MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")]))
        {'year': {'$gte': 2020}}
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidFilterError(
            f"filters must be a llama_index MetadataFilters, got {type(filters).__name__}; "
            "pass a Chroma-style dict as where= instead"
        )
    return _group(filters)


def merge_where(where: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Both filters at once: ``{"$and": [where, other]}``, or whichever one is given.

    Args:
        where: A Chroma ``where`` dict, or ``None``.
        other: Another one, or ``None``.

    Returns:
        The combined filter, or ``None`` when neither is given.
    """
    parts = [dict(part) for part in (where, other) if part]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _group(filters: MetadataFilters) -> dict[str, Any] | None:
    condition = filters.condition or FilterCondition.AND
    if condition not in _CONDITIONS:
        raise InvalidFilterError(
            f"filter condition {FilterCondition(condition).value!r} has no Chroma equivalent; use 'and' or 'or' "
            "(and NE / NIN for a negation)"
        )
    parts = []
    for item in filters.filters:
        part = _group(item) if isinstance(item, MetadataFilters) else _one(item)
        if part is not None:
            parts.append(part)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {_CONDITIONS[FilterCondition(condition)]: parts}


def _one(item: MetadataFilter) -> dict[str, Any]:
    operator = FilterOperator(item.operator)
    if operator not in _OPERATORS:
        supported = ", ".join(op.name for op in _OPERATORS)
        raise InvalidFilterError(
            f"filter on {item.key!r}: operator {operator.name} ({operator.value!r}) has no Chroma metadata "
            f"equivalent; supported: {supported}"
        )
    if item.value is None:
        raise InvalidFilterError(f"filter on {item.key!r}: a None value cannot be matched in Chroma metadata")
    if operator in (FilterOperator.IN, FilterOperator.NIN) and not isinstance(item.value, list):
        raise InvalidFilterError(f"filter on {item.key!r}: {operator.name} needs a list value, got {item.value!r}")
    return {item.key: {_OPERATORS[operator]: item.value}}
