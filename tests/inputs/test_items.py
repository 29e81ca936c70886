"""as_items and as_texts: the one single-item check and the text check every batch API uses."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmrag.errors import NotASequenceError, TextInputError
from mmrag.inputs import as_items, as_texts

SINGLE_ITEMS: list[object] = [
    pytest.param(Path("a.jpg"), id="Path"),
    pytest.param("a.jpg", id="str"),
    pytest.param(b"\x89PNG", id="bytes"),
    pytest.param(bytearray(b"\x89PNG"), id="bytearray"),
    pytest.param(memoryview(b"\x89PNG"), id="memoryview"),
    pytest.param(Image.new("RGB", (4, 4)), id="PIL"),
    pytest.param(np.zeros((4, 4, 3), dtype=np.uint8), id="ndarray"),
    pytest.param(io.BytesIO(b"\x89PNG"), id="BytesIO"),
]
"""One image input of each kind, passed where a list is expected."""


def expected_single_message(name: str, item: object) -> str:
    """The exact message every batch API gives for a single item."""
    return f"{name} must be a list of items, not a single {type(item).__name__}; wrap it in a list"


@pytest.mark.parametrize("item", SINGLE_ITEMS)
def test_a_single_item_is_refused_naming_its_type(item: object) -> None:
    with pytest.raises(NotASequenceError) as excinfo:
        as_items(item, "images")  # type: ignore[call-overload]  # the wrong type is what the test passes
    assert str(excinfo.value) == expected_single_message("images", item)
    assert isinstance(excinfo.value, TypeError) and isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    "unordered",
    [
        pytest.param({"a.png", "b.png"}, id="set"),
        pytest.param(frozenset({"a.png"}), id="frozenset"),
        pytest.param({"a.png": 1}, id="dict"),
    ],
)
def test_unordered_collections_are_refused(unordered: object) -> None:
    with pytest.raises(NotASequenceError, match=r"images must be a list of items, not a \w+ \(order undefined\)"):
        as_items(unordered, "images")  # type: ignore[call-overload]  # the wrong type is what the test passes


def test_not_iterable_is_refused() -> None:
    with pytest.raises(NotASequenceError, match="not a single int"):
        as_items(3, "texts")  # type: ignore[call-overload]  # the wrong type is what the test passes


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ["a", "b"], id="list"),
        pytest.param(lambda: ("a", "b"), id="tuple"),
        pytest.param(lambda: (x for x in "ab"), id="generator"),
        pytest.param(lambda: {1: "a", 2: "b"}.values(), id="dict-values"),
    ],
)
def test_ordered_iterables_become_lists(make: Callable[[], object]) -> None:
    assert as_items(make(), "texts") == ["a", "b"]


def test_a_4d_array_is_a_batch_of_images() -> None:
    batch = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert [item.shape for item in as_items(batch, "images")] == [(4, 4, 3), (4, 4, 3)]


def test_as_texts_names_the_bad_item() -> None:
    assert as_texts(("a cat", "红色的圆形")) == ["a cat", "红色的圆形"]
    with pytest.raises(TextInputError, match="^text 1: expected str, got int$") as excinfo:
        as_texts(["ok", 3])
    assert excinfo.value.index == 1 and isinstance(excinfo.value, TypeError)
    with pytest.raises(TextInputError, match=r"^text 2: not valid Unicode: lone surrogate U\+D800 at position 1$"):
        as_texts(["ok", "é", "a\ud800b"])
    with pytest.raises(NotASequenceError, match="texts must be a list of items, not a single str"):
        as_texts("a single string")
