"""mmrag.store.checks: bad vectors, modalities, k, fusion and metadata get a clear error naming what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmrag.errors import InvalidInputError, TextInputError
from mmrag.store import MultimodalStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread


@pytest.fixture
def filled(demo_store: MultimodalStore) -> MultimodalStore:
    demo_store.add_texts(["a red circle", "a blue square", "a green star"])
    return demo_store


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (math.nan, r"query vector must be finite; entry 3 is nan"),
        (math.inf, r"query vector must be finite; entry 3 is inf"),
        (-math.inf, r"query vector must be finite; entry 3 is -inf"),
    ],
)
def test_non_finite_query_vectors_are_refused(filled: MultimodalStore, entry: float, message: str) -> None:
    vector = filled.embed_query("a red circle").astype(np.float64)
    vector[3] = entry
    with pytest.raises(InvalidInputError, match=message):
        filled.search_by_vector(vector)


def test_a_zero_vector_is_refused(filled: MultimodalStore) -> None:
    with pytest.raises(InvalidInputError, match="all zeros"):
        filled.search_by_vector(np.zeros(filled.encoder.dim), modality="text")
    with pytest.raises(InvalidInputError, match="must be a sequence of numbers"):
        filled.search_by_vector(["a"] * filled.encoder.dim)


@pytest.mark.parametrize("scale", [1e30, 1e-30, 3.0e38, 1e-40])
def test_huge_and_tiny_vectors_score_like_the_unit_vector(filled: MultimodalStore, scale: float) -> None:
    unit = filled.embed_query("a red circle")
    expected = [(h.id, h.score) for h in filled.search_by_vector(unit, k=3, modality="text")]
    scaled = filled.search_by_vector(unit.astype(np.float64) * scale, k=3, modality="text")
    assert [h.id for h in scaled] == [i for i, _ in expected]
    assert [h.score for h in scaled] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert scaled[0].score == pytest.approx(1.0, abs=1e-5) and all(math.isfinite(h.score) for h in scaled)


def test_modality_k_and_fusion_are_checked_everywhere(filled: MultimodalStore) -> None:
    with pytest.raises(InvalidInputError, match="modality must be 'image', 'text', 'pair' or None, got 'audio'"):
        filled.count("audio")  # type: ignore[arg-type]  # the wrong type is what the test passes
    for bad_k in (0, -1, 2.5, True, "3"):
        with pytest.raises(InvalidInputError, match="k must be"):
            filled.search("x", k=bad_k)  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(InvalidInputError, match="fusion must be 'rrf' or 'score', got 'max'"):
        filled.search("x", modality="text", fusion="max")
    # With one modality there is nothing to merge: a valid fusion is documented as unused.
    assert [h.id for h in filled.search("x", k=3, modality="text", fusion="score")] == [
        h.id for h in filled.search("x", k=3, modality="text")
    ]
    assert filled.count("text") == 3 and filled.count(np.str_("image")) == 0


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"x": math.nan}, r"metadata of item 1: value of 'x' must be a finite number, got nan"),
        ({"x": -math.inf}, r"metadata of item 1: value of 'x' must be a finite number, got -inf"),
        ({"x": 2**70}, r"metadata of item 1: value of 'x' is outside the 64-bit integer range"),
        ({"x": "caf\udcff"}, r"metadata of item 1: value of 'x' holds a lone surrogate"),
        ({"": 1}, r"metadata of item 1: key '' must be a non-empty string not starting with '\$'"),
        ({"$x": 1}, r"metadata of item 1: key '\$x' must be"),
        ({"x": None}, r"metadata of item 1: value of 'x' must be str, int, float or bool, got NoneType"),
        ({"mmrag_x": 1}, r"metadata of item 1: key 'mmrag_x' is reserved"),
    ],
)
def test_metadata_chroma_would_mangle_is_refused_naming_item_and_key(
    demo_store: MultimodalStore, meta: dict, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        demo_store.add_texts(["fine", "also fine"], metadatas=[{"ok": 1.5}, meta])
    assert demo_store.count() == 0  # nothing of the call was stored


def test_extreme_but_valid_metadata_round_trips(demo_store: MultimodalStore) -> None:
    meta = {"big": 2**63 - 1, "small": -(2**63), "tiny": 5e-324, "flag": False, "empty": ""}
    ids = demo_store.add_texts(["x"], metadatas=[meta]).ids
    assert demo_store.get(ids)[0].metadata == meta


def test_texts_chroma_cannot_store_are_refused(demo_store: MultimodalStore) -> None:
    with pytest.raises(TextInputError, match=r"text 1: holds a lone surrogate"):
        demo_store.add_texts(["fine", "bad \udcff"])
    with pytest.raises(InvalidInputError, match="id of item 0 must be a non-empty string"):
        demo_store.add_texts(["fine"], ids=["bad \udcff"])
    with pytest.raises(InvalidInputError, match="metadatas must be a list"):
        demo_store.add_texts(["fine"], metadatas={"a": 1})
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        demo_store.add_texts(["fine"], ids="abc")  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert demo_store.count() == 0
