"""The LlamaIndex adapter: LocalMultiModalEmbedding and MultimodalStoreRetriever, on real Chroma."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("llama_index.core")
pytest.importorskip("llama_index.vector_stores.chroma")

import chromadb
from chromadb.config import Settings as ChromaSettings
from llama_index.core import QueryBundle, SimpleDirectoryReader, StorageContext
from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

import mmrag
from mmrag.llama_index import LocalMultiModalEmbedding, MultimodalStoreRetriever, hit_to_node
from mmrag.store import Hit, MultimodalStore
from mmrag.testing import speckled_image

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "llama_index_pipeline.py"
DEMO_MODEL = REPO / "src" / "mmrag" / "models" / "demo" / "config.json"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
_image = functools.partial(speckled_image, size=48, dots=40)  # 48 px, 40 random dots
TEXTS = {"sea.txt": "something about the sea", "grass.txt": "green grass in spring", "fire.txt": "a red fire truck"}
COSINE = {"hnsw": {"space": "cosine"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mixed folder: four PNG images and three .txt files."""
    root = tmp_path_factory.mktemp("mixed")
    for seed, (name, colour) in enumerate(COLOURS.items()):
        _image(colour, seed).save(root / f"{name}.png")
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def embed(clip_encoder) -> LocalMultiModalEmbedding:
    """The adapter around the session's tiny CLIP encoder (batch_size 4)."""
    model = LocalMultiModalEmbedding(encoder=clip_encoder, batch_wait_ms=20)
    yield model
    model.close()


def _forwards(encoder, action) -> tuple[object, int]:
    before = encoder.forward_count
    result = action()
    return result, encoder.forward_count - before


# ------------------------------------------------------------------ embedding
def test_embedding_is_a_llama_index_component(embed: LocalMultiModalEmbedding, clip_encoder) -> None:
    assert isinstance(embed, MultiModalEmbedding)
    assert LocalMultiModalEmbedding.class_name() == "LocalMultiModalEmbedding"
    assert embed.model == embed.model_name == clip_encoder.model_id
    assert embed.embed_batch_size == clip_encoder.batch_size == 4  # taken from the encoder
    assert embed.encoder is clip_encoder
    for name in ("model", "device", "dtype", "embed_batch_size", "local_files_only", "batch_wait_ms"):
        assert LocalMultiModalEmbedding.model_fields[name].description, name
    assert embed.to_dict()["class_name"] == "LocalMultiModalEmbedding"
    assert "_encoder" not in embed.to_dict()


def test_vectors_match_the_encoder_as_python_floats(embed, clip_encoder, folder) -> None:
    text = embed.get_text_embedding("a red circle")
    query = embed.get_query_embedding("a red circle")
    assert type(text) is list and all(type(x) is float for x in text) and len(text) == clip_encoder.dim
    np.testing.assert_allclose(text, clip_encoder.embed_texts(["a red circle"])[0], atol=1e-6)
    assert query == text

    path = str(folder / "blue.png")
    expected = clip_encoder.embed_images([path])[0]
    from_path = embed.get_image_embedding(path)
    from_bytes = embed.get_image_embedding(io.BytesIO((folder / "blue.png").read_bytes()))
    from_pil = embed.get_image_embedding(Image.open(path))  # anything mmrag resolves
    assert type(from_path) is list and all(type(x) is float for x in from_path)
    for vector in (from_path, from_bytes, from_pil):
        np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_batch_hooks_run_one_forward_per_embed_batch_size(clip_encoder, folder) -> None:
    embed = LocalMultiModalEmbedding(encoder=clip_encoder, embed_batch_size=8)
    texts = [f"text number {i}" for i in range(10)]
    vectors, forwards = _forwards(clip_encoder, lambda: embed.get_text_embedding_batch(texts))
    assert len(vectors) == 10 and forwards == 2  # 8 + 2, although the encoder's own batch_size is 4
    np.testing.assert_allclose(vectors, clip_encoder.embed_texts(texts), atol=1e-6)

    images = [str(folder / f"{name}.png") for name in COLOURS] * 2
    vectors, forwards = _forwards(clip_encoder, lambda: embed.get_image_embedding_batch(images))
    assert len(vectors) == 8 and forwards == 1
    assert embed._get_image_embeddings([]) == []


