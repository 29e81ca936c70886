"""mmrag.chroma: MultimodalEmbeddingFunction and ImageLoader inside real Chroma collections (demo model)."""

from __future__ import annotations

import ast
import gc
import importlib
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from chromadb.utils.data_loaders import ImageLoader as ChromaImageLoader
from chromadb.utils.embedding_functions import known_embedding_functions
from PIL import Image

import mmrag
from mmrag.chroma import ImageLoader, MultimodalEmbeddingFunction, clear_encoder_cache

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "mmrag" / "chroma"


def _client(path: Path) -> chromadb.ClientAPI:
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def ef(demo_encoder: mmrag.Encoder) -> MultimodalEmbeddingFunction:
    return MultimodalEmbeddingFunction(encoder=demo_encoder)


@pytest.fixture(scope="module")
def loaded_ef() -> MultimodalEmbeddingFunction:
    """A function that loads the demo model itself, with every recorded option set."""
    return MultimodalEmbeddingFunction("demo", device="cpu", dtype="fp32", batch_size=8, local_files_only=True)


@pytest.fixture
def photos(ef, shapes, tmp_path) -> chromadb.Collection:
    """The shapes added by URI through Chroma's own ImageLoader, in a cosine collection."""
    collection = _client(tmp_path / "db").create_collection(
        "photos", embedding_function=ef, data_loader=ChromaImageLoader(), configuration={"hnsw": {"space": "cosine"}}
    )
    collection.add(ids=[s.id for s in shapes], uris=[str(s.path) for s in shapes])
    return collection


# --------------------------------------------------------------------------- vectors
def test_vectors_equal_load_encoder_for_texts_and_images(loaded_ef, demo_encoder, shapes) -> None:
    texts = ["a red circle", "红色的圆形", "a small blue star on the left"]
    got_texts = loaded_ef(texts)
    got_images = loaded_ef([_pixels(s.path) for s in shapes[:4]])

    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (64,) for v in got_texts)
    cos_texts = np.sum(np.stack(got_texts) * demo_encoder.embed_texts(texts), axis=1)
    cos_images = np.sum(np.stack(got_images) * demo_encoder.embed_images([s.path for s in shapes[:4]]), axis=1)
    assert cos_texts.min() >= 0.9999 and cos_images.min() >= 0.9999
    assert np.allclose(np.linalg.norm(np.stack(got_images), axis=1), 1.0, atol=1e-5)


def test_a_mixed_list_keeps_its_order_with_one_forward_pass_per_modality(ef, demo_encoder, shapes) -> None:
    items = ["a red circle", _pixels(shapes[0].path), "a blue square", Image.open(shapes[1].path), shapes[2].path]
    before = demo_encoder.forward_count
    vectors = np.stack(ef(items))
    assert demo_encoder.forward_count == before + 2  # one text batch, one image batch
    texts = demo_encoder.embed_texts(["a red circle", "a blue square"])
    images = demo_encoder.embed_images([s.path for s in shapes[:3]])
    expected = np.stack([texts[0], images[0], texts[1], images[1], images[2]])
    assert np.allclose(vectors, expected, atol=1e-5)


def test_encoded_bytes_are_images_and_path_strings_are_documents(ef, demo_encoder, shapes) -> None:
    as_bytes, as_string = ef([shapes[0].path.read_bytes(), str(shapes[0].path)])
    assert np.allclose(as_bytes, demo_encoder.embed_images([shapes[0].path])[0], atol=1e-5)
    assert np.allclose(as_string, demo_encoder.embed_texts([str(shapes[0].path)])[0], atol=1e-5)


# --------------------------------------------------------------------------- Chroma end to end
def test_add_uris_then_query_texts_finds_the_red_circle(photos, ef, red_circle) -> None:
    config = photos.configuration_json
    assert config["hnsw"]["space"] == "cosine"
    assert config["embedding_function"] == {"type": "known", "name": "mmrag", "config": ef.get_config()}

    english = photos.query(query_texts=["a red circle"], n_results=3)
    chinese = photos.query(query_texts=["红色的圆形"], n_results=1)
    assert english["ids"][0][0] == red_circle.id and chinese["ids"][0][0] == red_circle.id
    # Cosine distance is 1 - the dot product of the unit vectors mmrag computes.
    query = ef.encoder.embed_texts(["a red circle"])[0]
    image = ef.encoder.embed_images([red_circle.path])[0]
    assert english["distances"][0][0] == pytest.approx(1 - float(query @ image), abs=1e-5)


def test_query_uris_and_query_images_find_the_same_image(photos, red_circle) -> None:
    by_uri = photos.query(query_uris=[str(red_circle.path)], n_results=2, include=["distances", "data"])
    by_array = photos.query(query_images=[_pixels(red_circle.path)], n_results=2)
    assert by_uri["ids"][0][0] == by_array["ids"][0][0] == red_circle.id
    assert by_uri["distances"][0][0] == pytest.approx(0, abs=1e-5)
    assert np.array_equal(by_uri["data"][0][0], _pixels(red_circle.path))


