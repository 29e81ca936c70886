"""Drop-in for LlamaIndex users (issue #14): the anchors' own code, with mmrag swapped in for one line.

Each anchor script below is LlamaIndex code as its documentation writes it
(``ClipEmbedding``, ``MultiModalVectorStoreIndex.from_documents``,
``IngestionPipeline``...). :func:`swapped` replaces exactly one line of it (the
line that makes the model or the index, with the import it needs) and the test
runs the result on the bundled ``demo`` model and sample shapes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import SimpleDirectoryReader
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageDocument, MetadataMode
from llama_index.core.vector_stores import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

import mmrag
from mmrag.demo_data import write_sample_folder
from mmrag.llama_index import LocalMultiModalEmbedding, MultimodalStoreRetriever, multimodal_index

N = 6  # sample images, each with an English caption file


@pytest.fixture(scope="session")
def demo() -> mmrag.Encoder:
    """The bundled demo model, loaded once (32-token text window)."""
    return mmrag.load_encoder("demo", device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shape_000.png``, ``shape_000.en.txt``... under a deep temp path, as users' folders are."""
    root = tmp_path_factory.mktemp("anchor") / "my_photos" / "holiday_2024" / "shapes"
    write_sample_folder(root, n=N, languages=("en",))
    return root


@pytest.fixture(scope="module")
def embed(demo: mmrag.Encoder) -> LocalMultiModalEmbedding:
    return LocalMultiModalEmbedding(encoder=demo)


def swapped(script: str, anchor_line: str, mmrag_line: str) -> str:
    """``script`` with its one ``anchor_line`` replaced by ``mmrag_line`` (which may start with its import)."""
    assert script.count(anchor_line) == 1, anchor_line
    return script.replace(anchor_line, mmrag_line)


def run(script: str, **names: object) -> dict[str, object]:
    """Run a script as a user would (``names`` are the user's own variables, e.g. their folder)."""
    namespace: dict[str, object] = dict(names)
    exec(compile(script, "<anchor script>", "exec"), namespace)  # the scripts are the test's own
    return namespace


def _cos(a: object, b: object) -> float:
    return float(np.dot(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)))


def _caption(folder: Path, i: int) -> str:
    return (folder / f"shape_{i:03d}.en.txt").read_text(encoding="utf-8").strip()


# ------------------------------------------------------------------ model_name
CLIP_LINE = 'from llama_index.embeddings.clip import ClipEmbedding\nembed_model = ClipEmbedding(model_name="ViT-B/32")'
MMRAG_LINE = (
    'from mmrag.llama_index import LocalMultiModalEmbedding\nembed_model = LocalMultiModalEmbedding(model_name="demo")'
)

CLIP_EMBEDDING = f"""
{CLIP_LINE}
vector = embed_model.get_text_embedding("a red cross")
"""


def test_model_name_is_honoured_as_clip_embedding_takes_it(demo: mmrag.Encoder) -> None:
    out = run(swapped(CLIP_EMBEDDING, CLIP_LINE, MMRAG_LINE))
    embed_model = out["embed_model"]
    assert isinstance(embed_model, LocalMultiModalEmbedding)
    assert embed_model.encoder.model_id == "mmrag/demo"  # not the default model: model_name was not ignored
    assert (embed_model.model, embed_model.model_name) == ("mmrag/demo", "mmrag/demo")  # the model's id, not the alias
    np.testing.assert_allclose(out["vector"], demo.embed_texts(["a red cross"])[0], atol=1e-6)

    # ClipEmbedding's own names load the same weights from the hub (offline here, so the error names them).
    with pytest.raises(mmrag.ModelNotAvailableError, match="openai/clip-vit-base-patch32"):
        LocalMultiModalEmbedding(model_name="ViT-B/32", local_files_only=True)
    with pytest.raises(mmrag.InvalidInputError, match=r"ResNet CLIP.*model="):
        LocalMultiModalEmbedding(model_name="RN50")
    with pytest.raises(mmrag.InvalidInputError, match=r"model_name='ViT-L/14'.*model="):
        LocalMultiModalEmbedding(model="demo", model_name="ViT-L/14")
    with pytest.raises(mmrag.InvalidInputError, match=r"an encoder for 'mmrag/demo' and model_name='ViT-B/32'"):
        LocalMultiModalEmbedding(encoder=demo, model_name="ViT-B/32")
    assert LocalMultiModalEmbedding(encoder=demo, model_name="demo").encoder is demo  # naming the same model is fine
    again = LocalMultiModalEmbedding.from_dict(embed_model.to_dict())  # carries model and model_name
    assert (again.model, again.model_name) == ("mmrag/demo", "mmrag/demo")


