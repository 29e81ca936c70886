"""mmrag.store.fusion: merging per-modality hit lists by rank or by raw score."""

from __future__ import annotations

import pytest

from mmrag.store import Hit, merge_ranked


def _hits(prefix: str, modality: str, top: float) -> list[Hit]:
    return [Hit(f"{prefix}{i}", modality, None, None, {}, top - i / 100) for i in range(3)]


def test_merge_ranked_interleaves_equal_ranks() -> None:
    texts = _hits("t", "text", 0.9)
    images = _hits("i", "image", 0.3)
    merged = merge_ranked([texts, images], 4)
    assert [h.id for h in merged] == ["t0", "i0", "t1", "i1"]


def test_score_fusion_orders_by_raw_cosine() -> None:
    merged = merge_ranked([_hits("t", "text", 0.9), _hits("i", "image", 0.3)], 4, fusion="score")
    assert [h.id for h in merged] == ["t0", "t1", "t2", "i0"]


def test_an_item_in_both_lists_adds_up_and_appears_once() -> None:
    shared = Hit("both", "text", None, None, {}, 0.5)
    merged = merge_ranked([[_hits("t", "text", 0.9)[0], shared], [shared, *_hits("i", "image", 0.3)]], 3)
    assert [h.id for h in merged] == ["both", "t0", "i0"]


def test_unknown_fusion_is_named() -> None:
    with pytest.raises(ValueError, match="fusion must be 'rrf' or 'score', got 'max'"):
        merge_ranked([], 3, fusion="max")  # type: ignore[arg-type]  # the wrong type is what the test passes
