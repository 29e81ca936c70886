"""BLIP-2 features: parity with the model's own submodules, batching, loading, store and dual-reranker use.

The model is a tiny random ``Blip2ForImageTextRetrieval`` (``mmrag.testing.build_tiny_blip2_itm``:
randomised query tokens, ``use_qformer_text_input=True``) saved with ``save_pretrained`` and loaded
by path, the same ``from_pretrained`` path hub ids take.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmrag
from mmrag.encoders.blip2 import Blip2FeatureEncoder
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "a red circle",
    "a small blue square on the left of a big green triangle",
    "cat",
    "two dogs play on the beach at sunset",
    "a photo of a cat " * 40,  # longer than the Q-Former's 64 positions: truncated, not an error
]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (64, 64), (23, 57), (100, 80), (32, 32)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _model_and_processor(path: Path):
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    return Blip2ForImageTextRetrieval.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def _reference_texts(path: Path, texts: list[str]) -> np.ndarray:
    """embeddings -> Q-Former (text alone) -> text_projection of [CLS], one text at a time."""
    model, processor = _model_and_processor(path)
    limit = min(processor.tokenizer.model_max_length, model.config.qformer_config.max_position_embeddings)
    rows = []
    with torch.no_grad():
        for text in texts:
            tokens = processor.tokenizer([text], truncation=True, max_length=limit, return_tensors="pt")
            hidden = model.qformer(
                query_embeds=model.embeddings(input_ids=tokens["input_ids"]),
                query_length=0,
                attention_mask=tokens["attention_mask"],
            ).last_hidden_state
            rows.append(torch.nn.functional.normalize(model.text_projection(hidden[:, 0, :]), dim=-1))
    return torch.cat(rows).numpy()


def _reference_query_features(path: Path, images: list[Image.Image]) -> np.ndarray:
    """vision_model -> Q-Former with query_tokens -> vision_projection, normalised per query."""
    model, processor = _model_and_processor(path)
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=pixels).last_hidden_state
        hidden = model.qformer(
            query_embeds=model.query_tokens.expand(len(images), -1, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
        ).last_hidden_state
        return torch.nn.functional.normalize(model.vision_projection(hidden), dim=-1).numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -------------------------------------------------------------------- parity
def test_loads_as_the_blip2_family(blip2_encoder) -> None:
    assert isinstance(blip2_encoder, Blip2FeatureEncoder)
    assert blip2_encoder.family == "blip2" and blip2_encoder.signature["family"] == "blip2"
    assert blip2_encoder.dim == 16  # the tiny config's image_text_hidden_size
    assert blip2_encoder.num_query_tokens == 4
    assert blip2_encoder.device.type == "cpu" and blip2_encoder.dtype == torch.float32
    assert "blip-2" in mmrag.encoders.supported_model_types()
    assert "queries=4,pool=mean" in blip2_encoder.preprocessing


def test_text_vectors_match_the_models_own_modules(tiny_blip2_dir, blip2_encoder) -> None:
    reference = _reference_texts(tiny_blip2_dir, TEXTS)
    vectors = blip2_encoder.embed_texts(TEXTS)  # batch_size 3: texts of different lengths share batches
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.min(np.sum(vectors * reference, axis=1)) >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert np.max(vectors[0] @ vectors[1:].T) < 0.99  # the texts are told apart


def test_image_vector_is_the_normalised_mean_of_the_normalised_queries(tiny_blip2_dir, blip2_encoder) -> None:
    images = _images()
    per_query = _reference_query_features(tiny_blip2_dir, images)  # (5, 4, 16)
    reference = _unit(per_query.mean(axis=1))
    vectors = blip2_encoder.embed_images(images)
    assert vectors.dtype == np.float32 and vectors.shape == (len(images), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.min(np.sum(vectors * reference, axis=1)) >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    # Randomised query tokens: every query reads the image differently, and images differ.
    query_cosines = np.einsum("qd,pd->qp", per_query[0], per_query[0])
    assert np.max(query_cosines[~np.eye(4, dtype=bool)]) < 0.99
    assert np.max(vectors[0] @ vectors[1:].T) < 0.99
    with torch.no_grad():
        features = blip2_encoder.query_features(blip2_encoder.prepare_images(images))
    np.testing.assert_allclose(features.numpy(), per_query, atol=1e-5)


def test_vectors_equal_the_retrieval_models_itc_outputs(tiny_blip2_dir, blip2_encoder) -> None:
    model, processor = _model_and_processor(tiny_blip2_dir)
    images, texts = _images()[:2], TEXTS[:2]
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, use_image_text_matching_head=False)
    np.testing.assert_allclose(blip2_encoder.embed_texts(texts), out.text_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(blip2_encoder.embed_images(images), _unit(out.image_embeds.numpy().mean(1)), atol=1e-5)


# ------------------------------------------------------------------ batching
def test_batches_equal_one_item_at_a_time(blip2_encoder) -> None:
    batched_texts = blip2_encoder.embed_texts(TEXTS, batch_size=5)
    single_texts = np.concatenate([blip2_encoder.embed_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(batched_texts, single_texts, atol=1e-6)
    images = _images()
    before = blip2_encoder.forward_count
    batched_images = blip2_encoder.embed_images(images, batch_size=2)
    assert blip2_encoder.forward_count - before == 3  # ceil(5 / 2) forward passes
    single_images = np.concatenate([blip2_encoder.embed_images([image]) for image in images])
    np.testing.assert_allclose(batched_images, single_images, atol=1e-6)


def test_fused_is_the_normalised_sum(blip2_encoder) -> None:
    images, texts = _images()[:3], TEXTS[:3]
    pair = blip2_encoder.embed_fused(images, texts)
    np.testing.assert_allclose(pair.image, blip2_encoder.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(pair.text, blip2_encoder.embed_texts(texts), atol=1e-6)
    np.testing.assert_allclose(pair.fused, _unit(pair.image + pair.text), atol=1e-6)


def test_float16_keeps_float32_unit_output(tiny_blip2_dir, blip2_encoder) -> None:
    half = mmrag.load_encoder(tiny_blip2_dir, device="cpu", dtype="fp16")  # the GPU default, mixed with fp32
    assert half.dtype == torch.float16 and half.model.text_projection.weight.dtype == torch.float16
    assert half.model.qformer.layernorm.weight.dtype == torch.float32  # transformers keeps the Q-Former in fp32
    for got, want in (
        (half.embed_texts(TEXTS[:3]), blip2_encoder.embed_texts(TEXTS[:3])),
        (half.embed_images(_images()[:3]), blip2_encoder.embed_images(_images()[:3])),
    ):
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert np.min(np.sum(got * want, axis=1)) > 0.999


# ------------------------------------------------------------------- loading
def test_preset_points_at_the_hub_checkpoint_and_fails_offline_with_a_hint() -> None:
    preset = mmrag.encoders.get_preset("blip2-feature-vit-g")
    assert preset is not None
    assert (preset.hub_id, preset.family, preset.dim) == ("Salesforce/blip2-itm-vit-g", "blip2", 256)
    with pytest.raises(ModelNotAvailableError, match="Salesforce/blip2-itm-vit-g"):
        mmrag.load_encoder("blip2-feature-vit-g", local_files_only=True)


def test_other_blip2_architectures_are_refused(tiny_blip2_dir, tmp_path) -> None:
    target = tmp_path / "captioning"
    shutil.copytree(tiny_blip2_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["architectures"] = ["Blip2ForConditionalGeneration"]
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="Blip2ForConditionalGeneration.*Blip2ForImageTextRetrieval"):
        mmrag.load_encoder(target, device="cpu")


def test_missing_projection_weights_are_refused(tiny_blip2_dir, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    target = tmp_path / "no_projection"
    shutil.copytree(tiny_blip2_dir, target)
    weights = load_file(target / "model.safetensors")
    kept = {key: value for key, value in weights.items() if not key.startswith("text_projection")}
    save_file(kept, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnsupportedModelError, match="no weights for 2 parameters.*text_projection"):
        mmrag.load_encoder(target, device="cpu")


# ------------------------------------------------------------ store, reranker
def test_runs_through_the_store(blip2_encoder, tmp_path) -> None:
    store = mmrag.MultimodalStore(blip2_encoder, path=tmp_path / "db")
    try:
        images = _images()
        store.add_texts(TEXTS[:4])
        store.add_images(images)
        hits = store.search(images[2], k=3, modality="image")
        assert hits[0].modality == "image" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        text_hits = store.search(TEXTS[1], k=4, modality="text")
        assert text_hits[0].text == TEXTS[1]
        expected = blip2_encoder.embed_texts(TEXTS[:4]) @ blip2_encoder.embed_texts([TEXTS[1]])[0]
        np.testing.assert_allclose(
            sorted((h.score for h in text_hits), reverse=True), np.sort(expected)[::-1], atol=1e-4
        )
        assert len(store.search("a red circle", k=20)) == 9  # both modalities, merged
    finally:
        store.close()


def test_a_loaded_encoder_reranks_as_a_dual_encoder(blip2_encoder) -> None:
    reranker = mmrag.load_reranker(blip2_encoder)
    assert set(reranker.routes) == {"text->text", "text->image", "image->text", "image->image"}
    backend = reranker.routes["text->image"]
    assert backend.name.startswith("dual:blip2(")
    images = _images()[:3]
    cosines = blip2_encoder.embed_images(images) @ blip2_encoder.embed_texts(["a cat"])[0]
    score_map = backend.score_map("text->image")
    np.testing.assert_allclose(
        reranker.log_odds("a cat", images), cosines * score_map.scale + score_map.bias, atol=1e-4
    )
