"""Visualized-BGE: parity with FlagEmbedding's original code, safe .pth loading, presets, store.

The golden vectors come from the ORIGINAL ``research/visual_bge`` code run on a tiny random-weight model
(``golden/visualized_bge/make_golden.py``, in its own environment); here the same ``.pth`` is loaded through
``mmrag.load_encoder`` and must give the same vectors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mmrag
from mmrag.encoders.presets import get_preset

GOLDEN = Path(__file__).parent / "golden" / "visualized_bge"
IMAGES = GOLDEN / "images"
TEXT_MODELS = {"base_en": GOLDEN / "tiny-bge-base-en-v1.5", "m3": GOLDEN / "tiny-bge-m3"}  # BERT, XLM-RoBERTa
PTH = GOLDEN / "tiny_base_en.pth"
TEXT_MODEL = TEXT_MODELS["base_en"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=sorted(TEXT_MODELS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def encoders() -> dict[str, Any]:
    return {
        name: mmrag.load_encoder(GOLDEN / f"tiny_{name}.pth", text_model=str(path), device="cpu", batch_size=4)
        for name, path in TEXT_MODELS.items()
    }


@pytest.fixture(scope="module")
def goldens() -> dict[str, dict[str, np.ndarray]]:
    loaded = {}
    for name in TEXT_MODELS:
        with np.load(GOLDEN / f"golden_{name}.npz") as data:
            loaded[name] = {key: data[key] for key in data.files}
    return loaded


@pytest.fixture(scope="module")
def encoder(encoders: dict[str, Any], variant: str) -> Any:
    return encoders[variant]


@pytest.fixture(scope="module")
def golden(goldens: dict[str, dict[str, np.ndarray]], variant: str) -> dict[str, np.ndarray]:
    return goldens[variant]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_loads_as_visualized_bge(encoder: Any, variant: str) -> None:
    assert encoder.family == "visualized_bge"
    assert encoder.dtype == torch.float32
    assert encoder.model_id == str((GOLDEN / f"tiny_{variant}.pth").resolve())
    assert encoder.signature["family"] == "visualized_bge"
    text_model = encoder.model.text_model
    assert encoder.dim == text_model.config.hidden_size == {"base_en": 64, "m3": 32}[variant]
    assert type(text_model).__name__ == {"base_en": "BertModel", "m3": "XLMRobertaModel"}[variant]
    assert encoder.model.image_tokens == {"base_en": 14 * 14, "m3": 16 * 16}[variant]  # B/16 and L/14 at 224 px


def test_text_vectors_are_the_text_models_cls_output(encoder: Any) -> None:
    # Text alone is plain BGE: the text model's own [CLS] output, as transformers computes it.
    batch = encoder.tokenizer(["a red circle", "shoe"], padding=True, return_tensors="pt")
    with torch.no_grad():
        cls = encoder.model.text_model(**batch).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1).numpy()
    np.testing.assert_allclose(encoder.embed_texts(["a red circle", "shoe"]), expected, atol=1e-5)


def test_tiny_model_tells_inputs_apart(golden: dict[str, np.ndarray]) -> None:
    # Parity would prove nothing if every input gave nearly the same vector.
    for key in ("text", "image", "fused"):
        cos = golden[key] @ golden[key].T
        assert (cos - 2 * np.eye(len(cos))).max() < 0.97, key


def test_texts_match_the_original(encoder: Any, golden: dict[str, np.ndarray]) -> None:
    vectors = encoder.embed_texts(list(golden["texts"]))
    assert vectors.dtype == np.float32
    assert _cos(vectors, golden["text"]).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_images_match_the_original(encoder: Any, golden: dict[str, np.ndarray]) -> None:
    names = list(golden["image_names"])
    cos = _cos(encoder.embed_images([IMAGES / n for n in names]), golden["image"])
    square = np.array([n.startswith("square") for n in names])
    assert square.any() and (~square).any()
    assert cos[square].min() >= 0.9999  # 224 px: no resizing
    assert cos[~square].min() >= 0.999  # resized and cropped


def test_composed_pairs_match_the_original(encoder: Any, golden: dict[str, np.ndarray]) -> None:
    images = [IMAGES / n for n in golden["pair_images"]]
    texts = list(golden["pair_texts"])
    pairs = encoder.embed_fused(images, texts)
    square = np.array([n.startswith("square") for n in golden["pair_images"]])
    cos = _cos(pairs.fused, golden["fused"])
    assert cos[square].min() >= 0.9999 and cos[~square].min() >= 0.999
    np.testing.assert_allclose(pairs.image, encoder.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(pairs.text, encoder.embed_texts(texts), atol=1e-6)
    # The joint encoding is not the sum of the parts (that is what dual encoders do).
    summed = pairs.image + pairs.text
    assert _cos(pairs.fused, summed).max() < 0.99


def test_batches_give_the_vectors_of_one_at_a_time(encoder: Any, golden: dict[str, np.ndarray]) -> None:
    texts = list(golden["texts"])  # 1 to 18 tokens: padded together in one batch
    together = encoder.embed_texts(texts, batch_size=len(texts))
    alone = np.concatenate([encoder.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    images = [IMAGES / n for n in golden["pair_images"]]
    fused = encoder.embed_fused(images, texts, batch_size=len(texts)).fused
    fused_alone = np.concatenate([encoder.embed_fused([i], [t]).fused for i, t in zip(images, texts)])
    np.testing.assert_allclose(fused, fused_alone, atol=1e-5)


def test_runs_through_the_store(encoders: dict[str, Any], tmp_path: Path, goldens: dict[str, Any]) -> None:
    encoder, golden = encoders["base_en"], goldens["base_en"]
    names = list(golden["image_names"])
    with mmrag.MultimodalStore(encoder, path=tmp_path / "db") as store:
        store.add_images([IMAGES / n for n in names])
        store.add_texts(list(golden["texts"]))
        hits = store.search(IMAGES / names[1], k=2, modality="image")
        assert Path(hits[0].source).name == names[1]
        text_hits = store.search(str(golden["texts"][2]), k=1, modality="text")
        assert text_hits[0].text == golden["texts"][2]


def test_a_pickle_that_needs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    torch.save({"bge_encoder.weight": torch.zeros(1), "payload": Payload()}, evil)
    with pytest.raises(mmrag.UnsupportedModelError, match="needs Python code to unpickle"):
        mmrag.load_encoder(evil, text_model=str(TEXT_MODEL))
    assert not marker.exists()


def test_other_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(mmrag.UnsupportedModelError, match="not a Visualized-BGE checkpoint"):
        mmrag.load_encoder(foreign, text_model=str(TEXT_MODEL))
    with pytest.raises(mmrag.ModelNotAvailableError, match="does not exist"):
        mmrag.load_encoder(tmp_path / "missing.pth", text_model=str(TEXT_MODEL))


def test_a_local_pth_needs_its_text_model(tmp_path: Path) -> None:
    copy = tmp_path / "renamed.pth"
    copy.write_bytes(PTH.read_bytes())
    with pytest.raises(mmrag.InvalidInputError, match="text_model="):
        mmrag.load_encoder(copy)


def test_presets_name_the_checkpoint_file_and_text_model() -> None:
    base, m3 = get_preset("bge-visualized-base-en"), get_preset("bge-visualized-m3")
    assert base is not None and m3 is not None
    assert (base.hub_id, base.weights_file, base.text_model, base.dim) == (
        "BAAI/bge-visualized",
        "Visualized_base_en_v1.5.pth",
        "BAAI/bge-base-en-v1.5",
        768,
    )
    assert (m3.hub_id, m3.weights_file, m3.text_model, m3.dim) == (
        "BAAI/bge-visualized",
        "Visualized_m3.pth",
        "BAAI/bge-m3",
        1024,
    )
    assert base.family == m3.family == "visualized_bge"


def test_a_preset_offline_says_how_to_download() -> None:
    with pytest.raises(mmrag.ModelNotAvailableError) as info:
        mmrag.load_encoder("bge-visualized-base-en", local_files_only=True)
    assert "hf download BAAI/bge-visualized Visualized_base_en_v1.5.pth" in str(info.value)
    assert "text_model=" in str(info.value)


def test_a_preset_downloads_its_file_with_the_callers_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[tuple[Any, ...]] = []

    def fake_download(repo_id: str, filename: str, *, revision: str | None, local_files_only: bool) -> str:
        calls.append((repo_id, filename, revision, local_files_only))
        return str(PTH)  # the hub file, already "downloaded"

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    encoder = mmrag.load_encoder(
        "bge-visualized-base-en", text_model=TEXT_MODEL, revision="abc123", local_files_only=True, device="cpu"
    )
    assert calls == [("BAAI/bge-visualized", "Visualized_base_en_v1.5.pth", "abc123", True)]
    assert encoder.model_id == "BAAI/bge-visualized/Visualized_base_en_v1.5.pth"
    # The recorded id loads the same checkpoint again (what a store hands back to load_encoder).
    again = mmrag.load_encoder(encoder.model_id, text_model=TEXT_MODEL, device="cpu")
    assert calls[-1] == ("BAAI/bge-visualized", "Visualized_base_en_v1.5.pth", None, False)
    np.testing.assert_allclose(again.embed_texts(["dog"]), encoder.embed_texts(["dog"]), atol=1e-6)


def test_a_known_file_name_implies_its_text_model(tmp_path: Path) -> None:
    named = tmp_path / "Visualized_base_en_v1.5.pth"
    named.write_bytes(PTH.read_bytes())
    # The implied text model is BAAI/bge-base-en-v1.5: offline and not cached, so it names that model.
    with pytest.raises(mmrag.ModelNotAvailableError, match="bge-base-en-v1.5"):
        mmrag.load_encoder(named, local_files_only=True)


def test_os_fspath_paths_and_strings_load_alike(encoders: dict[str, Any]) -> None:
    encoder = encoders["base_en"]
    again = mmrag.load_encoder(os.fspath(PTH), text_model=TEXT_MODEL, device="cpu")
    np.testing.assert_allclose(again.embed_texts(["shoe"]), encoder.embed_texts(["shoe"]), atol=1e-6)
