"""mmrag.rerank: parity with plain transformers per backend, batching, routing, score semantics, errors.

Every model is a tiny random-weight model of the real architecture, saved with ``save_pretrained``
and loaded by path through the same ``from_pretrained`` code path hub ids use.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import mmrag
from mmrag.errors import ImageInputError, InvalidInputError, ModelNotAvailableError, UnsupportedModelError
from mmrag.rerank import (
    Calibration,
    DualEncoderBackend,
    RankedItem,
    UnsupportedPairError,
    get_reranker_preset,
    list_rerankers,
    load_reranker,
    reranker_kind,
)
from mmrag.rerank.dual import CROSS_MODAL_NEUTRAL_COSINE
from mmrag.testing import (
    PROBE_TEXTS,
    build_tiny_blip2_itm,
    build_tiny_blip_itm,
    build_tiny_cross_encoder,
    probe_images,
    text_kwargs,
)

ITM = ("blip", "blip2", "blip2_image_tokens")
CROSS = ("bert_ce", "xlmr_ce2")
TEXTS = list(PROBE_TEXTS[:7])
ATOL = 2e-5


# ------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rerank_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BLIP ITM, BLIP-2 ITM (both processor layouts) and cross-encoders (1 and 2 labels)."""
    root = tmp_path_factory.mktemp("tiny_rerankers")
    return {
        "blip": build_tiny_blip_itm(root / "blip"),
        "blip2": build_tiny_blip2_itm(root / "blip2"),
        "blip2_image_tokens": build_tiny_blip2_itm(root / "blip2_image_tokens", image_tokens=True),
        "bert_ce": build_tiny_cross_encoder(root / "bert_ce"),
        "xlmr_ce2": build_tiny_cross_encoder(root / "xlmr_ce2", model_type="xlm-roberta", num_labels=2),
    }


@pytest.fixture(scope="module")
def all_dirs(rerank_dirs: dict[str, Path], tiny_model_dirs: dict[str, Path]) -> dict[str, Path]:
    """Reranker dirs plus the session's tiny CLIP and SigLIP dual encoders."""
    return {**rerank_dirs, "clip": tiny_model_dirs["clip"], "siglip": tiny_model_dirs["siglip"]}


@pytest.fixture(scope="module")
def rerankers(all_dirs: dict[str, Path]) -> dict[str, mmrag.rerank.Reranker]:
    """One single-model reranker per tiny model, loaded by path on the CPU (batch_size 3)."""
    return {name: load_reranker(path, device="cpu", batch_size=3) for name, path in all_dirs.items()}


@pytest.fixture(scope="module")
def combined(all_dirs: dict[str, Path]) -> mmrag.rerank.Reranker:
    """BLIP for text<->image, the BERT cross-encoder for text->text, CLIP for image->image."""
    return load_reranker([all_dirs["blip"], all_dirs["bert_ce"], all_dirs["clip"]], device="cpu", batch_size=3)


def _images() -> list[Image.Image]:
    return probe_images()[:7]


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- references
def _itm_reference(path: Path, kind: str, images: list[Image.Image], texts: list[str]) -> np.ndarray:
    """ITM log-odds of (images[i], texts[i]) with the processor + model, as transformers documents."""
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval, BlipForImageTextRetrieval

    processor = AutoProcessor.from_pretrained(path)
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        if kind == "blip":
            logits = BlipForImageTextRetrieval.from_pretrained(path).eval()(**inputs, use_itm_head=True).itm_score
        else:
            model = Blip2ForImageTextRetrieval.from_pretrained(path).eval()
            logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
    probabilities = logits.softmax(-1)[:, 1].double().numpy()
    return np.log(probabilities) - np.log1p(-probabilities)


