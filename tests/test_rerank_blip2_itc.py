"""BLIP-2's ITC score through the reranker: parity with transformers, selection, batching.

Tiny random ``Blip2ForImageTextRetrieval`` models (both processor layouts: without and with
``<image>`` tokens) saved with ``save_pretrained`` and loaded by path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmrag
from mmrag.errors import InvalidInputError
from mmrag.rerank import Blip2ItcBackend, Blip2ItmBackend, DualEncoderBackend, load_reranker
from mmrag.testing import PROBE_TEXTS, build_tiny_blip2_itm, probe_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = list(PROBE_TEXTS[:5])


@pytest.fixture(scope="module")
def blip2_dirs(tiny_blip2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's tiny BLIP-2 and one saved in the newer layout whose processor adds ``<image>`` tokens."""
    root = tmp_path_factory.mktemp("tiny_blip2_itc")
    return {"plain": tiny_blip2_dir, "image_tokens": build_tiny_blip2_itm(root / "tokens", image_tokens=True)}


def _images() -> list[Image.Image]:
    return probe_images()[:5]


def _itc_reference(path: Path, images: list[Image.Image], texts: list[str]) -> np.ndarray:
    """``logits_per_image`` of ``use_image_text_matching_head=False``: (images, texts) ITC scores."""
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    model = Blip2ForImageTextRetrieval.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs, use_image_text_matching_head=False).logits_per_image
    assert logits.shape == (len(images), len(texts))
    return logits.double().numpy()


@pytest.mark.parametrize("layout", ["plain", "image_tokens"])
def test_itc_scores_equal_transformers_logits(layout: str, blip2_dirs) -> None:
    reranker = load_reranker(blip2_dirs[layout], device="cpu", batch_size=2, blip2_score="itc")
    assert {pair: b.kind for pair, b in reranker.routes.items()} == {
        "text->image": "blip2_itc",
        "image->text": "blip2_itc",
    }
    images = _images()
    reference = _itc_reference(blip2_dirs[layout], images, TEXTS)
    assert np.ptp(reference) > 0.05  # parity on near-constant scores would prove nothing
    for j, text in enumerate(TEXTS[:2]):  # text query, image candidates: a column
        np.testing.assert_allclose(reranker.log_odds(text, images), reference[:, j], atol=1e-5)
    for i, image in enumerate(images[:2]):  # image query, text candidates: a row
        np.testing.assert_allclose(reranker.log_odds(image, TEXTS), reference[i], atol=1e-5)
    scores = reranker.score(TEXTS[0], images)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-reference[:, 0])), atol=1e-6)  # raw cosine: no temperature


def test_itc_is_the_best_query_of_the_encoder_features(blip2_encoder) -> None:
    reranker = load_reranker(blip2_encoder, blip2_score="itc")
    backend = reranker.routes["text->image"]
    assert isinstance(backend, Blip2ItcBackend) and backend.encoder is blip2_encoder  # shares the loaded model
    images = _images()
    with torch.no_grad():
        per_query = blip2_encoder.query_features(blip2_encoder.prepare_images(images)).numpy()
    text = blip2_encoder.embed_texts(["a red circle"])[0]
    best = (per_query @ text).max(axis=1)
    np.testing.assert_allclose(reranker.log_odds("a red circle", images), best, atol=1e-5)
    # The store's mean-pooled vector scores lower than (or equal to) the best single query.
    pooled = blip2_encoder.embed_images(images) @ text
    assert np.all(best >= (per_query.mean(axis=1) @ text) - 1e-6)
    assert not np.allclose(pooled, best, atol=1e-3)


def test_itm_stays_the_default_and_a_loaded_encoder_stays_a_dual_encoder(blip2_dirs, blip2_encoder) -> None:
    assert isinstance(load_reranker(blip2_dirs["plain"], device="cpu").routes["text->image"], Blip2ItmBackend)
    explicit = load_reranker(blip2_dirs["plain"], device="cpu", blip2_score="itm")
    assert isinstance(explicit.routes["image->text"], Blip2ItmBackend)
    assert isinstance(load_reranker(blip2_encoder).routes["text->image"], DualEncoderBackend)
    mapped = load_reranker({"text<->image": blip2_dirs["plain"]}, device="cpu", blip2_score="itc")
    assert mapped.routes["text->image"].name.startswith("blip2_itc(")
    with pytest.raises(InvalidInputError, match="blip2_score must be 'itm' or 'itc'"):
        load_reranker(blip2_dirs["plain"], device="cpu", blip2_score="cosine")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BLIP-2 feature encoder"):
        Blip2ItcBackend(object())  # type: ignore[arg-type]


def test_itc_scores_do_not_depend_on_batching(blip2_dirs) -> None:
    reranker = load_reranker(blip2_dirs["plain"], device="cpu", blip2_score="itc")
    images, texts = _images(), TEXTS
    before = reranker.forward_count
    wide = reranker.log_odds(texts[1], images, batch_size=5)
    assert reranker.forward_count - before == 2  # the text query once, then one batch
    narrow = reranker.log_odds(texts[1], images, batch_size=2)
    np.testing.assert_allclose(wide, narrow, atol=1e-6)
    np.testing.assert_allclose(
        reranker.log_odds(images[0], texts, batch_size=2), reranker.log_odds(images[0], texts, batch_size=5), atol=1e-6
    )
    best = reranker.rerank(texts[1], images, top_n=2)
    assert [item.backend for item in best] == [f"blip2_itc({blip2_dirs['plain']})"] * 2
    assert best[0].log_odds == pytest.approx(float(np.max(wide)), abs=1e-6)


def test_a_blip2_encoder_alias_in_load_reranker_is_a_blip2_checkpoint() -> None:
    with pytest.raises(mmrag.ModelNotAvailableError, match="Salesforce/blip2-itm-vit-g"):
        load_reranker("blip2-feature-vit-g", local_files_only=True, blip2_score="itc")