# ---------------------------------------------------- MultiModalVectorStoreIndex
INDEX = """
from llama_index.core import SimpleDirectoryReader, StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex

documents = SimpleDirectoryReader(folder).load_data()
storage_context = StorageContext.from_defaults()
index = MultiModalVectorStoreIndex.from_documents(documents, storage_context=storage_context)
retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=3)
images = retriever.text_to_image_retrieve(query)
texts = retriever.text_retrieve(query)
"""


def test_index_without_image_embed_model_needs_clip_and_multimodal_index_is_the_one_line(folder: Path) -> None:
    query = _caption(folder, 2)
    with pytest.raises(ImportError, match="llama-index-embeddings-clip"):  # what the README documents
        run(INDEX, folder=str(folder), query=query)

    script = swapped(
        INDEX,
        "index = MultiModalVectorStoreIndex.from_documents(documents, storage_context=storage_context)",
        "from mmrag.llama_index import multimodal_index\n"
        'index = multimodal_index(documents, storage_context=storage_context, model="demo")',
    )
    out = run(script, folder=str(folder), query=query)
    index = out["index"]
    assert index.image_embed_model is index._embed_model  # one model, one vector space
    assert Path(out["images"][0].node.image_path).name == "shape_002.png"
    top = out["texts"][0]
    assert top.node.get_content().strip() == query and top.score == pytest.approx(1.0, abs=1e-3)
    assert "file_path" in top.node.metadata  # kept as metadata, only left out of the embedded text
    assert len({round(r.score, 4) for r in out["texts"]}) == 3  # captions embed apart, not as one vector
    documents = out["documents"]
    assert all("file_path" not in d.excluded_embed_metadata_keys for d in documents)  # the user's documents untouched


