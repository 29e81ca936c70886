"""The synthetic shape data behind the demo model and ``mmrag demo``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mmrag.demo_data import (
    BACKGROUNDS,
    COLOURS,
    DETAILS,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeSample,
    sample_shapes,
    write_sample_folder,
)

_CJK = re.compile(r"[\u4e00-\u9fff]")


def _pixels(sample: ShapeSample, size: int = 64) -> np.ndarray:
    return np.asarray(sample.render(size))


def test_same_seed_same_samples_images_and_captions() -> None:
    a = sample_shapes(12, seed=3)
    b = sample_shapes(12, seed=3)
    assert a == b
    for x, y in zip(a, b):
        assert x.caption("en") == y.caption("en") and x.caption("zh") == y.caption("zh")
        assert np.array_equal(_pixels(x), _pixels(y))


def test_different_seed_different_samples() -> None:
    a = sample_shapes(12, seed=0)
    b = sample_shapes(12, seed=1)
    assert a != b
    assert [s.caption("en") for s in a] != [s.caption("en") for s in b]
    assert not all(np.array_equal(_pixels(x), _pixels(y)) for x, y in zip(a, b))


def test_prefix_property_and_empty() -> None:
    assert sample_shapes(5, seed=7) == sample_shapes(20, seed=7)[:5]
    assert sample_shapes(0) == []
    with pytest.raises(ValueError):
        sample_shapes(-1)


def test_jitter_makes_images_of_one_caption_differ() -> None:
    base = {"colour": "red", "shape": "circle", "size": "small", "position": "left", "background": "grey"}
    one, two = ShapeSample(**base, variant=1), ShapeSample(**base, variant=2)
    assert one.caption() == two.caption()
    assert not np.array_equal(_pixels(one), _pixels(two))


def test_captions_in_both_languages() -> None:
    sample = ShapeSample("red", "circle", "small", "left")
    assert sample.caption("en") == "a small red circle on the left"
    assert sample.caption("zh") == "左边的红色小圆形"
    assert sample.caption("en", "colour_shape") == "a red circle"
    assert sample.caption("zh", "colour_shape") == "红色的圆形"
    assert sample.caption("en", "colour_shape_size") == "a small red circle"
    assert sample.caption("en", "colour_shape_position") == "a red circle on the left"
    assert sample.caption("zh", "colour_shape_position") == "左边的红色圆形"
    assert ShapeSample("orange", "star", "large", "center").caption("en") == "a large orange star in the center"
    for s in sample_shapes(30, seed=2):
        for detail in DETAILS:
            en, zh = s.caption("en", detail), s.caption("zh", detail)
            assert en.isascii() and not _CJK.search(en)
            assert _CJK.search(zh) and not re.search(r"[a-z]", zh)
    with pytest.raises(ValueError):
        sample.caption("fr")  # type: ignore[arg-type]  # an unsupported language on purpose
    with pytest.raises(ValueError):
        sample.caption("en", "everything")  # type: ignore[arg-type]  # an unknown detail on purpose


def test_vocabulary_is_small_and_distinct() -> None:
    assert len(COLOURS) == 8 and len(SHAPES) == 6 and len(SIZES) == 2 and len(POSITIONS) == 5
    for group in (COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS):
        assert len({w.name for w in group}) == len({w.en for w in group}) == len({w.zh for w in group}) == len(group)
    with pytest.raises(ValueError, match="colour"):
        ShapeSample("pink", "circle", "small", "left")


def test_render_size_and_mode() -> None:
    sample = sample_shapes(1, seed=0)[0]
    image = sample.render()
    assert image.size == (64, 64) and image.mode == "RGB"
    assert sample.render(128).size == (128, 128)


def test_shape_is_drawn_in_its_colour_and_position() -> None:
    sample = ShapeSample("blue", "square", "large", "left", background="grey")
    pixels = _pixels(sample).astype(int)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100)
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 200
    assert xs.mean() < 32 and abs(ys.mean() - 32) < 6


def test_write_sample_folder(tmp_path) -> None:
    written = write_sample_folder(tmp_path / "samples", n=4, seed=0)
    names = [p.name for p in written]
    assert names[:3] == ["shape_000.png", "shape_000.en.txt", "shape_000.zh.txt"]
    assert len(written) == 12 and all(p.is_file() for p in written)
    samples = sample_shapes(4, seed=0)
    assert (tmp_path / "samples" / "shape_002.en.txt").read_text(encoding="utf-8").strip() == samples[2].caption("en")
    assert (tmp_path / "samples" / "shape_002.zh.txt").read_text(encoding="utf-8").strip() == samples[2].caption("zh")
    from PIL import Image

    with Image.open(tmp_path / "samples" / "shape_001.png") as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), _pixels(samples[1]))

    images_only = write_sample_folder(tmp_path / "plain", n=3, captions=False)
    assert [p.suffix for p in images_only] == [".png"] * 3
    english = write_sample_folder(tmp_path / "en", n=2, languages=("en",))
    assert [p.name for p in english] == ["shape_000.png", "shape_000.en.txt", "shape_001.png", "shape_001.en.txt"]