def test_async_calls_are_coalesced_off_the_event_loop(embed, clip_encoder, folder, monkeypatch) -> None:
    images = [str(folder / f"{name}.png") for name in COLOURS] * 4
    threads: set[str] = set()
    real_embed_images = clip_encoder.embed_images

    def recording_embed_images(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real_embed_images(*args, **kwargs)

    monkeypatch.setattr(clip_encoder, "embed_images", recording_embed_images)

    async def gather_images():
        return await asyncio.gather(*(embed.aget_image_embedding(path) for path in images))

    vectors, forwards = _forwards(clip_encoder, lambda: asyncio.run(gather_images()))
    assert len(vectors) == 16 and all(type(v) is list and type(v[0]) is float for v in vectors)
    assert forwards <= 6, f"16 concurrent image requests cost {forwards} forward passes"  # ideally 4
    assert threads == {"mmrag-batcher"}  # the model never ran on the event loop's thread
    expected = real_embed_images(images)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)

    async def gather_texts():
        return await asyncio.gather(
            embed.aget_query_embedding("a red circle"),
            embed.aget_text_embedding("a blue square"),
            embed.aget_text_embedding_batch(["one", "two", "three"]),
            embed.aget_image_embedding_batch(images[:3]),
        )

    (query, text, batch, image_batch), forwards = _forwards(clip_encoder, lambda: asyncio.run(gather_texts()))
    assert forwards <= 4  # 5 texts in two passes at most, 3 images in one
    np.testing.assert_allclose(query, clip_encoder.embed_texts(["a red circle"])[0], atol=1e-6)
    np.testing.assert_allclose(text, clip_encoder.embed_texts(["a blue square"])[0], atol=1e-6)
    np.testing.assert_allclose(batch, clip_encoder.embed_texts(["one", "two", "three"]), atol=1e-6)
    np.testing.assert_allclose(image_batch, expected[:3], atol=1e-6)


def test_async_bad_image_fails_only_its_own_call(embed, folder) -> None:
    async def run():
        return await asyncio.gather(
            embed.aget_image_embedding(str(folder / "red.png")),
            embed.aget_image_embedding(str(folder / "missing.png")),
            return_exceptions=True,
        )

    good, bad = asyncio.run(run())
    assert isinstance(good, list)
    assert isinstance(bad, mmrag.ImageInputError) and "file not found" in str(bad)


def test_loading_by_model_and_argument_checks(tiny_model_dirs, clip_encoder) -> None:
    path = str(tiny_model_dirs["clip"])
    loaded = LocalMultiModalEmbedding(model=path, device="cpu", dtype="float32", embed_batch_size=8)
    assert loaded.model == path and loaded.model_name == loaded.encoder.model_id
    assert loaded.encoder.batch_size == 8 and loaded.device == "cpu" and loaded.dtype == "float32"
    np.testing.assert_allclose(loaded.get_text_embedding("hello"), clip_encoder.embed_texts(["hello"])[0], atol=1e-5)
    loaded.close()
    assert len(asyncio.run(loaded.aget_text_embedding("usable after close"))) == clip_encoder.dim
    loaded.close()

    with pytest.raises(mmrag.InvalidInputError, match="pass one of them"):
        LocalMultiModalEmbedding(model="siglip2-base-224", encoder=clip_encoder)
    with pytest.raises(mmrag.InvalidInputError, match=r"not both \(got encoder and device\).*load_encoder"):
        LocalMultiModalEmbedding(encoder=clip_encoder, device="cpu")
    with pytest.raises(mmrag.ModelNotAvailableError):
        LocalMultiModalEmbedding(model=str(Path(path).parent / "nowhere"))