def test_the_documented_pattern_warns_once_when_metadata_fills_the_text_window(
    folder: Path, embed: LocalMultiModalEmbedding, caplog: pytest.LogCaptureFixture
) -> None:
    from llama_index.core.indices import MultiModalVectorStoreIndex

    documents = SimpleDirectoryReader(str(folder)).load_data()
    with caplog.at_level(logging.WARNING, logger="mmrag"):
        for _ in range(2):  # one call site: one warning, however many batches and calls
            index = MultiModalVectorStoreIndex.from_documents(documents, embed_model=embed, image_embed_model=embed)
    warnings = [r for r in caplog.records if r.name == "mmrag"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert f"{N} of {N} texts" in message and "(32 tokens)" in message and "mmrag/demo" in message
    assert "multimodal_index" in message and "excluded_embed_metadata_keys" in message
    assert __file__ in message  # the call site is the user's line
    # What the warning is about: the path fills the window, and every caption is the same vector.
    scores = index.as_retriever(similarity_top_k=N).text_retrieve(_caption(folder, 2))
    assert max(r.score for r in scores) - min(r.score for r in scores) < 1e-4

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmrag"):
        multimodal_index(documents, embed_model=embed)
        embed.get_text_embedding_batch(["a short caption"] * 3)
    assert not [r for r in caplog.records if r.name == "mmrag"]
    with caplog.at_level(logging.WARNING, logger="mmrag"):
        embed.get_query_embedding("word " * 40)  # another call site: warned again
    assert [r.getMessage()[:20] for r in caplog.records if r.name == "mmrag"] == ["1 of 1 texts are lon"]


def test_multimodal_index_argument_checks(embed: LocalMultiModalEmbedding, folder: Path) -> None:
    documents = SimpleDirectoryReader(str(folder)).load_data()
    with pytest.raises(mmrag.InvalidInputError, match="not both"):
        multimodal_index(documents, model="demo", embed_model=embed)
    with pytest.raises(mmrag.InvalidInputError, match="image_embed_model"):
        multimodal_index(documents, embed_model=embed, image_embed_model=embed)
    kept = multimodal_index(documents, embed_model=embed, embed_file_path=True)  # the LlamaIndex default text
    scores = kept.as_retriever(similarity_top_k=N).text_retrieve(_caption(folder, 2))
    assert max(r.score for r in scores) - min(r.score for r in scores) < 1e-4


# ------------------------------------------------------- IngestionPipeline
PIPELINE = f"""
from llama_index.core import SimpleDirectoryReader
from llama_index.core.ingestion import IngestionPipeline
{CLIP_LINE}

documents = SimpleDirectoryReader(folder).load_data()
pipeline = IngestionPipeline(transformations=[embed_model])
nodes = pipeline.run(documents=documents)
"""


def test_ingestion_pipeline_embeds_image_nodes_with_the_image_tower(folder: Path, demo: mmrag.Encoder) -> None:
    nodes = run(swapped(PIPELINE, CLIP_LINE, MMRAG_LINE), folder=str(folder))["nodes"]
    images = [n for n in nodes if isinstance(n, ImageDocument)]
    texts = [n for n in nodes if not isinstance(n, ImageDocument)]
    assert len(images) == len(texts) == N
    expected = demo.embed_images([n.image_path for n in images])
    for node, vector in zip(images, expected):
        assert _cos(node.embedding, vector) == pytest.approx(1.0, abs=1e-5)  # the image itself, not its metadata
        text_tower = demo.embed_texts([node.get_content(metadata_mode=MetadataMode.EMBED)])[0]
        assert _cos(text_tower, vector) < 0.9  # what BaseEmbedding.__call__ would have stored
    for node in texts:  # the caption itself: file_path is left out of the embedded text
        assert _cos(node.embedding, demo.embed_texts([node.text])[0]) == pytest.approx(1.0, abs=1e-5)


def test_transformation_with_a_splitter_async_and_file_path_kept(folder: Path, demo: mmrag.Encoder) -> None:
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import ImageNode

    documents = SimpleDirectoryReader(str(folder)).load_data()
    embed = LocalMultiModalEmbedding(encoder=demo, embed_file_path=True)
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(), embed])
    nodes = asyncio.run(pipeline.arun(documents=[d.model_copy() for d in documents]))
    images = [n for n in nodes if isinstance(n, ImageNode)]  # the splitter turns ImageDocuments into ImageNodes
    assert len(images) == N
    for node in images:
        assert _cos(node.embedding, demo.embed_images([node.image_path])[0]) == pytest.approx(1.0, abs=1e-5)
    for node in (n for n in nodes if not isinstance(n, ImageNode)):  # embed_file_path=True: LlamaIndex's own text
        embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
        assert embedded.startswith("file_path: ")
        assert _cos(node.embedding, demo.embed_texts([embedded])[0]) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------- copies and pickles
def test_embedding_pickles_and_copies(embed: LocalMultiModalEmbedding, caplog: pytest.LogCaptureFixture) -> None:
    owned = LocalMultiModalEmbedding(model="demo", device="cpu", embed_batch_size=8)
    with caplog.at_level(logging.WARNING):
        clones = {
            "owned": pickle.loads(pickle.dumps(owned)),
            "adopted": pickle.loads(pickle.dumps(embed)),
            "deep": copy.deepcopy(owned),
            "copy": owned.model_copy(),
        }
    assert not caplog.records  # nothing left out ("Removing unpickleable attribute" before)
    expected = owned.get_text_embedding("a red cross")
    for name, clone in clones.items():
        assert isinstance(clone, MultiModalEmbedding), name
        np.testing.assert_allclose(clone.get_text_embedding("a red cross"), expected, atol=1e-6, err_msg=name)
        assert len(asyncio.run(clone.aget_text_embedding("async too"))) == 64, name
    assert clones["deep"].encoder is owned.encoder and clones["copy"].encoder is owned.encoder  # shared
    assert clones["owned"].encoder is not owned.encoder  # a pickle loads the model again, where it lands
    assert (clones["owned"].model, clones["owned"].embed_batch_size, clones["owned"].device) == ("mmrag/demo", 8, "cpu")
    assert clones["adopted"].encoder.batch_size == embed.encoder.batch_size
    assert clones["deep"].batcher is not owned.batcher  # own worker thread and lock
    owned.close()
    assert len(clones["deep"].get_text_embedding("the copy still works")) == 64
    for clone in clones.values():
        clone.close()


