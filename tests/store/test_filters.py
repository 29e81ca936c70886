"""mmrag.store.filters: validate_where names the offending part of a bad filter; the store uses it."""

from __future__ import annotations

import math

import pytest
from store_helpers import COLOURS, image

from mmrag.errors import InvalidFilterError
from mmrag.store import MultimodalStore, validate_where
from mmrag.store.filters import MAX_DEPTH

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, None),
        ({}, None),
        ({"album": "2024"}, {"album": "2024"}),
        ({"year": {"$gte": 2020}}, {"year": {"$gte": 2020}}),
        ({"a": 1, "b": True}, {"$and": [{"a": 1}, {"b": True}]}),  # several fields: all of them
        ({"n": {"$gte": 1, "$lt": 3}}, {"$and": [{"n": {"$gte": 1}}, {"n": {"$lt": 3}}]}),
        ({"$or": [{"a": 1}]}, {"a": 1}),  # one clause: that clause
        ({"$or": [{"a": 1}, {"b": {"$in": ["x", "y"]}}]}, {"$or": [{"a": 1}, {"b": {"$in": ["x", "y"]}}]}),
        ({"tags": {"$contains": "red"}}, {"tags": {"$contains": "red"}}),
    ],
)
def test_valid_filters_come_back_in_the_form_chroma_accepts(where, expected) -> None:
    assert validate_where(where) == expected


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["album"], r"where must be a mapping \(a dict\), got list"),
        ({"a": {"$gt": "x"}}, r"where\['a'\]: \$gt needs a number, got str 'x'"),
        ({"a": {"$gt": True}}, r"where\['a'\]: \$gt needs a number, got bool True"),
        ({"a": {"$foo": 1}}, r"where\['a'\]: unknown operator str '\$foo'; use one of \$eq"),
        ({"$not": {"a": 1}}, r"where\['\$not'\]: unknown logical operator '\$not'; use \$and or \$or"),
        ({"a": math.nan}, r"where\['a'\]: \$eq needs a finite number, got nan"),
        ({"a": {"$lte": math.inf}}, r"where\['a'\]: \$lte needs a finite number, got inf"),
        ({"a": 2**64}, r"where\['a'\]: \$eq value 18446744073709551616 is outside the 64-bit integer range"),
        ({"a": None}, r"where\['a'\]: \$eq needs a str, int, float or bool, got NoneType None"),
        ({"a": [1]}, r"where\['a'\]: \$eq needs a str, int, float or bool, got list \[1\]"),
        ({"a": {"$in": []}}, r"where\['a'\]: \$in needs a non-empty list of values, got list \[\]"),
        ({"a": {"$in": "xy"}}, r"where\['a'\]: \$in needs a non-empty list of values, got str 'xy'"),
        ({"a": {"$nin": [1, "x"]}}, r"where\['a'\]: the values of \$nin must all have one type, got int, str"),
        ({"a": {"$in": [1, math.nan]}}, r"where\['a'\]\['\$in'\]\[1\]: \$in needs a finite number"),
        ({"a": {}}, r"where\['a'\]: an empty operator mapping"),
        ({"$and": []}, r"where\['\$and'\]: \$and needs a non-empty list of filters, got list \[\]"),
        ({"$and": [{"a": 1}, "b"]}, r"where\['\$and'\]\[1\]: expected a filter mapping, got str 'b'"),
        ({"$or": [{"a": 1}, {}]}, r"where\['\$or'\]\[1\]: an empty filter mapping"),
        ({"$and": [{"a": 1}, {"y": {"$gt": "2020"}}]}, r"where\['\$and'\]\[1\]\['y'\]: \$gt needs a number"),
        ({1: 2}, r"where: keys must be strings, got int 1"),
        ({"": 2}, r"where\[''\]: a field name must be a non-empty string"),
        ({"a": "caf\udcff"}, r"where\['a'\]: \$eq value holds a lone surrogate"),
    ],
)
def test_bad_filters_name_the_offending_part(where, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message) as info:
        validate_where(where)
    assert info.value.code == "invalid_filter" and isinstance(info.value, ValueError)


def test_depth_is_bounded() -> None:
    deep: dict = {"a": 1}
    for _ in range(MAX_DEPTH - 1):
        deep = {"$and": [deep, {"b": 2}]}
    assert validate_where(deep) is not None
    with pytest.raises(InvalidFilterError, match=f"nested more than {MAX_DEPTH} levels deep"):
        validate_where({"$or": [deep, {"c": 3}]})


def test_the_store_refuses_bad_filters_and_applies_the_conveniences(demo_store: MultimodalStore) -> None:
    demo_store.add_images(
        [image(c, seed=i) for i, c in enumerate(COLOURS.values())],
        metadatas=[{"colour": name, "n": i} for i, name in enumerate(COLOURS)],
    )
    with pytest.raises(InvalidFilterError, match=r"where\['n'\]: \$gt needs a number"):
        demo_store.search("x", where={"n": {"$gt": "1"}})
    with pytest.raises(InvalidFilterError, match=r"where\['n'\]"):
        demo_store.search_by_vector(demo_store.embed_query("x"), modality="image", where={"n": {"$in": []}})
    hits = demo_store.search("x", k=10, modality="image", where={"n": {"$gte": 1, "$lt": 3}, "colour": {"$ne": "x"}})
    assert sorted(h.metadata["n"] for h in hits) == [1, 2]
    assert [h.metadata["colour"] for h in demo_store.search("x", k=10, where={"$or": [{"colour": "blue"}]})] == ["blue"]