def test_loading_options_object_and_keyword_overrides(tiny_model_dirs, clip_encoder) -> None:
    path = str(tiny_model_dirs["clip"])
    options = mmrag.LoadOptions(device="cpu", dtype="float16", batch_size=8, local_files_only=True)
    loaded = LocalMultiModalEmbedding(model=path, options=options, dtype="float32")  # the keyword wins
    assert loaded.options == options.replace(dtype="float32")
    assert loaded.embed_batch_size == loaded.encoder.batch_size == 8  # embed_batch_size defaults to the option
    assert (loaded.device, loaded.dtype, loaded.local_files_only) == ("cpu", "float32", True)  # readable record
    assert str(loaded.encoder.dtype) == "torch.float32" and str(loaded.encoder.device) == "cpu"
    np.testing.assert_allclose(loaded.get_text_embedding("hello"), clip_encoder.embed_texts(["hello"])[0], atol=1e-5)
    again = LocalMultiModalEmbedding.from_dict(loaded.to_dict())  # LlamaIndex's own round trip
    assert (again.model, again.device, again.dtype, again.embed_batch_size) == (path, "cpu", "float32", 8)
    loaded.close()
    again.close()

    adopted = LocalMultiModalEmbedding(encoder=clip_encoder, device=None, local_files_only=False)  # defaults: fine
    assert adopted.options is None and adopted.encoder is clip_encoder
    with pytest.raises(mmrag.InvalidInputError, match=r"got encoder and options"):
        LocalMultiModalEmbedding(encoder=clip_encoder, options=mmrag.LoadOptions())
    with pytest.raises(mmrag.InvalidInputError, match="dtype"):
        LocalMultiModalEmbedding(model=path, dtype="float64")  # LoadOptions checks before anything loads


# --------------------------------------------- MultiModalVectorStoreIndex + Chroma
def _stores(client) -> tuple[ChromaVectorStore, ChromaVectorStore]:
    texts = client.get_or_create_collection("texts", configuration=COSINE, embedding_function=None)
    images = client.get_or_create_collection("images", configuration=COSINE, embedding_function=None)
    return ChromaVectorStore(chroma_collection=texts), ChromaVectorStore(chroma_collection=images)