# ------------------------------------------------- MultimodalStoreRetriever
@pytest.fixture(scope="module")
def both(folder: Path, embed: LocalMultiModalEmbedding, tmp_path_factory: pytest.TempPathFactory):
    """The same items with the same metadata in a LlamaIndex index on Chroma and in an mmrag store."""
    import chromadb
    from llama_index.core import StorageContext
    from llama_index.vector_stores.chroma import ChromaVectorStore

    root = tmp_path_factory.mktemp("both")
    metadata = [{"n": i, "parity": "odd" if i % 2 else "even"} for i in range(N)]
    documents = SimpleDirectoryReader(
        str(folder), file_metadata=lambda path: dict(metadata[int(Path(path).name[6:9])])
    ).load_data()
    for doc in documents:  # captions embed alone, as in the store (images keep theirs: LlamaIndex drops
        if not isinstance(doc, ImageDocument):  # nodes whose embedded text is empty, images included)
            doc.excluded_embed_metadata_keys = ["n", "parity"]
    client = chromadb.PersistentClient(path=str(root / "chroma"))
    texts, images = (
        ChromaVectorStore(
            chroma_collection=client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        )
        for name in ("texts", "images")
    )
    index = multimodal_index(
        documents,
        embed_model=embed,
        storage_context=StorageContext.from_defaults(vector_store=texts, image_store=images),
    )
    store = mmrag.MultimodalStore(embed.encoder, path=root / "db")
    store.add_images([folder / f"shape_{i:03d}.png" for i in range(N)], metadatas=metadata)
    store.add_texts([_caption(folder, i) for i in range(N)], metadatas=metadata)
    yield index, store
    store.close()


def _ns(results) -> list[int]:
    return [r.node.metadata["n"] for r in results]


FILTERS = {
    "eq": MetadataFilters(filters=[MetadataFilter(key="parity", value="even")]),
    "gte_and_lt": MetadataFilters(
        filters=[MetadataFilter(key="n", value=1, operator=">="), MetadataFilter(key="n", value=4, operator="<")]
    ),
    "in_or_ne": MetadataFilters(
        filters=[
            MetadataFilter(key="n", value=[0, 5], operator=FilterOperator.IN),
            MetadataFilter(key="n", value=2, operator=FilterOperator.LTE),
        ],
        condition=FilterCondition.OR,
    ),
    "nested": MetadataFilters(
        filters=[
            MetadataFilter(key="n", value=[3], operator=FilterOperator.NIN),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="n", value=0, operator=FilterOperator.GT),
                    MetadataFilter(key="parity", value="odd", operator=FilterOperator.NE),
                ],
                condition="or",
            ),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_store_retriever_answers_like_the_index_retriever(both, folder: Path, name: str) -> None:
    index, store = both
    arguments = {"similarity_top_k": 2, "image_similarity_top_k": 3, "filters": FILTERS[name]}
    theirs = index.as_retriever(**arguments)  # the anchor's line ...
    ours = MultimodalStoreRetriever(store, **arguments)  # ... and its one-line swap
    query, image = _caption(folder, 2), str(folder / "shape_001.png")
    for method, argument in [
        ("text_retrieve", query),
        ("text_to_image_retrieve", query),
        ("image_to_image_retrieve", image),
    ]:
        want, got = getattr(theirs, method)(argument), getattr(ours, method)(argument)
        assert _ns(got) == _ns(want), method
    mixed_want, mixed_got = theirs.retrieve(query), ours.retrieve(query)
    assert sorted(_ns(mixed_got)) == sorted(_ns(mixed_want)) and len(mixed_got) <= 5  # 2 texts + 3 images

    theirs.similarity_top_k = ours.similarity_top_k = 1  # set after construction: honoured
    theirs.image_similarity_top_k = ours.image_similarity_top_k = 1
    assert _ns(ours.text_retrieve(query)) == _ns(theirs.text_retrieve(query)) and len(ours.text_retrieve(query)) == 1
    assert len(ours.text_to_image_retrieve(query)) == 1 and len(ours.retrieve(query)) == 2


