"""``validate_where``: check a metadata filter before Chroma sees it, and name what is wrong.

The grammar is Chroma's, with two conveniences:

- a field: ``{"album": "2024"}`` (equality) or ``{"year": {"$gte": 2020}}``
  with one of ``$eq``, ``$ne`` (a str, int, float or bool), ``$gt``, ``$gte``,
  ``$lt``, ``$lte`` (a number), ``$in``, ``$nin`` (a non-empty list of values
  of one type), ``$contains``, ``$not_contains`` (a value);
- logic: ``{"$and": [filter, ...]}`` and ``{"$or": [filter, ...]}``;
- several fields in one mapping (``{"album": "2024", "year": 2020}``) and
  several operators on one field (``{"year": {"$gte": 2020, "$lt": 2024}}``)
  mean all of them (``$and``), and a ``$and``/``$or`` of one filter is that
  filter, where Chroma would refuse both.

Numbers must be finite (ints within 64 bits), filters at most
:data:`MAX_DEPTH` levels deep. Anything else raises
:class:`~mmrag.InvalidFilterError` (a ``ValueError``) naming the offending
part, e.g. ``where['$and'][1]['year']: $gt needs a number, got str 'x'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmrag.errors import InvalidFilterError
from mmrag.store.checks import INT64_MAX, INT64_MIN
from mmrag.store.names import is_utf8

__all__ = ["MAX_DEPTH", "validate_where"]

MAX_DEPTH = 16
"""Most nested levels a filter may have (each ``$and``/``$or`` and each field is a level)."""

_LOGICAL = ("$and", "$or")
_ORDERING = ("$gt", "$gte", "$lt", "$lte")
_EQUALITY = ("$eq", "$ne", "$contains", "$not_contains")
_MEMBERSHIP = ("$in", "$nin")
_OPERATORS = (*_EQUALITY, *_ORDERING, *_MEMBERSHIP)


def validate_where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a metadata filter and return it in the form Chroma accepts.

    Args:
        where: A filter (see :mod:`mmrag.store.filters` for the grammar), or
            ``None``/``{}`` for none.

    Returns:
        The filter, with the conveniences spelled out, or ``None`` for no filter.

    Raises:
        mmrag.InvalidFilterError: The filter is malformed; the message names
            the part (as a path like ``where['$or'][0]['year']``) and why.

    Example:
        >>> validate_where({"album": "2024", "year": {"$gte": 2020}})
        {'$and': [{'album': '2024'}, {'year': {'$gte': 2020}}]}
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InvalidFilterError(f"where must be a mapping (a dict), got {type(where).__name__}")
    if not where:
        return None
    return _filter(where, "where", 1)


def _filter(clause: object, at: str, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise InvalidFilterError(f"{at}: the filter is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(clause, Mapping):
        raise InvalidFilterError(f"{at}: expected a filter mapping, got {_shown(clause)}")
    if not clause:
        raise InvalidFilterError(f"{at}: an empty filter mapping")
    parts = [_one(key, value, at, depth) for key, value in clause.items()]
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _one(key: object, value: object, at: str, depth: int) -> dict[str, Any]:
    if not isinstance(key, str):
        raise InvalidFilterError(f"{at}: keys must be strings, got {_shown(key)}")
    here = f"{at}[{key!r}]"
    if key in _LOGICAL:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise InvalidFilterError(f"{here}: {key} needs a non-empty list of filters, got {_shown(value)}")
        parts = [_filter(item, f"{here}[{index}]", depth + 1) for index, item in enumerate(value)]
        return parts[0] if len(parts) == 1 else {key: parts}
    if key.startswith("$"):
        raise InvalidFilterError(
            f"{here}: unknown logical operator {key!r}; use $and or $or, or a field name "
            f"(field operators {', '.join(_OPERATORS)} go inside a field: {{'year': {{'$gte': 2020}}}})"
        )
    if not key or not is_utf8(key):
        raise InvalidFilterError(f"{here}: a field name must be a non-empty string")
    if not isinstance(value, Mapping):
        return {key: _value(value, here, "$eq")}
    if depth + 1 > MAX_DEPTH:
        raise InvalidFilterError(f"{here}: the filter is nested more than {MAX_DEPTH} levels deep")
    if not value:
        raise InvalidFilterError(f"{here}: an empty operator mapping; use e.g. {{'$eq': ...}}")
    parts = [{key: _operator(op, operand, here)} for op, operand in value.items()]
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _operator(op: object, operand: object, at: str) -> dict[str, Any]:
    if op not in _OPERATORS:
        raise InvalidFilterError(f"{at}: unknown operator {_shown(op)}; use one of {', '.join(_OPERATORS)}")
    assert isinstance(op, str)
    if op in _ORDERING:
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise InvalidFilterError(f"{at}: {op} needs a number, got {_shown(operand)}")
        return {op: _value(operand, at, op)}
    if op in _MEMBERSHIP:
        if isinstance(operand, (str, bytes)) or not isinstance(operand, Sequence) or not operand:
            raise InvalidFilterError(f"{at}: {op} needs a non-empty list of values, got {_shown(operand)}")
        values = [_value(item, f"{at}[{op!r}][{index}]", op) for index, item in enumerate(operand)]
        kinds = {type(item) for item in values}
        if len(kinds) > 1:
            names = ", ".join(sorted(kind.__name__ for kind in kinds))
            raise InvalidFilterError(f"{at}: the values of {op} must all have one type, got {names}")
        return {op: values}
    return {op: _value(operand, at, op)}


def _value(value: object, at: str, op: str) -> str | int | float | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidFilterError(f"{at}: {op} value {value} is outside the 64-bit integer range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilterError(f"{at}: {op} needs a finite number, got {value}")
        return float(value)
    if isinstance(value, str):
        if not is_utf8(value):
            raise InvalidFilterError(f"{at}: {op} value holds a lone surrogate (not valid Unicode text)")
        return value
    raise InvalidFilterError(f"{at}: {op} needs a str, int, float or bool, got {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"
