"""The bundled ``demo`` model: shipped files, tokenizer, and retrieval quality on held-out data.

The model (``src/mmrag/models/demo``) was trained by ``scripts/train_demo_model.py``
on :mod:`mmrag.demo_data` images drawn with seed 0. These tests draw held-out
images with another seed and search them through the public API
(``mmrag.load_encoder("demo")`` and ``mmrag.MultimodalStore``), on the CPU.

Recall@1 is defined per query kind:

* text -> image, colour + shape (``"a red circle"``, ``"红色的圆形"``): one
  query per colour + shape combination present among the images; a hit when
  the top image has that colour and shape (several images may match).
* image -> text, colour + shape: the 48 colour + shape captions of one
  language are the candidates; a hit when the top caption names the image's
  colour and shape.
* full combinations (size, colour, shape, position): the same with full
  captions (``"a small red circle on the left"``, ``"左边的红色小圆形"``), over
  all 480 full captions for image -> text. Reported, with a lower bar.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import mmrag
from mmrag.demo_data import COLOURS, POSITIONS, SHAPES, SIZES, ShapeSample, sample_shapes
from mmrag.encoders.presets import get_preset

HELD_OUT_SEED = 7  # the model was trained on seed 0 (and checked on seed 1 by the script)
N_IMAGES = 160
LANGS = ("en", "zh")
MODEL_DIR = Path(mmrag.__file__).parent / "models" / "demo"


@pytest.fixture(scope="module")
def encoder() -> mmrag.Encoder:
    return mmrag.load_encoder("demo", device="cpu")


@pytest.fixture(scope="module")
def held_out() -> tuple[list[ShapeSample], list]:
    samples = sample_shapes(N_IMAGES, seed=HELD_OUT_SEED)
    return samples, [s.render() for s in samples]


@pytest.fixture(scope="module")
def image_vectors(encoder: mmrag.Encoder, held_out: tuple[list[ShapeSample], list]) -> np.ndarray:
    return encoder.embed_images(held_out[1])


def _colour_shape_samples() -> list[ShapeSample]:
    return [ShapeSample(c.name, s.name, "small", "left") for c, s in itertools.product(COLOURS, SHAPES)]


def _full_samples() -> list[ShapeSample]:
    return [
        ShapeSample(c.name, s.name, z.name, p.name)
        for c, s, z, p in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS)
    ]


def test_bundled_files_are_small_and_complete(encoder: mmrag.Encoder) -> None:
    names = {p.name for p in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir() if p.is_file()) < 5 * 1024 * 1024
    assert encoder.family == "clip"
    assert encoder.dim == get_preset("demo").dim
    assert encoder.model_id == "mmrag/demo"


def test_tokenizer_reloads_identically_in_both_languages(encoder: mmrag.Encoder) -> None:
    from transformers import AutoProcessor, CLIPTokenizer

    texts = [s.caption(lang, d) for s in sample_shapes(20, seed=HELD_OUT_SEED) for lang in LANGS
             for d in ("full", "colour_shape")] + ["一只猫", "A Photo Of A Cat"]  # fmt: skip  # aligned by hand
    reloaded = [CLIPTokenizer.from_pretrained(MODEL_DIR), AutoProcessor.from_pretrained(MODEL_DIR).tokenizer]
    tokenizer = encoder.tokenizer
    special = set(tokenizer.all_special_ids)
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert [other(text)["input_ids"] for other in reloaded] == [ids, ids]
        body = [i for i in ids if i not in special]
        assert body and tokenizer.unk_token_id not in body
    # Chinese words are single tokens, never merged across word boundaries.
    ids = tokenizer("左边的红色小圆形")["input_ids"]
    words = [tokenizer.decode([i]) for i in ids[1:-1]]
    assert words == ["左边", "的", "红色", "小", "圆形"]


def test_image_processor_matches_training_resolution(encoder: mmrag.Encoder) -> None:
    config = encoder.model.config.vision_config
    ip = encoder.image_processor
    assert ip.crop_size == {"height": config.image_size, "width": config.image_size}
    assert ip.size == {"shortest_edge": config.image_size}


@pytest.mark.parametrize("lang", LANGS)
def test_text_to_image_colour_shape_through_store(
    tmp_path: Path, encoder: mmrag.Encoder, held_out: tuple[list[ShapeSample], list], lang: str
) -> None:
    samples, images = held_out
    with mmrag.MultimodalStore(encoder, path=tmp_path / "db") as store:
        store.add_images(images, metadatas=[{"colour": s.colour, "shape": s.shape} for s in samples])
        present = sorted({(s.colour, s.shape) for s in samples})
        hits = 0
        for colour, shape in present:
            query = ShapeSample(colour, shape, "small", "left").caption(lang, "colour_shape")
            top = store.search(query, modality="image", k=1)[0]
            hits += (top.metadata["colour"], top.metadata["shape"]) == (colour, shape)
    recall = hits / len(present)
    assert len(present) >= 40
    assert recall >= 0.9, f"text->image colour+shape recall@1 ({lang}) = {recall:.3f}"


@pytest.mark.parametrize("lang", LANGS)
def test_image_to_text_colour_shape(
    encoder: mmrag.Encoder, held_out: tuple[list[ShapeSample], list], image_vectors: np.ndarray, lang: str
) -> None:
    samples, _ = held_out
    candidates = _colour_shape_samples()
    text_vectors = encoder.embed_texts([c.caption(lang, "colour_shape") for c in candidates])
    best = (image_vectors @ text_vectors.T).argmax(1)
    recall = float(np.mean([(candidates[b].colour, candidates[b].shape) == (s.colour, s.shape)
                            for b, s in zip(best, samples)]))  # fmt: skip  # aligned by hand
    assert recall >= 0.9, f"image->text colour+shape recall@1 ({lang}) = {recall:.3f}"


def test_image_to_text_through_store(
    tmp_path: Path, encoder: mmrag.Encoder, held_out: tuple[list[ShapeSample], list]
) -> None:
    samples, images = held_out
    candidates = _colour_shape_samples()
    with mmrag.MultimodalStore(encoder, path=tmp_path / "db") as store:
        store.add_texts(
            [c.caption("en", "colour_shape") for c in candidates],
            metadatas=[{"colour": c.colour, "shape": c.shape} for c in candidates],
        )
        chosen = list(range(0, len(samples), 4))
        hits = 0
        for i in chosen:
            top = store.search(images[i], modality="text", k=1, query_type="image")[0]
            hits += (top.metadata["colour"], top.metadata["shape"]) == (samples[i].colour, samples[i].shape)
    assert hits / len(chosen) >= 0.9


@pytest.mark.parametrize("lang", LANGS)
def test_full_combinations(
    encoder: mmrag.Encoder, held_out: tuple[list[ShapeSample], list], image_vectors: np.ndarray, lang: str
) -> None:
    samples, _ = held_out

    def key(s: ShapeSample) -> tuple[str, str, str, str]:
        return (s.colour, s.shape, s.size, s.position)

    candidates = _full_samples()
    text_vectors = encoder.embed_texts([c.caption(lang, "full") for c in candidates])
    # image -> text over all 480 full captions
    best = (image_vectors @ text_vectors.T).argmax(1)
    i2t = float(np.mean([key(candidates[b]) == key(s) for b, s in zip(best, samples)]))
    # text -> image for every full combination present
    index = {key(c): i for i, c in enumerate(candidates)}
    present = sorted({key(s) for s in samples})
    top = (text_vectors[[index[k] for k in present]] @ image_vectors.T).argmax(1)
    t2i = float(np.mean([key(samples[t]) == k for t, k in zip(top, present)]))
    print(f"full combinations ({lang}): image->text {i2t:.3f}, text->image {t2i:.3f}")
    assert i2t >= FULL_FLOOR and t2i >= FULL_FLOOR, (i2t, t2i)


FULL_FLOOR = 0.85
"""Regression floor for full-combination recall@1 (not a target; see the report in the script's output)."""


@pytest.mark.slow  # 24 queries against 160 images, each scored by the reranker: about two minutes
def test_reranker_match_probabilities_split_matches_from_the_rest(held_out: tuple[list[ShapeSample], list]) -> None:
    samples, images = held_out
    reranker = mmrag.load_reranker("demo", device="cpu")
    assert reranker.routes["text->image"].score_map("text->image").source.startswith("neutral_cosine=0.7")
    positives, negatives = [], []
    for lang in LANGS:
        for colour, shape in sorted({(s.colour, s.shape) for s in samples})[::4]:
            scores = np.asarray(
                reranker.score(ShapeSample(colour, shape, "small", "left").caption(lang, "colour_shape"), images)
            )
            match = np.array([(s.colour, s.shape) == (colour, shape) for s in samples])
            positives += list(scores[match] > 0.5)
            negatives += list(scores[~match] < 0.5)
    assert np.mean(positives) >= 0.9 and np.mean(negatives) >= 0.9, (np.mean(positives), np.mean(negatives))
