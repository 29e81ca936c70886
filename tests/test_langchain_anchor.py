"""Drop-in for LangChain users (issue #14): the anchors' own code, with mmrag swapped in for one line.

Each anchor script is LangChain code as its documentation writes it
(``OpenCLIPEmbeddings`` with ``langchain_chroma.Chroma``, ``as_retriever(search_kwargs=...)``,
``CacheBackedEmbeddings``). :func:`swapped` replaces exactly one line of it (the
line that makes the model or the cache, with the import it needs); the test runs
the result on the bundled ``demo`` model and sample shapes.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import shutil
from pathlib import Path

import chromadb
import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_chroma")

from langchain_core.embeddings import Embeddings
from pydantic import ValidationError

import mmrag
from mmrag.demo_data import write_sample_folder
from mmrag.langchain import CacheBackedMultiModalEmbeddings, LocalMultiModalEmbeddings, MultimodalStoreRetriever

N = 5
OPEN_CLIP_LINE = (
    "from langchain_experimental.open_clip import OpenCLIPEmbeddings\n"
    'embedding = OpenCLIPEmbeddings(model_name="ViT-H-14", checkpoint="laion2b_s32b_b79k")'
)
MMRAG_LINE = (
    'from mmrag.langchain import LocalMultiModalEmbeddings\nembedding = LocalMultiModalEmbeddings(model_name="demo")'
)


@pytest.fixture(scope="session")
def demo() -> mmrag.Encoder:
    """The bundled demo model, loaded once."""
    return mmrag.load_encoder("demo", device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [str(p) for p in write_sample_folder(tmp_path_factory.mktemp("photos"), n=N, captions=False)]


@pytest.fixture(scope="module")
def emb(demo: mmrag.Encoder) -> LocalMultiModalEmbeddings:
    return LocalMultiModalEmbeddings(encoder=demo)


def swapped(script: str, anchor_line: str, mmrag_line: str) -> str:
    """``script`` with its one ``anchor_line`` replaced by ``mmrag_line`` (which may start with its import)."""
    assert script.count(anchor_line) == 1, anchor_line
    return script.replace(anchor_line, mmrag_line)


def run(script: str, **names: object) -> dict[str, object]:
    """Run a script as a user would (``names`` are the user's own variables: paths, a Chroma client)."""
    namespace: dict[str, object] = dict(names)
    exec(compile(script, "<anchor script>", "exec"), namespace)  # the scripts are the test's own
    return namespace


def _stored(vectorstore) -> dict[str, np.ndarray]:
    got = vectorstore.get(include=["embeddings", "metadatas"])
    return {meta["source"]: np.asarray(e) for meta, e in zip(got["metadatas"], got["embeddings"])}


# --------------------------------------------------------- OpenCLIPEmbeddings
CHROMA = f"""
from langchain_chroma import Chroma
{OPEN_CLIP_LINE}

vectorstore = Chroma(
    collection_name="mm_rag_clip_photos",
    embedding_function=embedding,
    client=client,
    collection_configuration={{"hnsw": {{"space": "cosine"}}}},
)
vectorstore.add_images(uris=image_uris, metadatas=[{{"source": uri}} for uri in image_uris])
same = vectorstore.similarity_search_by_image(uri=image_uris[1], k=1)
retriever = vectorstore.as_retriever(search_kwargs={{"k": 2}})
docs = retriever.invoke("a red cross")
"""


def test_open_clip_embeddings_script_runs_with_the_one_line_swap(photos: list[str], demo: mmrag.Encoder) -> None:
    out = run(swapped(CHROMA, OPEN_CLIP_LINE, MMRAG_LINE), image_uris=photos, client=chromadb.EphemeralClient())
    embedding = out["embedding"]
    assert isinstance(embedding, LocalMultiModalEmbeddings) and embedding.encoder.model_id == "mmrag/demo"
    stored = _stored(out["vectorstore"])
    assert set(stored) == set(photos)  # add_images used our embed_image, not Chroma's default model
    for path, vector in zip(photos, demo.embed_images(photos)):
        np.testing.assert_allclose(stored[path], vector, atol=1e-5)
    assert out["same"][0].metadata["source"] == photos[1] and len(out["docs"]) == 2


def test_open_clip_arguments_are_accepted_or_refused_naming_model(demo: mmrag.Encoder) -> None:
    assert LocalMultiModalEmbeddings(model_name="demo").model == "demo"  # model_name alone: anything model takes
    assert LocalMultiModalEmbeddings.model_validate({"model_name": "demo"}).encoder.model_id == "mmrag/demo"
    assert LocalMultiModalEmbeddings(encoder=demo).model_name == "mmrag/demo"  # OpenCLIPEmbeddings' attribute
    # OpenCLIP pairs with a Hugging Face copy of the same weights load it (offline here: the error names it).
    with pytest.raises(mmrag.ModelNotAvailableError, match="laion/CLIP-ViT-H-14-laion2B-s32B-b79K"):
        LocalMultiModalEmbeddings(model_name="ViT-H-14", checkpoint="laion2b_s32b_b79k", local_files_only=True)
    with pytest.raises(mmrag.ModelNotAvailableError, match="openai/clip-vit-base-patch32"):
        LocalMultiModalEmbeddings(model_name="ViT-B-32", checkpoint="openai", local_files_only=True)
    # An OpenCLIP-format repo (no transformers copy) loads too, through the OpenCLIP converter.
    with pytest.raises(mmrag.ModelNotAvailableError, match="laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"):
        LocalMultiModalEmbeddings(model_name="ViT-B-32", checkpoint="datacomp_xl_s13b_b90k", local_files_only=True)
    for arguments in ({"model_name": "ViT-B-32", "checkpoint": "laion400m_e31"}, {"checkpoint": "yfcc15m"}):
        with pytest.raises(mmrag.InvalidInputError, match=r"no Hugging Face copy.*pass model="):
            LocalMultiModalEmbeddings(**arguments)
    with pytest.raises(mmrag.InvalidInputError, match="pass model= alone"):
        LocalMultiModalEmbeddings(model="demo", checkpoint="openai")
    with pytest.raises(mmrag.InvalidInputError, match="encoder= or model="):
        LocalMultiModalEmbeddings(encoder=demo, model_name="demo")
    with pytest.raises(ValidationError, match="extra_forbidden"):  # other unknown arguments are still refused
        LocalMultiModalEmbeddings(model="demo", modle_name="typo")


# -------------------------------------------------------------- search_kwargs
RETRIEVER = """
retriever = vectorstore.as_retriever(search_kwargs={"k": 2, "filter": {"n": {"$gte": 2}}})
docs = retriever.invoke("a red cross")
"""


def test_retriever_takes_search_kwargs(photos: list[str], demo: mmrag.Encoder, tmp_path: Path) -> None:
    with mmrag.MultimodalStore(demo, path=tmp_path / "db") as store:
        store.add_images(photos, metadatas=[{"n": i} for i in range(N)])
        script = swapped(
            RETRIEVER,
            'retriever = vectorstore.as_retriever(search_kwargs={"k": 2, "filter": {"n": {"$gte": 2}}})',
            "from mmrag.langchain import MultimodalStoreRetriever\n"
            'retriever = MultimodalStoreRetriever(store=store, search_kwargs={"k": 2, "filter": {"n": {"$gte": 2}}})',
        )
        out = run(script, store=store)
        docs, retriever = out["docs"], out["retriever"]
        assert len(docs) == 2 and all(d.metadata["n"] >= 2 for d in docs)
        assert len(retriever.invoke("a red cross", k=3)) == 3  # a call's own argument wins
        retriever.search_kwargs["k"] = 1  # changed later, as LangChain users do: honoured
        assert len(retriever.invoke("a red cross")) == 1
        where = MultimodalStoreRetriever(store=store, search_kwargs={"where": {"n": 0}, "modality": "image"})
        assert [d.metadata["n"] for d in where.invoke("anything")] == [0]
        assert len(asyncio.run(retriever.ainvoke("a red cross"))) == 1

        with pytest.raises(ValueError, match="search_kwargs takes k, filter"):
            MultimodalStoreRetriever(store=store, search_kwargs={"fetch_k": 20})
        with pytest.raises(ValueError, match="k must be an int of at least 1"):
            MultimodalStoreRetriever(store=store, search_kwargs={"k": 0})
        with pytest.raises(ValueError, match="not both"):
            MultimodalStoreRetriever(store=store, search_kwargs={"filter": {}, "where": {}})
        retriever.search_kwargs["lambda_mult"] = 0.5  # an MMR argument: refused at the next call, not ignored
        with pytest.raises(mmrag.InvalidInputError, match="'lambda_mult'"):
            retriever.invoke("a red cross")


# ---------------------------------------------------- CacheBackedEmbeddings
CACHE = """
from langchain_chroma import Chroma
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.storage import LocalFileStore

store = LocalFileStore(cache_dir)
cached = CacheBackedEmbeddings.from_bytes_store(embedding, store, namespace=embedding.model_name, key_encoder="sha256")
vectorstore = Chroma(collection_name=name, embedding_function=cached, client=client)
vectorstore.add_images(uris=image_uris, metadatas=[{"source": uri} for uri in image_uris])
"""
CACHE_LINE = (
    "cached = CacheBackedEmbeddings.from_bytes_store(embedding, store, namespace=embedding.model_name, "
    'key_encoder="sha256")'
)
MMRAG_CACHE_LINE = "from mmrag.langchain import CacheBackedMultiModalEmbeddings\n" + CACHE_LINE.replace(
    "CacheBackedEmbeddings", "CacheBackedMultiModalEmbeddings"
)


def test_cache_backed_embeddings_keeps_images(
    photos: list[str], emb: LocalMultiModalEmbeddings, demo: mmrag.Encoder, tmp_path: Path
) -> None:
    from langchain_classic.embeddings import CacheBackedEmbeddings

    # The anchor: CacheBackedEmbeddings has no embed_image, so Chroma.add_images would skip the model
    # and embed with Chroma's default one (downloaded over the network).
    plain = CacheBackedEmbeddings.from_bytes_store(emb, _dict_store(), namespace="x", key_encoder="sha256")
    assert not hasattr(plain, "embed_image")

    script = swapped(CACHE, CACHE_LINE, MMRAG_CACHE_LINE)
    client = chromadb.EphemeralClient()
    names = {"embedding": emb, "image_uris": photos, "cache_dir": str(tmp_path / "cache"), "client": client}
    before = demo.forward_count
    first = run(script, name="first", **names)
    assert demo.forward_count - before == 1  # five images, one forward pass
    cached = first["cached"]
    assert isinstance(cached, CacheBackedMultiModalEmbeddings) and isinstance(cached, CacheBackedEmbeddings)
    stored = _stored(first["vectorstore"])
    for path, vector in zip(photos, demo.embed_images(photos)):
        np.testing.assert_allclose(stored[path], vector, atol=1e-5)
    assert len([f for f in (tmp_path / "cache").rglob("*") if f.is_file()]) == N  # the image vectors, on disk

    before = demo.forward_count
    second = run(script, name="second", **names)  # a new collection, the same cache
    assert demo.forward_count == before  # every image came from the cache
    for path, vector in _stored(second["vectorstore"]).items():
        np.testing.assert_allclose(vector, stored[path], atol=1e-6)

    moved = tmp_path / "renamed.png"  # the key is the content: the same picture elsewhere is a hit
    shutil.copy(photos[0], moved)
    again = second["cached"]
    before = demo.forward_count
    np.testing.assert_allclose(again.embed_image(uris=[str(moved)])[0], stored[photos[0]], atol=1e-6)
    np.testing.assert_allclose(
        asyncio.run(again.aembed_image(uris=photos[:2])), [stored[p] for p in photos[:2]], atol=1e-6
    )
    assert demo.forward_count == before
    assert again.embed_documents(["a red cross"]) == emb.embed_documents(["a red cross"])  # texts are cached as before


def test_cache_backed_multimodal_embeddings_details(
    photos: list[str], emb: LocalMultiModalEmbeddings, demo: mmrag.Encoder
) -> None:
    from PIL import Image

    images = _dict_store()
    cached = CacheBackedMultiModalEmbeddings(emb, _dict_store(), image_embedding_store=images, batch_size=2)
    pil = Image.open(photos[2]).convert("RGB")
    with open(photos[3], "rb") as handle:  # read for its key from where it stands, then put back for the model
        before = demo.forward_count
        vectors = cached.embed_image(uris=[photos[0], photos[0], pil, handle, photos[1]])
    assert demo.forward_count - before == 2  # four distinct images in batches of two; the repeat is embedded once
    np.testing.assert_allclose(vectors[0], vectors[1], atol=0)
    np.testing.assert_allclose(
        vectors, demo.embed_images([photos[0], photos[0], photos[2], photos[3], photos[1]]), atol=1e-5
    )
    assert len(images.store) == 4 and all(key.startswith("image-sha256:") for key in images.store)
    with pytest.raises(mmrag.NotASequenceError, match="uris"):
        cached.embed_image(uris=photos[0])
    with pytest.raises(mmrag.InvalidInputError, match="has no embed_image"):
        CacheBackedMultiModalEmbeddings(_TextOnly(), _dict_store())


class _TextOnly(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return [1.0]


def _dict_store():
    from langchain_core.stores import InMemoryStore

    return InMemoryStore()


# ------------------------------------------------------ copies and pickles
def test_embeddings_pickle_and_copy(emb: LocalMultiModalEmbeddings, photos: list[str]) -> None:
    owned = LocalMultiModalEmbeddings(model="demo", device="cpu", batch_size=8)
    clones = {
        "owned": pickle.loads(pickle.dumps(owned)),
        "adopted": pickle.loads(pickle.dumps(emb)),
        "deep": copy.deepcopy(owned),
        "copy": owned.model_copy(),
    }
    expected = owned.embed_image(uris=photos[:2])
    for name, clone in clones.items():
        assert clone.model_dump() == (emb if name == "adopted" else owned).model_dump(), name  # the same fields
        np.testing.assert_allclose(clone.embed_image(uris=photos[:2]), expected, atol=1e-6, err_msg=name)
        assert len(asyncio.run(clone.aembed_query("async too"))) == 64, name
    assert clones["deep"].encoder is owned.encoder and clones["copy"].encoder is owned.encoder  # shared
    assert clones["owned"].encoder is not owned.encoder  # a pickle loads the model again, where it lands
    assert clones["owned"].options == owned.options
    assert clones["adopted"].batch_size == emb.batch_size and clones["adopted"].model == "mmrag/demo"
    owned.close()
    assert len(clones["deep"].embed_query("the copy still works")) == 64
    for clone in clones.values():
        clone.close()