def test_add_images_and_documents_then_search_across_modalities(ef, shapes, red_circle, tmp_path) -> None:
    client = _client(tmp_path / "db")
    arrays = client.create_collection("arrays", embedding_function=ef)
    arrays.add(ids=[s.id for s in shapes], images=[_pixels(s.path) for s in shapes])
    assert arrays.configuration_json["hnsw"]["space"] == "cosine"  # the function's default_space()
    assert arrays.query(query_texts=["a red circle"], n_results=1)["ids"][0] == [red_circle.id]

    captions = client.create_collection("captions", embedding_function=ef)
    captions.add(ids=[s.id for s in shapes], documents=[s.caption for s in shapes])
    assert captions.query(query_texts=["a red circle"], n_results=1)["documents"][0] == [red_circle.caption]
    by_image = captions.query(query_images=[_pixels(red_circle.path)], n_results=1)
    assert by_image["documents"][0] == [red_circle.caption]


def test_mmrag_image_loader_reads_palette_images_as_rgb(ef, demo_encoder, red_circle, tmp_path) -> None:
    palette = tmp_path / "palette.png"
    Image.open(red_circle.path).quantize(16).save(palette)
    assert Image.open(palette).mode == "P"
    (pixels,) = ImageLoader()([str(palette)])
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8

    collection = _client(tmp_path / "db").create_collection("palette", embedding_function=ef, data_loader=ImageLoader())
    collection.add(ids=["palette"], uris=[str(palette)])
    stored = collection.get(ids=["palette"], include=["embeddings", "data"])
    expected = demo_encoder.embed_images([palette])[0]
    assert float(np.asarray(stored["embeddings"][0]) @ expected) >= 0.9999
    assert np.array_equal(stored["data"][0], pixels)
    assert ImageLoader()([None, str(palette)])[0] is None


# --------------------------------------------------------------------------- config and reopening
def test_registered_under_its_name_with_chroma_protocol_answers(ef) -> None:
    assert known_embedding_functions["mmrag"] is MultimodalEmbeddingFunction
    assert MultimodalEmbeddingFunction.name() == "mmrag"
    assert ef.default_space() == "cosine" and ef.supported_spaces() == ["cosine", "ip", "l2"]
    assert ef.is_legacy() is False
    assert repr(ef) == "MultimodalEmbeddingFunction(model='mmrag/demo', dim=64)"


def test_get_config_records_the_model_and_only_the_options_set(ef, loaded_ef, demo_encoder) -> None:
    assert ef.get_config() == {"model": "mmrag/demo", "batch_size": demo_encoder.batch_size, "local_files_only": False}
    config = loaded_ef.get_config()
    assert config == {
        "model": "mmrag/demo",
        "batch_size": 8,
        "local_files_only": True,
        "device": "cpu",
        "dtype": "float32",
    }
    assert json.loads(json.dumps(config)) == config

    rebuilt = MultimodalEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt.encoder is loaded_ef.encoder  # a live function's encoder is reused, not loaded again
    assert rebuilt.encoder.batch_size == 8


def test_build_from_config_loads_each_model_once_until_the_cache_is_cleared() -> None:
    config = {"model": "mmrag/demo", "batch_size": 3, "local_files_only": True, "revision": "main"}
    first = MultimodalEmbeddingFunction.build_from_config(config).encoder
    second = MultimodalEmbeddingFunction.build_from_config(config).encoder
    assert first is second and first.batch_size == 3
    released = weakref.ref(first)
    del first, second
    clear_encoder_cache()
    gc.collect()
    assert released() is None


def test_reopened_in_the_same_process_without_embedding_function_uses_the_same_encoder(
    photos, demo_encoder, red_circle, tmp_path
) -> None:
    reopened = _client(tmp_path / "db").get_collection("photos")
    before = demo_encoder.forward_count
    assert reopened.query(query_texts=["a red circle"], n_results=1)["ids"][0] == [red_circle.id]
    assert demo_encoder.forward_count == before + 1


