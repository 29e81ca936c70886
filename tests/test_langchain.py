"""LangChain adapter: LocalMultiModalEmbeddings, langchain_chroma.Chroma, MultimodalStoreRetriever, LCEL."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from PIL import Image
from pydantic import ValidationError

import mmrag
from mmrag import LoadOptions
from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever, hit_to_document
from mmrag.store import Hit, MultimodalStore
from mmrag.testing import speckled_image

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("lc_images")
    paths = []
    for n, (name, colour) in enumerate(COLOURS.items()):
        path = folder / f"{name}.png"
        speckled_image(colour, seed=n).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def encoder(tiny_model_dirs: dict[str, Path]) -> mmrag.Encoder:
    """A tiny CLIP encoder of its own (batch_size 4), so forward counts are not shared."""
    return mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", batch_size=4)


@pytest.fixture
def emb(encoder: mmrag.Encoder) -> LocalMultiModalEmbeddings:
    embeddings = LocalMultiModalEmbeddings(encoder=encoder, batch_wait_ms=20)
    yield embeddings
    embeddings.close()


# ------------------------------------------------------------------ embeddings
def test_sync_methods_match_the_encoder(emb: LocalMultiModalEmbeddings, encoder, image_paths) -> None:
    texts = ["a red circle", "红色的圆形", "a blue square"]
    docs = emb.embed_documents(texts)
    query = emb.embed_query("a red circle")
    images = emb.embed_image(uris=image_paths)

    assert isinstance(docs, list) and all(isinstance(v, list) for v in docs)
    assert all(type(x) is float for v in docs + images + [query] for x in v)
    assert len(docs) == 3 and len(images) == 4 and len(query) == emb.dim == encoder.dim
    np.testing.assert_allclose(docs, encoder.embed_texts(texts), atol=1e-5)
    np.testing.assert_allclose(query, docs[0], atol=1e-5)
    np.testing.assert_allclose(images, encoder.embed_images(image_paths), atol=1e-5)
    assert emb.embed_documents([]) == [] and emb.embed_image(uris=[]) == []


def test_embed_image_takes_every_resolver_input_batched(emb: LocalMultiModalEmbeddings, encoder, image_paths) -> None:
    red = Path(image_paths[0])
    data = red.read_bytes()
    inputs = [
        str(red),
        red,
        "data:image/png;base64," + base64.b64encode(data).decode(),
        base64.b64encode(data).decode(),
        data,
        io.BytesIO(data),
        Image.open(red),
        np.asarray(Image.open(red)),
        speckled_image(COLOURS["blue"]),
    ]
    before = encoder.forward_count
    vectors = np.asarray(emb.embed_image(uris=inputs))
    assert encoder.forward_count - before == math.ceil(len(inputs) / emb.batch_size) == 3
    np.testing.assert_allclose(vectors[:8], np.repeat(vectors[:1], 8, axis=0), atol=1e-5)
    assert float(vectors[0] @ vectors[8]) < 0.999

    before = encoder.forward_count
    emb.embed_documents([f"text {i}" for i in range(9)])
    assert encoder.forward_count - before == 3


def test_single_items_and_bad_inputs_are_refused(emb: LocalMultiModalEmbeddings, image_paths) -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        emb.embed_documents("a red circle")  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(TypeError, match="wrap it in a list"):
        emb.embed_image(uris=image_paths[0])  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(TypeError, match="wrap it in a list"):
        asyncio.run(emb.aembed_image(uris=Image.open(image_paths[0])))
    with pytest.raises(TypeError, match="must be a string"):
        emb.embed_query(3)  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(mmrag.ImageInputError, match="image 1"):
        emb.embed_image(uris=[image_paths[0], "/no/such/file.png"])
    with pytest.raises(mmrag.ImageInputError):
        asyncio.run(emb.aembed_image(uris=["/no/such/file.png"]))


def test_pydantic_model_fields_and_encoder_reuse(encoder, tiny_model_dirs) -> None:
    loaded = LocalMultiModalEmbeddings(model=tiny_model_dirs["clip"], device="cpu", batch_size=8)
    assert loaded.model == str(tiny_model_dirs["clip"]) and loaded.batch_size == 8
    assert loaded.encoder.batch_size == 8 and loaded.encoder is not encoder

    validated = LocalMultiModalEmbeddings.model_validate({"model": str(tiny_model_dirs["clip"]), "device": "cpu"})
    assert len(validated.embed_query("lazy load")) == encoder.dim  # model_validate skips __init__

    reused = LocalMultiModalEmbeddings(encoder=encoder)
    assert reused.encoder is encoder
    assert (reused.model, reused.device, reused.dtype, reused.batch_size) == (encoder.model_id, "cpu", "float32", 4)
    assert "encoder" not in reused.model_dump() and set(reused.model_dump()) == set(
        LocalMultiModalEmbeddings.model_fields
    )
    assert all(field.description for field in LocalMultiModalEmbeddings.model_fields.values())

    with pytest.raises(ValueError, match="not both"):
        LocalMultiModalEmbeddings(encoder=encoder, model="clip-vit-b-32")
    with pytest.raises(ValueError, match="batch_size"):
        LocalMultiModalEmbeddings(encoder=encoder, batch_size=64)
    with pytest.raises(ValidationError, match="extra"):
        LocalMultiModalEmbeddings(encoder=encoder, temperature=0.5)
    with pytest.raises(ValidationError):
        LocalMultiModalEmbeddings(encoder=encoder, batch_wait_ms=-1)
    with pytest.raises(ValidationError, match="frozen"):
        reused.batch_size = 8  # type: ignore[misc]  # the wrong type is what the test passes
    with pytest.raises(mmrag.ModelNotAvailableError):
        LocalMultiModalEmbeddings(model="/no/such/model/dir")


def test_loading_options_object_and_keyword_overrides(encoder, tiny_model_dirs) -> None:
    path = str(tiny_model_dirs["clip"])
    options = mmrag.LoadOptions(device="cpu", dtype="float16", batch_size=8, local_files_only=True)
    loaded = LocalMultiModalEmbeddings(model=path, options=options, dtype="float32")  # the keyword wins
    assert loaded.options == options.replace(dtype="float32")
    assert loaded.encoder.batch_size == loaded.batch_size == 8 and str(loaded.encoder.dtype) == "torch.float32"
    assert (loaded.device, loaded.dtype, loaded.local_files_only) == ("cpu", "float32", True)  # readable record
    np.testing.assert_allclose(loaded.embed_query("hello"), encoder.embed_texts(["hello"])[0], atol=1e-5)
    # A serialised object loads again with the same options (model_validate skips __init__).
    again = LocalMultiModalEmbeddings.model_validate(loaded.model_dump())
    assert again.options == LoadOptions(device="cpu", dtype="float32", batch_size=8, local_files_only=True)
    assert again.encoder.batch_size == 8 and str(again.encoder.dtype) == "torch.float32"

    assert LocalMultiModalEmbeddings(encoder=encoder).options is None
    with pytest.raises(mmrag.InvalidInputError, match=r"got encoder and options"):
        LocalMultiModalEmbeddings(encoder=encoder, options=mmrag.LoadOptions())
    with pytest.raises(mmrag.InvalidInputError, match=r"got encoder and device, revision"):
        LocalMultiModalEmbeddings(encoder=encoder, device="cpu", revision="main")
    with pytest.raises(mmrag.InvalidInputError, match="dtype"):
        LocalMultiModalEmbeddings(model=path, dtype="float64")  # LoadOptions checks before anything loads


def test_async_calls_coalesce_into_shared_forward_passes(emb: LocalMultiModalEmbeddings, encoder, image_paths) -> None:
    texts = [f"a shape number {i}" for i in range(12)]
    uris = image_paths * 3
    expected_texts = encoder.embed_texts(texts)
    expected_images = encoder.embed_images(uris)
    before = encoder.forward_count

    async def main() -> tuple[list, list]:
        queries = asyncio.gather(*(emb.aembed_query(t) for t in texts))
        images = asyncio.gather(*(emb.aembed_image(uris=[u]) for u in uris))
        return await queries, await images

    query_vectors, image_vectors = asyncio.run(main())
    forwards = encoder.forward_count - before
    # 24 single-item calls; with batch_size 4, 6 forwards is the floor, 24 the uncoalesced count.
    assert forwards <= 10, f"24 concurrent single-item calls ran {forwards} forward passes"
    np.testing.assert_allclose(query_vectors, expected_texts, atol=1e-5)
    np.testing.assert_allclose([v[0] for v in image_vectors], expected_images, atol=1e-5)
    documents = asyncio.run(emb.aembed_documents(texts[:3]))
    np.testing.assert_allclose(documents, expected_texts[:3], atol=1e-5)


def test_async_methods_do_not_block_the_event_loop(encoder, monkeypatch) -> None:
    slow = LocalMultiModalEmbeddings(encoder=encoder)
    real_forward = encoder.forward_texts

    def slow_forward(batch):
        time.sleep(0.4)
        return real_forward(batch)

    monkeypatch.setattr(encoder, "forward_texts", slow_forward)

    async def main() -> int:
        ticks = 0
        task = asyncio.ensure_future(slow.aembed_documents(["a", "b"]))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await task
        return ticks

    assert asyncio.run(main()) >= 5  # blocking would give 1 tick; free-running gives ~40
    slow.close()


# --------------------------------------------------------------- langchain_chroma
# Cosine relevance is 1 - distance, the cosine similarity, which can be negative: LangChain warns.
@pytest.mark.filterwarnings("ignore:Relevance scores must be between 0 and 1:UserWarning")
@pytest.mark.parametrize(
    "space",
    [{"collection_metadata": {"hnsw:space": "cosine"}}, {"collection_configuration": {"hnsw": {"space": "cosine"}}}],
    ids=["collection_metadata", "collection_configuration"],
)
def test_chroma_add_images_and_search_both_ways(emb, encoder, image_paths, tmp_path, space) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    store = Chroma(collection_name="shapes", embedding_function=emb, client=client, **space)
    names = list(COLOURS)
    ids = store.add_images(uris=image_paths, metadatas=[{"colour": n, "source": p} for n, p in zip(names, image_paths)])
    store.add_texts(["a note about red things", "a note about the sea"], metadatas=[{"modality": "text"}] * 2)

    # Quirk: the document is the base64 of the whole image file.
    stored = store.get(ids=ids[:1])
    assert base64.b64decode(stored["documents"][0]) == Path(image_paths[0]).read_bytes()

    by_image = store.similarity_search_by_image(uri=image_paths[2], k=2)
    assert by_image[0].metadata["colour"] == "blue" and by_image[0].id == ids[2]
    # embed_image takes anything the resolver does, so a data URI works as the query too.
    data_uri = "data:image/png;base64," + base64.b64encode(Path(image_paths[1]).read_bytes()).decode()
    assert store.similarity_search_by_image(uri=data_uri, k=1)[0].metadata["colour"] == "green"

    # Text -> image: the text search returns images (page_content base64), filtered to images.
    hits = store.similarity_search_with_relevance_scores("a red circle", k=4, filter={"colour": {"$in": names}})
    assert {doc.metadata["colour"] for doc, _ in hits} == set(names)
    query = np.asarray(emb.embed_query("a red circle"))
    for doc, score in hits:  # cosine space: relevance = 1 - distance = cosine similarity
        vector = np.asarray(emb.embed_image(uris=[doc.metadata["source"]])[0])
        assert score == pytest.approx(float(query @ vector), abs=1e-4)
    mixed = store.similarity_search("a note about red things", k=6)
    assert mixed[0].page_content == "a note about red things" and len(mixed) == 6


def test_chroma_quirks_stated_in_the_readme(emb, image_paths, tmp_path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    store = Chroma(collection_name="quirks", embedding_function=emb, client=client)
    # add_images reads each uri as a local file itself: URLs and data URIs fail there.
    with pytest.raises(FileNotFoundError):
        store.add_images(uris=["data:image/png;base64,iVBORw0KGgo="])
    store.add_images(uris=image_paths)
    # Default space is l2: relevance scores need a cosine collection.
    assert store._collection.configuration["hnsw"]["space"] == "l2"
    # similarity_search_by_image_with_relevance_score passes a list of vectors (langchain-chroma 1.1.0).
    with pytest.raises(ValueError, match="Expected embeddings"):
        store.similarity_search_by_image_with_relevance_score(uri=image_paths[0], k=1)
    # ...the workaround; note the score is a distance (lower is better).
    vector = emb.embed_image(uris=[image_paths[0]])[0]
    _doc, distance = store.similarity_search_by_vector_with_relevance_scores(vector, k=1)[0]
    assert distance == pytest.approx(0.0, abs=1e-4)


# ------------------------------------------------------------------- retriever
@pytest.fixture
def store(tmp_path, clip_encoder, image_paths) -> MultimodalStore:
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="lcstore") as opened:
        opened.add_images(image_paths, metadatas=[{"colour": name} for name in COLOURS])
        opened.add_images([speckled_image((10, 10, 10), seed=9)], metadatas=[{"colour": "black"}])  # pixels: no source
        opened.add_texts(["a red circle", "a blue square", "a green star"], metadatas=[{"lang": "en"}] * 3)
        yield opened


def test_retriever_text_query_documents(store: MultimodalStore, image_paths) -> None:
    retriever = MultimodalStoreRetriever(store=store, k=10)
    docs = retriever.invoke("a red circle")
    assert len(docs) == 8 and {d.metadata["modality"] for d in docs} == {"image", "text"}
    for doc in docs:
        assert {"modality", "source", "score", "id"} <= set(doc.metadata) and doc.id == doc.metadata["id"]
        assert "image_base64" not in doc.metadata
        if doc.metadata["modality"] == "text":
            assert doc.page_content == doc.metadata["source"] and doc.metadata["lang"] == "en"
        elif doc.metadata["colour"] == "black":
            assert doc.page_content == "" and doc.metadata["source"] is None
        else:
            assert doc.page_content in image_paths and doc.page_content == doc.metadata["source"]
    text_docs = [d for d in docs if d.metadata["modality"] == "text"]
    assert text_docs[0].page_content == "a red circle" and text_docs[0].metadata["score"] == pytest.approx(1, abs=1e-4)

    images_only = MultimodalStoreRetriever(store=store, k=2, modality="image").invoke("a red circle")
    assert len(images_only) == 2 and all(d.metadata["modality"] == "image" for d in images_only)
    assert images_only[0].metadata["score"] >= images_only[1].metadata["score"]


def test_retriever_image_query_and_per_call_options(store: MultimodalStore, image_paths) -> None:
    retriever = MultimodalStoreRetriever(store=store, k=3, modality="image")
    docs = retriever.invoke("", image=image_paths[2])
    assert docs[0].page_content == image_paths[2] and docs[0].metadata["score"] == pytest.approx(1, abs=1e-4)
    assert retriever.invoke("", image=Image.open(image_paths[1]))[0].metadata["colour"] == "green"

    assert len(retriever.invoke("a red circle", k=1)) == 1
    texts = retriever.invoke("a red circle", modality="text")
    assert {d.metadata["modality"] for d in texts} == {"text"}
    both = retriever.invoke("a red circle", modality=None, k=8)
    assert {d.metadata["modality"] for d in both} == {"image", "text"}
    filtered = retriever.invoke("a red circle", where={"colour": "yellow"})
    assert [d.metadata["colour"] for d in filtered] == ["yellow"]
    assert [d.metadata["colour"] for d in retriever.bind(where={"colour": "red"}).invoke("anything")] == ["red"]
    # A text that names an existing image file stays a text query unless query_type="auto".
    assert retriever.invoke(image_paths[3])[0].metadata["score"] < 0.999
    auto = MultimodalStoreRetriever(store=store, k=1, modality="image", query_type="auto")
    assert auto.invoke(image_paths[3])[0].page_content == image_paths[3]

    composed = retriever.invoke("a red circle", image=image_paths[0])  # text + image: a composed query
    fused = store.embed_query("a red circle", image=image_paths[0])
    expected = store.search_by_vector(fused, k=3, modality="image")
    assert [d.id for d in composed] == [h.id for h in expected] and len(composed) == 3
    with pytest.raises(ValueError, match="empty query"):
        retriever.invoke("  ")
    with pytest.raises(TypeError):
        retriever.invoke("a red circle", colour="red")
    with pytest.raises(TypeError, match="image="):
        retriever.invoke(Image.open(image_paths[0]))  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(ValidationError):
        MultimodalStoreRetriever(store=store, modality="video")


def test_retriever_composed_query_finds_the_pair_with_that_image_and_text(store, image_paths) -> None:
    texts = ["make it blue", "make it red", "make it blue"]
    ids = store.add_pairs([image_paths[0], image_paths[0], image_paths[1]], texts).ids
    retriever = MultimodalStoreRetriever(store=store, k=3, modality="pair")
    docs = retriever.invoke("make it blue", image=image_paths[0])
    assert docs[0].id == ids[0] and docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-5)
    assert (docs[0].page_content, docs[0].metadata["source"], docs[0].metadata["modality"]) == (
        "make it blue",
        image_paths[0],
        "pair",
    )
    mixed = MultimodalStoreRetriever(store=store, k=20).invoke("make it blue", image=image_paths[0])
    assert mixed[0].id == ids[0] and {d.metadata["modality"] for d in mixed} == {"image", "text", "pair"}
    by_text = MultimodalStoreRetriever(store=store, search_kwargs={"modality": "pair"}).invoke("make it red")
    assert len(by_text) == 3 and {d.metadata["modality"] for d in by_text} == {"pair"}


def test_retriever_include_image_base64(store: MultimodalStore, image_paths, tmp_path) -> None:
    retriever = MultimodalStoreRetriever(store=store, k=10, modality="image", include_image_base64=True)
    docs = {d.metadata["colour"]: d for d in retriever.invoke("a shape")}
    red = docs["red"].metadata
    assert base64.b64decode(red["image_base64"]) == Path(image_paths[0]).read_bytes()
    assert red["image_mime_type"] == "image/png" and docs["red"].page_content == image_paths[0]
    assert "image_base64" not in docs["black"].metadata  # stored as pixels: nothing to read

    gone = Hit("x", "image", str(tmp_path / "deleted.png"), None, {}, 0.5)
    document = hit_to_document(gone, include_image_base64=True)
    assert "image_base64" not in document.metadata and "not found" in document.metadata["image_error"]
    text = hit_to_document(Hit("t", "text", "notes.txt", "hello", {"id": "mine"}, 0.9), include_image_base64=True)
    assert text == Document(
        page_content="hello", id="t", metadata={"id": "t", "modality": "text", "source": "notes.txt", "score": 0.9}
    )


def test_retriever_async_passes_kwargs_and_does_not_block(store: MultimodalStore, image_paths, monkeypatch) -> None:
    retriever = MultimodalStoreRetriever(store=store, k=2)

    async def main() -> tuple[list[Document], list[Document], list[list[Document]]]:
        by_image = await retriever.ainvoke("", image=image_paths[1], modality="image")
        by_text = await retriever.ainvoke("a blue square", modality="text", k=1)
        batch = await retriever.abatch(["a red circle", "a green star"])
        return by_image, by_text, batch

    by_image, by_text, batch = asyncio.run(main())
    assert by_image[0].page_content == image_paths[1]
    assert [d.page_content for d in by_text] == ["a blue square"]
    assert [len(docs) for docs in batch] == [2, 2]

    real_search = store.search

    def slow_search(*args, **kwargs):
        time.sleep(0.4)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(store, "search", slow_search)

    async def heartbeat() -> int:
        ticks = 0
        task = asyncio.ensure_future(retriever.ainvoke("a red circle"))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert len(await task) == 2
        return ticks

    assert asyncio.run(heartbeat()) >= 5  # blocking would give 1 tick


def test_retriever_in_an_lcel_chain_with_a_fake_chat_model(store: MultimodalStore, image_paths) -> None:
    retriever = MultimodalStoreRetriever(store=store, k=2, modality="text")
    seen: list[str] = []

    def format_docs(docs: list[Document]) -> str:
        return "\n".join(f"- {d.metadata['modality']}: {d.page_content}" for d in docs)

    def remember(prompt_value):
        seen.append(prompt_value.to_string())
        return prompt_value

    prompt = ChatPromptTemplate.from_messages([("system", "Use this context:\n{context}"), ("human", "{question}")])
    model = FakeListChatModel(responses=["It is the red circle.", "Still the red circle."])
    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(remember)
        | model
        | StrOutputParser()
    )
    assert chain.invoke("a red circle") == "It is the red circle."
    assert "- text: a red circle" in seen[0] and "Human: a red circle" in seen[0]
    assert asyncio.run(chain.ainvoke("a red circle")) == "Still the red circle."

    image_chain = {"context": retriever.bind(modality="image", image=image_paths[0]) | format_docs} | prompt.partial(
        question="what is this?"
    )
    assert f"- image: {image_paths[0]}" in image_chain.invoke("").to_string()


# -------------------------------------------------------------------- example
EXAMPLE = ROOT / "examples" / "langchain_chain.py"
DEMO_MODEL = ROOT / "src" / "mmrag" / "models" / "demo" / "config.json"


def _check_example_output(out: str) -> None:
    assert "indexed: added 12" in out  # 6 images + 6 English captions
    assert "image -> image: shape_000.png\n[1] image (score 1.000): shape_000.png" in out
    assert "chain.invoke('Which picture shows a red circle?') -> 'The best match" in out
    assert "await chain.ainvoke(...) -> " in out and "Chroma, image -> image: shape_000.png" in out


def test_example_runs_in_process_with_the_tiny_model(tiny_model_dirs, capsys) -> None:
    spec = importlib.util.spec_from_file_location("langchain_chain_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--model", str(tiny_model_dirs["clip"]), "--device", "cpu", "-n", "6"]) == 0
    _check_example_output(capsys.readouterr().out)


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the bundled demo model (src/mmrag/models/demo) is not built yet")
def test_example_runs_as_a_script_with_the_demo_model() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "-n", "6"], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip  # aligned by hand
    assert result.returncode == 0, result.stderr[-3000:]
    _check_example_output(result.stdout)
