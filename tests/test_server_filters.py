"""``where`` filters are checked before the store sees them (mmrag.server.filters).

The service uses the store's ``mmrag.store.validate_where`` when the store has one; these tests
also run the server's own fallback check (with that name removed), so both paths refuse the same
malformed filters with :class:`mmrag.InvalidFilterError` naming the part.
"""

from __future__ import annotations

import json
import math

import pytest

import mmrag.store
from mmrag.errors import InvalidFilterError
from mmrag.server.filters import MAX_DEPTH, check_where


def nested(operator: str, depth: int) -> dict:
    where: dict = {"n": 1}
    for _ in range(depth):
        where = {operator: [where, {"n": 2}]}
    return where


BAD = [
    ({"$where": "1"}, "where['$where']"),
    ({"n": math.inf}, "finite"),
    ({"n": {"$gt": -math.inf}}, "finite"),
    ({"n": {"$in": [math.nan]}}, "where['n']['$in'][0]"),
    ({"$": 1}, "where['$']"),
    ({"": 1}, "where['']"),
    (nested("$and", MAX_DEPTH + 1), "nested more than"),
    (nested("$or", 200), "nested more than"),
    ({"n": {"$near": 1}}, "unknown operator"),
    ({"n": {"$gt": "x"}}, "needs a number"),
    ({"n": {"$in": []}}, "non-empty list"),
    ({"$and": []}, "non-empty list"),
    ({"n": None}, "needs a str, int, float or bool"),
    ({"n": 2**64}, "64-bit"),
    ({"n": {"$in": [1, "a"]}}, "one type"),
    ({"n": "\ud800"}, "lone surrogate"),
]


@pytest.fixture(params=["fallback", "store"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with the server's fallback check, and with the store's validator where it has one."""
    if request.param == "fallback":
        monkeypatch.delattr(mmrag.store, "validate_where", raising=False)
    elif not hasattr(mmrag.store, "validate_where"):
        pytest.skip("this store has no validate_where yet")
    return str(request.param)


@pytest.mark.parametrize(("where", "needle"), BAD, ids=[json.dumps(w)[:40] for w, _ in BAD])
def test_malformed_filters_raise_invalid_filter_error_naming_the_part(validator: str, where: dict, needle: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        check_where(where)
    assert str(info.value).startswith("where")
    if validator == "fallback":
        assert needle in str(info.value)


@pytest.mark.parametrize(
    "where",
    [
        {"n": 1},
        {"album": "2024"},
        {"n": {"$gte": 2, "$lt": 5.5}},
        {"$or": [{"n": 1}, {"n": {"$in": [2, 3]}}]},
        {"$and": [{"n": {"$ne": 0}}, {"tag": {"$nin": ["x", "y"]}}]},
        nested("$and", MAX_DEPTH - 2),
    ],
    ids=["eq", "str", "range", "or-in", "and-nin", "deep-but-allowed"],
)
def test_well_formed_filters_pass(validator: str, where: dict) -> None:
    assert check_where(where)


def test_no_filter_is_none(validator: str) -> None:
    assert check_where(None) is None and check_where({}) is None


def test_the_store_validator_is_used_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(mmrag.store, "validate_where", lambda where: seen.append(where) or {"n": 1}, raising=False)
    assert check_where({"n": 1, "m": 2}) == {"n": 1} and seen == [{"n": 1, "m": 2}]