def test_multimodal_index_on_chroma_persists_and_reloads_in_a_fresh_process(
    tmp_path, folder, embed, clip_encoder, tiny_model_dirs
) -> None:
    db, persist = tmp_path / "chroma", tmp_path / "index"
    client = chromadb.PersistentClient(path=str(db), settings=ChromaSettings(anonymized_telemetry=False))
    try:
        text_store, image_store = _stores(client)
        storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
        documents = SimpleDirectoryReader(str(folder)).load_data()
        assert sum(type(d).__name__ == "ImageDocument" for d in documents) == 4 and len(documents) == 7
        # What LlamaIndex embeds for a text file: its file_path metadata, then the text.
        grass = next(d for d in documents if d.metadata["file_name"] == "grass.txt")
        grass_query = grass.get_content(metadata_mode=MetadataMode.EMBED)
        assert grass_query.endswith("green grass in spring") and "grass.txt" in grass_query

        index, forwards = _forwards(
            clip_encoder,
            lambda: MultiModalVectorStoreIndex.from_documents(
                documents, storage_context=storage, embed_model=embed, image_embed_model=embed
            ),
        )
        assert forwards == 2  # 3 texts in one pass, 4 images in one pass (embed_batch_size 4)
        assert text_store.client.count() == 3 and image_store.client.count() == 4
        assert text_store.client.configuration_json["hnsw"]["space"] == "cosine"
        storage.persist(persist_dir=str(persist))

        retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=2)
        red = str(folder / "red.png")
        similar = retriever.image_to_image_retrieve(red)
        assert similar[0].node.image_path == red and similar[0].score == pytest.approx(1.0, abs=1e-4)

        async def async_forms():
            return await asyncio.gather(
                retriever.aimage_to_image_retrieve(red), retriever.atext_to_image_retrieve("a red circle")
            )

        async_similar, async_images = asyncio.run(async_forms())
        assert [n.node.node_id for n in async_similar] == [n.node.node_id for n in similar]
        assert all(isinstance(n.node, ImageNode) for n in async_images) and len(async_images) == 2
    finally:
        client.close()  # one process per embedded Chroma path: let go before the child opens it

    code = f"""
        import json
        import chromadb
        from chromadb.config import Settings
        from llama_index.core import QueryBundle, StorageContext, load_index_from_storage
        from llama_index.core.llms import MockLLM
        from llama_index.core.schema import ImageNode
        from llama_index.vector_stores.chroma import ChromaVectorStore
        from mmrag.llama_index import LocalMultiModalEmbedding

        embed = LocalMultiModalEmbedding(model={str(tiny_model_dirs["clip"])!r}, device="cpu")
        client = chromadb.PersistentClient(path={str(db)!r}, settings=Settings(anonymized_telemetry=False))
        stores = [ChromaVectorStore(chroma_collection=client.get_collection(n)) for n in ("texts", "images")]
        storage = StorageContext.from_defaults(
            vector_store=stores[0], image_store=stores[1], persist_dir={str(persist)!r}
        )
        index = load_index_from_storage(storage, embed_model=embed, image_embed_model=embed)
        retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=2)

        def rows(results):
            return [["image" if isinstance(r.node, ImageNode) else "text", getattr(r.node, "image_path", None),
                     r.node.get_content(), r.score] for r in results]

        engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=3, image_similarity_top_k=2)
        out = {{
            "class": type(index).__name__,
            "text_to_image": rows(retriever.text_to_image_retrieve("a red circle")),
            "image_to_image": rows(retriever.image_to_image_retrieve({str(folder / "green.png")!r})),
            "retrieve": rows(retriever.retrieve({grass_query!r})),
            "engine_retrieve": rows(engine.retrieve(QueryBundle({grass_query!r}))),
        }}
        response = engine.query({grass_query!r})
        out["response_sources"] = len(response.source_nodes)
        client.close()
        print("RESULT", json.dumps(out))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1])},
    )  # fmt: skip  # aligned by hand
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    assert out["class"] == "MultiModalVectorStoreIndex"
    assert len(out["text_to_image"]) == 2
    assert {row[0] for row in out["text_to_image"]} == {"image"}
    assert {Path(row[1]).name for row in out["text_to_image"]} <= {f"{c}.png" for c in COLOURS}
    first = out["image_to_image"][0]
    assert first[1] == str(folder / "green.png") and first[3] == pytest.approx(1.0, abs=1e-4)
    texts = [row for row in out["retrieve"] if row[0] == "text"]
    images = [row for row in out["retrieve"] if row[0] == "image"]
    assert len(texts) == 3 and len(images) == 2
    assert texts[0][2] == "green grass in spring" and texts[0][3] == pytest.approx(1.0, abs=1e-4)
    assert {row[2] for row in texts} == set(TEXTS.values())
    assert out["engine_retrieve"] == out["retrieve"]
    assert out["response_sources"] == 5


# ------------------------------------------------------ MultimodalStoreRetriever
@pytest.fixture
def store(tmp_path, clip_encoder, folder) -> MultimodalStore:
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="llama") as opened:
        opened.add_images([folder / f"{name}.png" for name in COLOURS], metadatas=[{"colour": c} for c in COLOURS])
        opened.add_texts(list(TEXTS.values()), metadatas=[{"file": name} for name in TEXTS])
        yield opened


def test_store_retriever_four_directions(store: MultimodalStore, folder) -> None:
    retriever = MultimodalStoreRetriever(store, k=3)
    assert isinstance(retriever, MultiModalRetriever)
    red, blue = str(folder / "red.png"), folder / "blue.png"

    to_image = retriever.text_to_image_retrieve("a red circle")
    assert len(to_image) == 3 and all(type(r.node) is ImageNode for r in to_image)
    for result in to_image:
        node = result.node
        assert node.image is None and node.image_url is None  # no pixels, no base64
        assert Path(node.image_path).parent == folder and node.image_path == node.metadata["source"]
        assert node.metadata["modality"] == "image" and node.metadata["colour"] == Path(node.image_path).stem
    assert [r.node.node_id for r in to_image] == [h.id for h in store.search("a red circle", k=3, modality="image")]

    same = retriever.image_to_image_retrieve(red)
    assert same[0].node.image_path == red and same[0].score == pytest.approx(1.0, abs=1e-4)
    assert retriever.image_to_image_retrieve(QueryBundle("", image_path=red))[0].node.node_id == same[0].node.node_id
    assert retriever.image_to_image_retrieve(Image.open(blue))[0].node.image_path == str(blue)  # any ImageInput

    texts = retriever.text_retrieve("green grass in spring")
    assert all(type(r.node) is TextNode for r in texts)
    top = texts[0].node
    assert top.text == "green grass in spring" and texts[0].score == pytest.approx(1.0, abs=1e-4)
    assert top.metadata == {"file": "grass.txt", "modality": "text", "source": "green grass in spring"}
    assert "source" not in top.get_content(metadata_mode="llm")  # the text is not repeated for the LLM
    assert "file: grass.txt" in top.get_content(metadata_mode="llm")

    captions = retriever.image_to_text_retrieve(red)
    assert {r.node.text for r in captions} == set(TEXTS.values())
    assert all(type(r.node) is TextNode for r in captions)


def test_store_retriever_retrieve_picks_query_kind_and_modality(store: MultimodalStore, folder) -> None:
    red = str(folder / "red.png")
    both = MultimodalStoreRetriever(store, k=10)
    by_text = both.retrieve("something about the sea")
    assert {type(r.node) for r in by_text} == {ImageNode, TextNode} and len(by_text) == 7
    assert by_text[0].node.get_content() == "something about the sea"
    by_image = both.retrieve(QueryBundle(query_str="", image_path=red))
    assert by_image[0].node.image_path == red  # an image query, not a text one
    assert {type(r.node) for r in by_image} == {ImageNode, TextNode}
    composed = both.retrieve(QueryBundle(query_str="what is this?", image_path=red))  # text + image: composed
    fused = store.embed_query("what is this?", image=red)
    assert [r.node.node_id for r in composed] == [h.id for h in store.search_by_vector(fused, k=10)]

    # A string that names an image file is still a text query for retrieve().
    assert both.retrieve(red)[0].score < 0.99

    texts_only = MultimodalStoreRetriever(store, k=2, modality="text")
    assert [type(r.node) for r in texts_only.retrieve("sea")] == [TextNode, TextNode]
    filtered = MultimodalStoreRetriever(store, k=5, modality="image", where={"colour": "blue"})
    assert [r.node.metadata["colour"] for r in filtered.retrieve("anything")] == ["blue"]

    with pytest.raises(ValueError, match="k must be"):
        MultimodalStoreRetriever(store, k=0)
    with pytest.raises(ValueError, match="modality"):
        MultimodalStoreRetriever(store, modality="video")
    with pytest.raises(ValueError, match="image_path"):
        both.image_to_image_retrieve(QueryBundle(""))


def test_store_retriever_composed_query_finds_the_pair_with_that_image_and_text(store, folder) -> None:
    red, blue = str(folder / "red.png"), str(folder / "blue.png")
    ids = store.add_pairs([red, red, blue], ["make it blue", "make it red", "make it blue"]).ids
    bundle = QueryBundle(query_str="make it blue", image_path=red)
    pairs = MultimodalStoreRetriever(store, k=3, modality="pair").retrieve(bundle)
    assert pairs[0].node.node_id == ids[0] and pairs[0].score == pytest.approx(1.0, abs=1e-5)
    node = pairs[0].node
    assert type(node) is ImageNode and (node.image_path, node.text) == (red, "make it blue")
    assert node.metadata["modality"] == "pair" and len(pairs) == 3
    mixed = MultimodalStoreRetriever(store, similarity_top_k=2, image_similarity_top_k=3).retrieve(bundle)
    assert mixed[0].node.node_id == ids[0] and {r.node.metadata["modality"] for r in mixed} == {"image", "text", "pair"}
    assert len(mixed) == 2 + 3  # pairs are searched like images (up to image_similarity_top_k), the total stays
    async_pairs = asyncio.run(MultimodalStoreRetriever(store, k=3, modality="pair").aretrieve(bundle))
    assert [r.node.node_id for r in async_pairs] == [r.node.node_id for r in pairs]


def test_store_retriever_async_forms_match_and_run_in_threads(store: MultimodalStore, folder, monkeypatch) -> None:
    retriever = MultimodalStoreRetriever(store, k=3)
    red = str(folder / "red.png")
    threads: set[str] = set()
    real_search = store.search

    def recording_search(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real_search(*args, **kwargs)

    async def run():
        loop_thread = threading.current_thread().name
        results = await asyncio.gather(
            retriever.atext_retrieve("a red fire truck"),
            retriever.atext_to_image_retrieve("a red fire truck"),
            retriever.aimage_to_image_retrieve(red),
            retriever.aimage_to_text_retrieve(red),
            retriever.aretrieve(QueryBundle("", image_path=red)),
        )
        return loop_thread, results

    expected = [
        retriever.text_retrieve("a red fire truck"),
        retriever.text_to_image_retrieve("a red fire truck"),
        retriever.image_to_image_retrieve(red),
        retriever.image_to_text_retrieve(red),
        retriever.retrieve(QueryBundle("", image_path=red)),
    ]
    monkeypatch.setattr(store, "search", recording_search)
    loop_thread, results = asyncio.run(run())
    assert threads and loop_thread not in threads  # the store was searched off the event loop
    for got, want in zip(results, expected):
        assert [(r.node.node_id, round(r.score, 4)) for r in got] == [(r.node.node_id, round(r.score, 4)) for r in want]


def test_store_retriever_with_a_batcher_shares_forward_passes(store: MultimodalStore, folder, clip_encoder) -> None:
    batcher = mmrag.EmbeddingBatcher(clip_encoder, max_batch_items=8, max_wait_ms=20)
    retriever = MultimodalStoreRetriever(store, k=2, batcher=batcher)
    plain = MultimodalStoreRetriever(store, k=2)
    queries = [f"query number {i}" for i in range(8)]
    images = [str(folder / f"{name}.png") for name in COLOURS]

    async def run():
        return await asyncio.gather(
            *(retriever.atext_to_image_retrieve(q) for q in queries),
            *(retriever.aimage_to_text_retrieve(path) for path in images),
            retriever.aretrieve(QueryBundle("", image_path=images[0])),
        )

    try:
        results, forwards = _forwards(clip_encoder, lambda: asyncio.run(run()))
    finally:
        batcher.close()
    assert forwards <= 4, f"13 concurrent queries cost {forwards} forward passes"  # ideally 2: texts, images
    expected = [plain.text_to_image_retrieve(q) for q in queries] + [plain.image_to_text_retrieve(p) for p in images]
    expected.append(plain.retrieve(QueryBundle("", image_path=images[0])))
    for got, want in zip(results, expected):
        assert [(r.node.node_id, round(r.score, 4)) for r in got] == [(r.node.node_id, round(r.score, 4)) for r in want]

    with pytest.raises(ValueError, match="batcher runs"):
        MultimodalStoreRetriever(store, batcher=mmrag.EmbeddingBatcher(_OtherModel(clip_encoder)))


class _OtherModel:
    """Looks like an encoder for another model (only what the retriever checks)."""

    def __init__(self, encoder) -> None:
        self.model_id, self.batch_size = "someone/else", encoder.batch_size
        self.signature = {**encoder.signature, "model_id": "someone/else"}


def test_store_retriever_in_a_query_engine(store: MultimodalStore) -> None:
    retriever = MultimodalStoreRetriever(store, k=4)
    engine = RetrieverQueryEngine.from_args(retriever=retriever, llm=MockLLM())
    nodes = engine.retrieve(QueryBundle("green grass in spring"))
    assert nodes[0].node.get_content() == "green grass in spring"
    response = engine.query("green grass in spring")
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in nodes]
    assert "green grass in spring" in str(response)  # MockLLM echoes the prompt with the retrieved context


def test_hit_to_node_maps_urls_and_pixel_sources() -> None:
    url = hit_to_node(Hit("id1", "image", "https://example.com/cat.png", None, {"album": "a"}, 0.5)).node
    assert isinstance(url, ImageNode) and url.image_url == "https://example.com/cat.png" and url.image_path is None
    assert url.node_id == "id1" and url.metadata == {"album": "a", "modality": "image", "source": url.image_url}
    pixels = hit_to_node(Hit("id2", "image", None, None, {}, 0.1)).node
    assert isinstance(pixels, ImageNode) and pixels.image is None and pixels.image_path is None
    text = hit_to_node(Hit("id3", "text", "/docs/a.txt", "hello", {}, 0.9))
    assert text.score == 0.9 and text.node.text == "hello" and "source: /docs/a.txt" in text.node.get_content("llm")


# ------------------------------------------------------------------- example
def _load_example():
    spec = importlib.util.spec_from_file_location("llama_index_pipeline_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_with_a_tiny_model(tiny_model_dirs, capsys) -> None:
    example = _load_example()
    assert example.main(["--model", str(tiny_model_dirs["clip"]), "--device", "cpu", "--n", "4"]) == 0
    out = capsys.readouterr().out
    assert "text -> image" in out and "image -> image: shape_000.png" in out and out.rstrip().endswith("done")
    similar = out.split("image -> image: shape_000.png")[1].splitlines()[1]
    assert "1.000" in similar and "shape_000.png" in similar


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the bundled demo model is not built yet")
def test_example_runs_as_a_script_with_the_demo_model() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--device", "cpu", "--n", "12"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1])},
    )  # fmt: skip  # aligned by hand
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model: mmrag/demo" in result.stdout and result.stdout.rstrip().endswith("done")
    assert "were cut before embedding" not in result.stderr  # no caption lost to its file_path prefix
    similar = result.stdout.split("image -> image: shape_000.png")[1].splitlines()[1]
    assert "1.000" in similar and "shape_000.png" in similar