def test_store_retriever_counts_filters_and_errors(both, folder: Path) -> None:
    _, store = both
    query = _caption(folder, 2)
    plain = MultimodalStoreRetriever(store, k=3)  # k alone: as before, both modalities fused to k
    assert len(plain.retrieve(query)) == 3 and plain.k == plain.similarity_top_k == plain.image_similarity_top_k == 3
    capped = MultimodalStoreRetriever(store, k=3, similarity_top_k=1, image_similarity_top_k=5)
    mixed = capped.retrieve(query)
    assert len(mixed) == 3 and sum(r.node.metadata["modality"] == "text" for r in mixed) <= 1
    assert len(capped.image_to_image_retrieve(str(folder / "shape_000.png"))) == 5  # k caps only the mixed total
    capped.k = 2  # k sets all three
    assert (capped.similarity_top_k, capped.image_similarity_top_k, len(capped.retrieve(query))) == (2, 2, 2)

    where_and_filters = MultimodalStoreRetriever(
        store, where={"parity": "even"}, filters=FILTERS["gte_and_lt"], modality="text"
    )
    assert where_and_filters.combined_where() == {
        "$and": [{"parity": "even"}, {"$and": [{"n": {"$gte": 1}}, {"n": {"$lt": 4}}]}]
    }
    assert _ns(where_and_filters.retrieve(query)) == [2]
    assert asyncio.run(where_and_filters.aretrieve(query))[0].node.metadata["n"] == 2

    for operator in (FilterOperator.CONTAINS, FilterOperator.TEXT_MATCH, FilterOperator.ANY, FilterOperator.IS_EMPTY):
        with pytest.raises(mmrag.InvalidFilterError, match=rf"'n'.*{operator.name}.*supported: EQ, NE"):
            MultimodalStoreRetriever(
                store, filters=MetadataFilters(filters=[MetadataFilter(key="n", value=1, operator=operator)])
            )
    with pytest.raises(mmrag.InvalidFilterError, match="'not' has no Chroma equivalent"):
        MultimodalStoreRetriever(
            store, filters=MetadataFilters(filters=[MetadataFilter(key="n", value=1)], condition="not")
        )
    with pytest.raises(mmrag.InvalidFilterError, match="IN needs a list"):
        MultimodalStoreRetriever(
            store, filters=MetadataFilters(filters=[MetadataFilter(key="n", value=1, operator="in")])
        )
    with pytest.raises(mmrag.InvalidInputError, match="similarity_top_k must be at least 1"):
        MultimodalStoreRetriever(store, similarity_top_k=0)
    with pytest.raises(mmrag.InvalidInputError, match="image_similarity_top_k must be at least 1"):
        plain.image_similarity_top_k = 0
    assert mmrag.InvalidFilterError("x").code == "invalid_filter"


def test_filters_to_where_translates_what_chroma_has() -> None:
    from mmrag.llama_index import filters_to_where

    assert filters_to_where(None) is None and filters_to_where(MetadataFilters(filters=[])) is None
    assert filters_to_where(FILTERS["eq"]) == {"parity": {"$eq": "even"}}  # one filter: no $and around it
    assert filters_to_where(FILTERS["in_or_ne"]) == {"$or": [{"n": {"$in": [0, 5]}}, {"n": {"$lte": 2}}]}
    assert filters_to_where(FILTERS["nested"]) == {
        "$and": [{"n": {"$nin": [3]}}, {"$or": [{"n": {"$gt": 0}}, {"parity": {"$ne": "odd"}}]}]
    }
    with pytest.raises(mmrag.InvalidFilterError, match="a None value"):
        filters_to_where(MetadataFilters(filters=[MetadataFilter(key="n", value=None)]))
    with pytest.raises(mmrag.InvalidFilterError, match="pass a Chroma-style dict as where="):
        filters_to_where({"n": 1})  # type: ignore[arg-type]  # the wrong type is what the test passes