def _cross_encoder_reference(path: Path, query: str, passages: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    inputs = tokenizer([query] * len(passages), passages, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits.double()
    return (logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).numpy()


def _dual_reference(path: Path, family: str, texts: list[str], images: list[Image.Image]) -> Any:
    """The model's own (text x image) logits: scale * cos (+ bias for SigLIP)."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    inputs = processor(text=texts, images=images, return_tensors="pt", **text_kwargs(family))
    with torch.no_grad():
        out = model(**inputs)
    return out.logits_per_text.double().numpy(), float(model.logit_scale.detach().exp())


def _assert_discriminative(values: np.ndarray) -> None:
    """Parity on near-constant scores would prove nothing."""
    assert np.ptp(values) > 0.05
    assert len(np.unique(np.round(values, 6))) == len(values)


# -------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", ITM)
def test_itm_text_query_matches_transformers(name: str, all_dirs, rerankers, tmp_path) -> None:
    images = _images()
    path = tmp_path / "green.png"
    images[1].save(path)
    # Every kind of ImageInput at once: PIL, path string, encoded bytes, HWC uint8 array.
    candidates: list[Any] = [images[0], str(path), _png_bytes(images[2]), np.asarray(images[3]), *images[4:]]
    query = TEXTS[0]
    expected = _itm_reference(all_dirs[name], name, images, [query] * len(images))

    log_odds = rerankers[name].log_odds(query, candidates)
    scores = rerankers[name].score(query, candidates)

    _assert_discriminative(expected)
    np.testing.assert_allclose(log_odds, expected, atol=ATOL)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expected)), atol=ATOL)
    assert scores.dtype == np.float64 and scores.shape == (len(images),)


@pytest.mark.parametrize("name", ITM)
def test_itm_image_query_matches_transformers(name: str, all_dirs, rerankers) -> None:
    query = _images()[5]
    expected = _itm_reference(all_dirs[name], name, [query] * len(TEXTS), TEXTS)
    log_odds = rerankers[name].log_odds(query, TEXTS)
    _assert_discriminative(expected)
    np.testing.assert_allclose(log_odds, expected, atol=ATOL)


@pytest.mark.parametrize("name", CROSS)
def test_cross_encoder_matches_transformers(name: str, all_dirs, rerankers) -> None:
    query = "a photo of a red cat"
    expected = _cross_encoder_reference(all_dirs[name], query, TEXTS)
    log_odds = rerankers[name].log_odds(query, TEXTS)
    _assert_discriminative(expected)
    np.testing.assert_allclose(log_odds, expected, atol=ATOL)
    backend = rerankers[name].routes["text->text"]
    assert backend.num_labels == (2 if name == "xlmr_ce2" else 1)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_dual_encoder_matches_model_logits(family: str, all_dirs, rerankers) -> None:
    images = _images()[:5]
    texts = TEXTS[:5]
    logits, scale = _dual_reference(all_dirs[family], family, texts, images)
    reranker = rerankers[family]
    backend = reranker.routes["text->image"]
    assert isinstance(backend, DualEncoderBackend)
    # SigLIP: the model's own sigmoid probability; CLIP: its logits shifted to 0.5 at cosine 0.25.
    shift = 0.0 if family == "siglip" else -scale * CROSS_MODAL_NEUTRAL_COSINE
    assert backend.score_map("text->image").source == ("model" if family == "siglip" else "neutral_cosine=0.25")

    text_to_image = reranker.log_odds(texts[2], images)
    image_to_text = reranker.log_odds(images[3], texts)

    _assert_discriminative(logits[2])
    np.testing.assert_allclose(text_to_image, logits[2] + shift, atol=1e-4)
    np.testing.assert_allclose(image_to_text, logits[:, 3] + shift, atol=1e-4)


def _clip_with_config(all_dirs, tmp_path: Path, **extra: Any) -> Path:
    """A copy of the tiny CLIP whose config.json carries ``extra``."""
    import json

    target = tmp_path / "clip_calibrated"
    shutil.copytree(all_dirs["clip"], target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **extra}))
    return target


def test_dual_model_config_sets_its_own_neutral_cosine(all_dirs, rerankers, tmp_path: Path) -> None:
    path = _clip_with_config(all_dirs, tmp_path, mmrag_neutral_cosine={"text->image": 0.5, "image->text": 0.4})
    shipped = load_reranker(path, device="cpu")
    backend = shipped.routes["text->image"]
    assert backend.score_map("text->image").source == "neutral_cosine=0.5"
    assert backend.score_map("image->text").source == "neutral_cosine=0.4"
    assert backend.score_map("text->text").source == "neutral_cosine=0.75"  # pairs it does not name keep the default
    default = rerankers["clip"].routes["text->image"].score_map("text->image")
    scale = default.scale
    np.testing.assert_allclose(  # same cosines, 0.5 - 0.25 lower on the log-odds scale
        shipped.log_odds(TEXTS[0], _images()[:3]),
        rerankers["clip"].log_odds(TEXTS[0], _images()[:3]) - scale * 0.25, atol=1e-3,
    )  # fmt: skip  # aligned by hand
    # An explicit argument still wins over the model's value.
    overridden = DualEncoderBackend(mmrag.load_encoder(path, device="cpu"), neutral_cosine={"text->image": 0.1})
    assert overridden.score_map("text->image").source == "neutral_cosine=0.1"


def test_dual_bad_model_config_value_is_named(all_dirs, tmp_path: Path) -> None:
    path = _clip_with_config(all_dirs, tmp_path, mmrag_neutral_cosine={"text->picture": 0.5})
    with pytest.raises(ValueError, match=r"model config's mmrag_neutral_cosine.*'text->picture'"):
        load_reranker(path, device="cpu")


def test_dual_same_modality_pairs_use_neutral_cosine(tiny_encoders, rerankers) -> None:
    encoder = tiny_encoders["clip"]
    backend = rerankers["clip"].routes["text->text"]
    vectors = encoder.embed_texts(TEXTS[:4])
    cosines = vectors[1:] @ vectors[0]
    score_map = backend.score_map("text->text")
    assert score_map.bias == pytest.approx(-score_map.scale * 0.75)
    np.testing.assert_allclose(
        rerankers["clip"].log_odds(TEXTS[0], TEXTS[1:4]), cosines * score_map.scale + score_map.bias, atol=1e-3
    )


# ----------------------------------------------------------------- batching
@pytest.mark.parametrize(
    ("name", "query_is_image", "expected_calls"),
    [
        ("blip", False, 3),  # 7 images / batch 3
        ("blip", True, 4),  # 1 vision pass for the query + 3
        ("blip2", True, 4),
        ("bert_ce", False, 3),  # 7 passages / batch 3; the text query needs no model call
        ("siglip", False, 4),  # 1 query embedding + 3
    ],
)
def test_one_forward_per_batch(name: str, query_is_image: bool, expected_calls: int, rerankers) -> None:
    reranker = rerankers[name]
    if name == "bert_ce":
        query, candidates = "a cat", TEXTS
    elif query_is_image:
        query, candidates = _images()[0], TEXTS
    else:
        query, candidates = "a cat", _images()
    before = reranker.forward_count
    reranker.score(query, candidates)
    assert reranker.forward_count - before == expected_calls


@pytest.mark.parametrize("name", ["blip", "blip2"])
def test_image_query_goes_through_the_vision_tower_once(name: str, rerankers) -> None:
    model = rerankers[name].routes["image->text"].model
    seen: list[int] = []
    handle = model.vision_model.register_forward_hook(
        lambda module, args, output: seen.append(output.last_hidden_state.shape[0])
    )
    try:
        rerankers[name].score(_images()[0], TEXTS)  # 7 texts, batch_size 3
        assert seen == [1]
        seen.clear()
        rerankers[name].score("a cat", _images())  # 7 images
        assert seen == [3, 3, 1]
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["blip", "bert_ce", "clip"])
def test_scores_do_not_depend_on_batching_or_other_candidates(name: str, rerankers) -> None:
    reranker = rerankers[name]
    candidates: list[Any] = TEXTS if name == "bert_ce" else _images()
    whole = reranker.log_odds("a photo of a cat", candidates, batch_size=32)
    one_by_one = reranker.log_odds("a photo of a cat", candidates, batch_size=1)
    alone = reranker.log_odds("a photo of a cat", candidates[4:5])
    np.testing.assert_allclose(whole, one_by_one, atol=ATOL)
    np.testing.assert_allclose(alone, whole[4:5], atol=ATOL)


# ------------------------------------------------------------------ ranking
def test_rerank_sorts_best_first_and_cuts_top_n(rerankers) -> None:
    reranker = rerankers["blip"]
    images = _images()
    scores = reranker.score("a red circle", images)
    ranked = reranker.rerank("a red circle", images)
    assert [item.index for item in ranked] == list(np.argsort(-scores, kind="stable"))
    assert all(isinstance(item, RankedItem) for item in ranked)
    assert [item.score for item in ranked] == sorted(scores, reverse=True)
    assert all(item.candidate is images[item.index] and item.modality == "image" for item in ranked)
    assert ranked[0].score == pytest.approx(1 / (1 + np.exp(-ranked[0].log_odds)))
    assert [item.index for item in reranker.rerank("a red circle", images, top_n=2)] == [
        item.index for item in ranked[:2]
    ]
    assert reranker.rerank("a red circle", images, top_n=0) == []
    assert len(reranker.rerank("a red circle", images, top_n=100)) == len(images)
    with pytest.raises(ValueError, match="top_n"):
        reranker.rerank("a red circle", images, top_n=-1)


def test_confident_matches_keep_their_order_when_scores_round_to_one(rerankers) -> None:
    calibrated = mmrag.rerank.Reranker(
        rerankers["blip"].routes, calibration={"text->image": Calibration(scale=1000.0, bias=1000.0)}
    )
    ranked = calibrated.rerank("a red circle", _images())
    assert all(item.score == 1.0 for item in ranked)
    assert [item.index for item in ranked] == [
        item.index for item in rerankers["blip"].rerank("a red circle", _images())
    ]


def test_empty_candidates(rerankers) -> None:
    assert rerankers["blip"].score("a cat", []).shape == (0,)
    assert rerankers["blip"].rerank("a cat", []) == []


# ------------------------------------------------------------------ routing
def test_mixed_candidates_are_routed_per_pair_in_one_call(combined, rerankers) -> None:
    images = _images()
    candidates: list[Any] = [images[0], TEXTS[1], images[2], TEXTS[3], images[4]]
    log_odds = combined.log_odds("a photo of a cat", candidates)
    np.testing.assert_allclose(
        log_odds[[0, 2, 4]],
        rerankers["blip"].log_odds("a photo of a cat", [images[0], images[2], images[4]]),
        atol=ATOL,
    )
    np.testing.assert_allclose(
        log_odds[[1, 3]], rerankers["bert_ce"].log_odds("a photo of a cat", [TEXTS[1], TEXTS[3]]), atol=ATOL
    )
    ranked = combined.rerank("a photo of a cat", candidates)
    by_index = {item.index: item for item in ranked}
    assert {by_index[i].backend.split("(")[0] for i in (0, 2, 4)} == {"blip_itm"}
    assert {by_index[i].backend.split("(")[0] for i in (1, 3)} == {"cross_encoder"}
    assert [by_index[i].modality for i in range(5)] == ["image", "text", "image", "text", "image"]

    # An image query: image->image goes to the dual encoder, image->text to BLIP.
    image_query = combined.log_odds(images[6], [images[1], TEXTS[2]])
    np.testing.assert_allclose(image_query[0], rerankers["clip"].log_odds(images[6], [images[1]])[0], atol=ATOL)
    np.testing.assert_allclose(image_query[1], rerankers["blip"].log_odds(images[6], [TEXTS[2]])[0], atol=ATOL)


def test_list_form_prefers_joint_scorers_over_dual_encoders(combined) -> None:
    kinds = {pair: backend.kind for pair, backend in combined.routes.items()}
    assert kinds == {
        "text->text": "cross_encoder",
        "text->image": "blip_itm",
        "image->text": "blip_itm",
        "image->image": "dual",
    }
    assert combined.supports("image", "image") and len(combined.backends) == 3


def test_mapping_form_and_one_load_per_model(all_dirs) -> None:
    reranker = load_reranker({"text<->image": all_dirs["blip2"], "text->text": all_dirs["clip"]}, device="cpu")
    assert {pair: b.kind for pair, b in reranker.routes.items()} == {
        "text->text": "dual",
        "text->image": "blip2_itm",
        "image->text": "blip2_itm",
    }
    assert reranker.routes["text->image"] is reranker.routes["image->text"]
    assert not reranker.supports("image", "image")


def test_routing_errors(all_dirs, rerankers) -> None:
    with pytest.raises(ValueError, match="cannot score image->image"):
        load_reranker({"image->image": all_dirs["blip"]}, device="cpu")
    with pytest.raises(ValueError, match="unknown pair"):
        load_reranker({"text->video": all_dirs["blip"]}, device="cpu")
    with pytest.raises(ValueError, match="would serve no pair"):
        load_reranker([all_dirs["bert_ce"], all_dirs["xlmr_ce2"]], device="cpu")
    with pytest.raises(ValueError, match="at least one"):
        load_reranker([], device="cpu")

    blip = rerankers["blip"]
    before = blip.forward_count
    with pytest.raises(UnsupportedPairError, match=r"text->text pairs \(candidates 1, 3\)"):
        blip.score("a cat", [_images()[0], "a dog", _images()[1], "a bird"])
    assert blip.forward_count == before  # refused before any work


def test_bad_model_arguments_are_named(all_dirs, tmp_path) -> None:
    for model, needle in (
        (None, "model must be one reranker model (a name, a path, an Encoder or a RerankBackend)"),
        (42, "a list of them or a {pair: model} mapping, got 42"),
        ("", "model must be a preset alias"),
        ([all_dirs["blip"], None], "a reranker model must be a name, a path, an Encoder or a RerankBackend, got None"),
        ({"text->text": 3.5}, "got 3.5"),
    ):
        with pytest.raises(InvalidInputError) as info:
            load_reranker(model, device="cpu")
        assert needle in str(info.value)
    with pytest.raises(InvalidInputError, match="unknown pair") as info:
        load_reranker({"text->video": all_dirs["blip"]}, device="cpu")
    assert info.value.code == "invalid_input"


def test_unknown_loading_option_lists_the_fields(all_dirs) -> None:
    with pytest.raises(TypeError, match=r"unknown loading option\(s\) 'batchsize'; LoadOptions takes device, dtype"):
        load_reranker(all_dirs["bert_ce"], batchsize=4)
    options = mmrag.LoadOptions(device="cpu", batch_size=2)
    reranker = load_reranker(all_dirs["bert_ce"], options=options)
    assert reranker.batch_size == 2
    assert load_reranker(all_dirs["bert_ce"], options=options, batch_size=5).batch_size == 5


def test_remote_code_checkpoint_is_refused_by_its_config(tmp_path) -> None:
    target = tmp_path / "remote_reranker"
    target.mkdir()
    (target / "config.json").write_text(
        '{"model_type": "fancy_ranker", "auto_map": {"AutoConfig": "configuration_fancy.FancyConfig"}}'
    )
    with pytest.raises(UnsupportedModelError, match="model_type 'fancy_ranker'.*shipped with the checkpoint"):
        load_reranker(target, trust_remote_code=True)


# --------------------------------------------------------------- modalities
def test_modality_detection_and_overrides(rerankers, combined, tmp_path) -> None:
    path = tmp_path / "red.png"
    _images()[0].save(path)
    # An existing image file named by a string is an image; candidate_type="text" reads it as text.
    auto = combined.rerank("a cat", [str(path)])
    as_text = combined.rerank("a cat", [str(path)], candidate_type="text")
    assert auto[0].modality == "image" and as_text[0].modality == "text"
    # A query forced to be an image.
    forced = rerankers["blip"].log_odds(str(path), ["a red circle"], query_type="image")
    np.testing.assert_allclose(forced, rerankers["blip"].log_odds(_images()[0], ["a red circle"]), atol=ATOL)
    with pytest.raises(TypeError, match="candidate 1: a text must be a string"):
        combined.score("a cat", ["a dog", _images()[0]], candidate_type="text")
    with pytest.raises(ValueError, match="candidate_type"):
        combined.score("a cat", ["a dog"], candidate_type="video")
    with pytest.raises(TypeError, match="single str"):
        combined.score("a cat", "a dog")


def test_bad_candidate_image_names_its_index(combined) -> None:
    candidates: list[Any] = ["a dog", _images()[0], b"definitely not an image", "a bird"]
    with pytest.raises(ImageInputError) as info:
        combined.score("a cat", candidates)
    assert info.value.index == 2
    assert "image 2" in str(info.value)


def test_image_limits_apply_to_candidates(all_dirs, tmp_path) -> None:
    path = tmp_path / "red.png"
    _images()[0].save(path)
    strict = load_reranker(all_dirs["blip"], device="cpu", image_limits=mmrag.ImageLimits(allow_local_paths=False))
    with pytest.raises(ImageInputError, match="local file paths are disabled") as info:
        strict.score("a cat", [_images()[1], str(path)])
    assert info.value.index == 1


def test_concurrent_calls_match_sequential_ones(combined) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = _images()
    jobs: list[tuple[Any, list[Any]]] = [
        ("a photo of a cat", [images[0], TEXTS[1], images[2], TEXTS[3], images[4], TEXTS[5]]),
        (images[6], [TEXTS[0], images[1], TEXTS[2], TEXTS[4]]),
    ] * 3
    expected = [combined.log_odds(query, candidates) for query, candidates in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: combined.log_odds(*job), jobs))
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=ATOL)


def test_bad_query_image_is_named(combined) -> None:
    with pytest.raises(ImageInputError, match="query"):
        combined.score(b"not an image", ["a dog"])


# ------------------------------------------------------------ score semantics
def test_scores_are_probabilities_and_calibration_is_affine_in_log_odds(rerankers) -> None:
    images = _images()
    raw = rerankers["blip"].log_odds("a cat", images)
    calibrated = mmrag.rerank.Reranker(
        rerankers["blip"].routes, calibration={"text->image": Calibration(scale=2.0, bias=-1.0)}
    )
    # Two forward passes in float32: equal to float32 precision, not bit for bit.
    np.testing.assert_allclose(calibrated.log_odds("a cat", images), 2.0 * raw - 1.0, rtol=1e-5, atol=1e-5)
    scores = calibrated.score("a cat", images)
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(2.0 * raw - 1.0))), atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        Calibration(scale=0.0)


# ------------------------------------------------------------------ loading
def test_kind_comes_from_the_config(all_dirs) -> None:
    from transformers import AutoConfig, BertConfig, Blip2Config, BlipConfig

    kinds = {name: reranker_kind(AutoConfig.from_pretrained(path)) for name, path in all_dirs.items()}
    assert kinds == {
        "blip": "blip_itm",
        "blip2": "blip2_itm",
        "blip2_image_tokens": "blip2_itm",
        "bert_ce": "cross_encoder",
        "xlmr_ce2": "cross_encoder",
        "clip": "dual",
        "siglip": "dual",
    }
    with pytest.raises(UnsupportedModelError, match="without an image-text matching head"):
        reranker_kind(BlipConfig(architectures=["BlipForConditionalGeneration"]))
    with pytest.raises(UnsupportedModelError, match="Blip2ForImageTextRetrieval"):
        reranker_kind(Blip2Config(architectures=["Blip2ForConditionalGeneration"]))
    with pytest.raises(UnsupportedModelError, match="3-label"):
        reranker_kind(BertConfig(architectures=["BertForSequenceClassification"], num_labels=3))
    with pytest.raises(UnsupportedModelError, match="not a reranker"):
        reranker_kind(BertConfig(architectures=["BertModel"]))


def test_checkpoint_without_head_weights_is_refused(all_dirs, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    target = tmp_path / "headless"
    shutil.copytree(all_dirs["bert_ce"], target)
    weights = load_file(target / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier")}, target / "model.safetensors")
    with pytest.raises(UnsupportedModelError, match="no weights for 2 parameters.*classifier"):
        load_reranker(target, device="cpu")


def test_pickle_weights_are_refused_by_default(all_dirs, tmp_path) -> None:
    from transformers import BlipForImageTextRetrieval

    target = tmp_path / "bin_only"
    shutil.copytree(all_dirs["blip"], target, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(BlipForImageTextRetrieval.from_pretrained(all_dirs["blip"]).state_dict(), target / "pytorch_model.bin")
    with pytest.raises(ModelNotAvailableError, match="use_safetensors=False"):
        load_reranker(target, device="cpu")
    loaded = load_reranker(target, device="cpu", use_safetensors=False)
    np.testing.assert_allclose(
        loaded.log_odds("a cat", _images()[:2]),
        load_reranker(all_dirs["blip"], device="cpu").log_odds("a cat", _images()[:2]),
        atol=ATOL,
    )


def test_offline_presets_fail_with_a_download_hint() -> None:
    assert get_reranker_preset("BGE-Reranker-Base").hub_id == "BAAI/bge-reranker-base"
    assert {p.kind for p in list_rerankers()} == {"blip_itm", "blip2_itm", "cross_encoder"}
    with pytest.raises(ModelNotAvailableError, match="hf download Salesforce/blip-itm-base-coco"):
        load_reranker("blip-itm-base-coco", local_files_only=True)
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_reranker("./no/such/reranker")


def test_loaded_encoder_can_be_a_reranker(tiny_encoders) -> None:
    reranker = load_reranker(tiny_encoders["siglip"])
    assert set(reranker.routes) == {"text->text", "text->image", "image->text", "image->image"}
    vectors = tiny_encoders["siglip"].embed_images(_images()[:3])
    query = tiny_encoders["siglip"].embed_texts(["a cat"])[0]
    score_map = reranker.routes["text->image"].score_map("text->image")
    np.testing.assert_allclose(
        reranker.log_odds("a cat", _images()[:3]), (vectors @ query) * score_map.scale + score_map.bias, atol=1e-4
    )


def test_long_texts_are_truncated_not_fatal(rerankers) -> None:
    long_text = "a photo of a cat on a red sofa " * 60
    for name, query, candidates in (
        ("blip", long_text, _images()[:2]),
        ("blip2", _images()[0], [long_text, "a cat"]),
        ("xlmr_ce2", long_text, [long_text, "a cat"]),
    ):
        assert np.isfinite(rerankers[name].score(query, candidates)).all()


# ------------------------------------------------------- single-item candidates
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Path("a.jpg"), id="Path"),
        pytest.param(lambda: "a dog", id="str"),
        pytest.param(lambda: b"\x89PNG", id="bytes"),
        pytest.param(lambda: Image.new("RGB", (8, 8)), id="PIL"),
        pytest.param(lambda: np.zeros((8, 8, 3), dtype=np.uint8), id="ndarray"),
        pytest.param(lambda: io.BytesIO(b"\x89PNG"), id="BytesIO"),
    ],
)
def test_a_single_candidate_is_refused_the_same_way(make, combined) -> None:
    item = make()
    message = f"candidates must be a list of items, not a single {type(item).__name__}; wrap it in a list"
    before = combined.forward_count
    for method in (combined.score, combined.log_odds, combined.rerank):
        with pytest.raises(mmrag.NotASequenceError) as info:
            method("a cat", item)
        assert str(info.value) == message
    assert combined.forward_count == before


def test_unordered_candidates_are_refused(combined) -> None:
    with pytest.raises(mmrag.NotASequenceError, match=r"candidates must be a list of items, not a set \(order"):
        combined.rerank("a cat", {"a dog", "a bird"})
    ranked = combined.rerank("a cat", (text for text in ("a dog", "a bird")))  # any ordered iterable works
    assert sorted(item.candidate for item in ranked) == ["a bird", "a dog"]


def test_resolved_candidate_images_are_not_resolved_again(combined, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag.inputs import decode

    resolved = mmrag.resolve_images(_images()[:3])
    expected = combined.log_odds("a cat", _images()[:3])
    expected_query = combined.log_odds(_images()[0], ["a cat", _images()[1]])
    copies: list[object] = []
    real = decode.from_pil
    monkeypatch.setattr(decode, "from_pil", lambda *args: copies.append(args) or real(*args))
    np.testing.assert_allclose(combined.log_odds("a cat", resolved), expected, atol=ATOL)
    np.testing.assert_allclose(combined.log_odds(resolved[0], ["a cat", resolved[1]]), expected_query, atol=ATOL)
    assert copies == []
