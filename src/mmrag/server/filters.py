"""The ``where`` filter of ``/search``, checked before the store (and Chroma) see it.

A malformed filter (an unknown ``$`` operator, ``NaN`` or ``Infinity``, a
key ``"$"``, nesting hundreds of levels deep ...) is an
:class:`~mmrag.InvalidFilterError`, which the service answers with 400
``invalid_filter``, never a 500. :func:`check_where` uses the store's own
validator (``mmrag.store.validate_where``) when the installed store has one,
else the small grammar check here (Chroma's operators, finite numbers,
64-bit integers, at most :data:`MAX_DEPTH` levels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mmrag.errors import InvalidFilterError

__all__ = ["MAX_DEPTH", "check_where"]

MAX_DEPTH = 16
"""Most nested levels a filter may have (each ``$and``/``$or`` and each field is a level)."""

_LOGICAL = ("$and", "$or")
_NUMERIC = ("$gt", "$gte", "$lt", "$lte")
_SCALAR = ("$eq", "$ne", "$contains", "$not_contains")
_LISTS = ("$in", "$nin")
_INT64 = 2**63


def check_where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a ``where`` filter and return it as the store should get it.

    Args:
        where: The request's filter, or ``None``.

    Returns:
        The filter (``None`` for none or ``{}``).

    Raises:
        mmrag.InvalidFilterError: The filter is malformed; the message names
            the part, e.g. ``where['$and'][1]['year']: $gt needs a number``.
    """
    import mmrag.store

    validator = getattr(mmrag.store, "validate_where", None)
    if callable(validator):
        checked: dict[str, Any] | None = validator(where)
        return checked
    if not where:
        return None
    _clause(where, "where", 1)
    return dict(where)


def _clause(clause: object, at: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidFilterError(f"{at}: the filter is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(clause, Mapping) or not clause:
        raise InvalidFilterError(f"{at}: expected a non-empty filter mapping, got {_shown(clause)}")
    for key, value in clause.items():
        here = f"{at}[{key!r}]"
        if key in _LOGICAL:
            if not isinstance(value, list) or not value:
                raise InvalidFilterError(f"{here}: {key} needs a non-empty list of filters, got {_shown(value)}")
            for index, item in enumerate(value):
                _clause(item, f"{here}[{index}]", depth + 1)
        elif not isinstance(key, str) or not key or key.startswith("$") or not _is_text(key):
            raise InvalidFilterError(
                f"{here}: not a field name or logical operator; use $and or $or, or a field "
                f"(field operators go inside a field: {{'year': {{'$gte': 2020}}}})"
            )
        elif isinstance(value, Mapping):
            if depth + 1 > MAX_DEPTH:
                raise InvalidFilterError(f"{here}: the filter is nested more than {MAX_DEPTH} levels deep")
            if not value:
                raise InvalidFilterError(f"{here}: an empty operator mapping; use e.g. {{'$eq': ...}}")
            for operator, operand in value.items():
                _operator(operator, operand, here)
        else:
            _value(value, here, "$eq")


def _operator(operator: object, operand: object, at: str) -> None:
    if operator in _NUMERIC:
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise InvalidFilterError(f"{at}: {operator} needs a number, got {_shown(operand)}")
        _value(operand, at, str(operator))
    elif operator in _LISTS:
        if not isinstance(operand, list) or not operand:
            raise InvalidFilterError(f"{at}: {operator} needs a non-empty list of values, got {_shown(operand)}")
        for index, item in enumerate(operand):
            _value(item, f"{at}[{operator!r}][{index}]", str(operator))
        if len({type(item) for item in operand}) > 1:
            raise InvalidFilterError(f"{at}: the values of {operator} must all have one type")
    elif operator in _SCALAR:
        _value(operand, at, str(operator))
    else:
        known = ", ".join((*_SCALAR, *_NUMERIC, *_LISTS))
        raise InvalidFilterError(f"{at}: unknown operator {_shown(operator)}; use one of {known}")


def _value(value: object, at: str, operator: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if not _is_text(value):
            raise InvalidFilterError(f"{at}: {operator} value holds a lone surrogate (not valid Unicode text)")
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise InvalidFilterError(f"{at}: {operator} value {value} is outside the 64-bit integer range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilterError(f"{at}: {operator} needs a finite number, got {value}")
        return
    raise InvalidFilterError(f"{at}: {operator} needs a str, int, float or bool, got {_shown(value)}")


def _is_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"