def test_reopened_in_a_fresh_process_embeds_with_the_stored_model_offline(photos, ef, red_circle, tmp_path) -> None:
    by_text = photos.query(query_texts=["a red circle"], n_results=3)
    by_uri = photos.query(query_uris=[str(red_circle.path)], n_results=3)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    script = Path(__file__).with_name("reopen_photos.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "db"), str(red_circle.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # Without `import mmrag.chroma` Chroma cannot rebuild the function: every query fails loudly.
    assert not report["registered_before"]
    assert report["fallback"].startswith("ValueError: Embedding function mmrag not found")
    # After it, the stored config rebuilds the same model, and the results match this process's.
    assert report["registered_after"] and report["rebuilt_type"] == "MultimodalEmbeddingFunction"
    assert report["rebuilt_config"] == ef.get_config()
    for theirs, ours in ((report["by_text"], by_text), (report["by_uri"], by_uri)):
        assert theirs["ids"] == ours["ids"][0]
        assert theirs["distances"] == pytest.approx(ours["distances"][0], abs=1e-5)
    assert report["by_text"]["ids"][0] == red_circle.id
    assert report["network_attempts"] == []


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [None, 42, {"text": "a"}, ["nested"]], ids=["None", "int", "dict", "list"])
def test_an_item_that_is_neither_text_nor_image_is_named_by_index(ef, bad) -> None:
    with pytest.raises(mmrag.InvalidInputError, match=r"^input 1: expected a document \(str\) or an image") as info:
        ef(["a red circle", bad])
    assert type(bad).__name__ in str(info.value)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"not an image", "not a recognised image format"),
        (np.zeros((8, 8, 3), dtype=np.float64), "dtype float64"),
        (np.zeros(8, dtype=np.uint8), "shape (8,)"),
    ],
    ids=["bytes", "float-array", "1d-array"],
)
def test_an_undecodable_image_is_named_by_its_index_in_the_whole_list(ef, shapes, bad, reason) -> None:
    with pytest.raises(mmrag.ImageInputError) as info:
        ef(["a red circle", _pixels(shapes[0].path), "a blue square", bad])
    assert info.value.index == 3 and str(info.value).startswith("image 3")
    assert reason in str(info.value)


def test_chroma_add_passes_the_image_error_through(ef, shapes, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    collection = _client(tmp_path / "db").create_collection("broken", embedding_function=ef, data_loader=ImageLoader())
    with pytest.raises(mmrag.ImageInputError, match="image 1") as info:
        collection.add(ids=["a", "b"], uris=[str(shapes[0].path), str(broken)])
    assert info.value.index == 1 and info.value.code == "invalid_image"
    with pytest.raises(mmrag.ImageInputError, match="dtype float64"):
        collection.add(ids=["a", "b"], images=[_pixels(shapes[0].path), np.zeros((8, 8, 3))])
    assert collection.count() == 0


def test_a_single_item_or_an_empty_list_is_refused(ef) -> None:
    with pytest.raises(mmrag.NotASequenceError, match="wrap it in a list"):
        ef("a red circle")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(mmrag.InvalidInputError, match="input is empty"):
        ef([])


def test_constructor_refuses_an_encoder_with_loading_options(demo_encoder) -> None:
    with pytest.raises(mmrag.InvalidInputError, match="not both .*model"):
        MultimodalEmbeddingFunction("demo", encoder=demo_encoder)
    with pytest.raises(mmrag.InvalidInputError, match="not both .*device"):
        MultimodalEmbeddingFunction(encoder=demo_encoder, device="cpu")
    with pytest.raises(mmrag.InvalidInputError, match="must be a mmrag.Encoder"):
        MultimodalEmbeddingFunction(encoder="demo")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="unknown loading option"):
        MultimodalEmbeddingFunction("demo", colour="red")  # type: ignore[call-arg]  # the mistake under test


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "'model' must be a non-empty string"),
        ({"model": "mmrag/demo", "trust_remote_code": True}, "'trust_remote_code' is not restored"),
        ({"model": "mmrag/demo", "use_safetensors": False}, "'use_safetensors' is not restored"),
        ({"model": "mmrag/demo", "colour": "red"}, "unknown config key 'colour'"),
        ({"model": "mmrag/demo", "batch_size": 0}, "batch_size must be an integer"),
        ({"model": "mmrag/demo", "dtype": "int4"}, "unknown dtype"),
        ({"model": "mmrag/demo", "device": 0}, "'device' must be a string"),
    ],
)
def test_a_bad_stored_config_is_refused_before_loading(config, message) -> None:
    with pytest.raises(mmrag.InvalidInputError, match=message):
        MultimodalEmbeddingFunction.build_from_config(config)


def test_a_collection_cannot_switch_models(ef) -> None:
    ef.validate_config_update(ef.get_config(), {**ef.get_config(), "batch_size": 8})
    with pytest.raises(mmrag.InvalidInputError, match="model cannot change"):
        ef.validate_config_update(ef.get_config(), {**ef.get_config(), "model": "openai/clip-vit-base-patch32"})


# --------------------------------------------------------------------------- layering
def _mmrag_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [
        (node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    found += [(alias.name, "") for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    return [(module, name) for module, name in found if module and module.startswith("mmrag")]


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_adapter_imports_only_public_core_names(path) -> None:
    core = {"mmrag", "mmrag.inputs", "mmrag.encoders", "mmrag.options", "mmrag.errors"}
    for module, name in _mmrag_imports(path):
        if module.startswith("mmrag.chroma"):
            continue
        assert module in core, f"{path.name} imports {module}"
        assert name in importlib.import_module(module).__all__, f"{path.name} imports {module}.{name}"
