"""mmrag.llama_index.CrossModalReranker: a node postprocessor after real retrievers, with tiny rerankers.

The reranker is a tiny BLIP ITM (text<->image), a tiny BERT cross-encoder (text->text) and the session's
tiny CLIP (image->image); the first stage is tiny CLIP over real Chroma, through MultimodalStoreRetriever
and through a MultiModalVectorStoreIndex. Every ranking is checked against ``Reranker.rerank`` itself.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("llama_index.vector_stores.chroma")

import chromadb
from chromadb.config import Settings as ChromaSettings
from llama_index.core import QueryBundle, SimpleDirectoryReader, StorageContext
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

import mmrag
from mmrag.llama_index import CrossModalReranker, LocalMultiModalEmbedding, MultimodalStoreRetriever
from mmrag.rerank import Reranker, load_reranker
from mmrag.store import MultimodalStore
from mmrag.testing import build_tiny_blip_itm, build_tiny_cross_encoder, speckled_image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
TEXTS = {"sea.txt": "something about the sea", "grass.txt": "green grass in spring", "fire.txt": "a red fire truck"}
QUERY = "a red fire truck"


# ------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four PNG images and three .txt files."""
    root = tmp_path_factory.mktemp("li_rerank")
    for seed, (name, colour) in enumerate(COLOURS.items()):
        speckled_image(colour, seed).save(root / f"{name}.png")
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def rr(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> Iterator[Reranker]:
    """BLIP ITM for text<->image, a cross-encoder for text->text, CLIP for image->image (batch_size 8)."""
    root = tmp_path_factory.mktemp("li_rerankers")
    paths = [build_tiny_blip_itm(root / "blip"), build_tiny_cross_encoder(root / "ce"), tiny_model_dirs["clip"]]
    reranker = load_reranker(paths, device="cpu", batch_size=8)
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, clip_encoder, folder: Path) -> Iterator[MultimodalStore]:
    with MultimodalStore(clip_encoder, path=tmp_path_factory.mktemp("li_rr_db"), collection="rerank") as opened:
        opened.add_images([folder / f"{name}.png" for name in COLOURS], metadatas=[{"colour": c} for c in COLOURS])
        opened.add_texts(list(TEXTS.values()), metadatas=[{"file": name} for name in TEXTS])
        yield opened


class Calls:
    """Counts Reranker.rerank calls and the model calls they cost."""

    def __init__(self, reranker: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reranker, self.calls, self.threads = reranker, 0, set()
        real = reranker.rerank

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(reranker, "rerank", counting)
        self.real_rerank = real
        self.start = reranker.forward_count

    @property
    def forwards(self) -> int:
        return self.reranker.forward_count - self.start


def _candidate(result: NodeWithScore) -> Any:
    """What a user would hand Reranker.rerank for a node: the image path, or the text."""
    node = result.node
    return node.image_path if isinstance(node, ImageNode) else node.get_content()


def _assert_matches_rerank(out: list[NodeWithScore], nodes: list[NodeWithScore], expected: list[Any]) -> None:
    assert [r.node.node_id for r in out] == [nodes[item.index].node.node_id for item in expected]
    np.testing.assert_allclose([r.score for r in out], [item.score for item in expected], atol=1e-6)
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
    assert all(0.0 <= r.score <= 1.0 for r in out)


# ---------------------------------------------------------- after the store
def test_text_query_after_store_retriever_one_batched_call(rr, store, monkeypatch) -> None:
    retriever = MultimodalStoreRetriever(store, k=7)
    nodes = retriever.retrieve(QUERY)
    assert {type(r.node) for r in nodes} == {ImageNode, TextNode} and len(nodes) == 7
    before = [(r.node.node_id, r.score, dict(r.node.metadata)) for r in nodes]
    reranker = CrossModalReranker(reranker=rr, top_n=5)
    assert isinstance(reranker, BaseNodePostprocessor)

    counted = Calls(rr, monkeypatch)
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert counted.calls == 1  # texts and images in one scoring call
    assert counted.forwards == 2  # 4 images: one BLIP pass; 3 texts: one cross-encoder pass (batch_size 8)

    expected = counted.real_rerank(QUERY, [_candidate(r) for r in nodes], top_n=5)
    assert {item.modality for item in expected} <= {"text", "image"} and len(out) == 5
    _assert_matches_rerank(out, nodes, expected)
    by_id = {node_id: (score, metadata) for node_id, score, metadata in before}
    for result in out:
        score, metadata = by_id[result.node.node_id]
        assert result.node.metadata == {**metadata, "retrieval_score": score}  # metadata kept, first stage kept
        assert "retrieval_score" not in result.node.get_content(metadata_mode=MetadataMode.LLM)
        if isinstance(result.node, ImageNode):
            assert result.node.image_path == metadata["source"] and result.node.image is None
    # The nodes passed in are left alone.
    assert [(r.node.node_id, r.score, dict(r.node.metadata)) for r in nodes] == before


def test_image_query_bundle_and_batch_size(rr, store, folder, monkeypatch) -> None:
    red = str(folder / "red.png")
    bundle = QueryBundle("what is this?", image_path=red)
    nodes = MultimodalStoreRetriever(store, k=7).retrieve(bundle)
    reranker = CrossModalReranker(reranker=rr)  # top_n None: all, reordered

    counted = Calls(rr, monkeypatch)
    out = reranker.postprocess_nodes(nodes, bundle)
    # image->image (CLIP): query + 1 batch; image->text (BLIP): vision tower once + 1 batch.
    assert counted.calls == 1 and counted.forwards == 4
    expected = counted.real_rerank(red, [_candidate(r) for r in nodes], query_type="image")
    assert len(out) == 7
    _assert_matches_rerank(out, nodes, expected)
    assert out[0].node.image_path == red  # CLIP: the identical image, cosine 1

    images = MultimodalStoreRetriever(store, k=4).text_to_image_retrieve(QUERY)
    small = CrossModalReranker(reranker=rr, batch_size=3, top_n=2)
    counted = Calls(rr, monkeypatch)
    out = small.postprocess_nodes(images, QueryBundle(QUERY))
    assert counted.calls == 1 and counted.forwards == 2  # ceil(4 / 3) BLIP passes
    _assert_matches_rerank(out, images, counted.real_rerank(QUERY, [_candidate(r) for r in images], top_n=2))


def test_in_query_engines_sync_and_async(rr, store, monkeypatch) -> None:
    reranker = CrossModalReranker(reranker=rr, top_n=3)
    retriever = MultimodalStoreRetriever(store, k=7)
    engine = RetrieverQueryEngine.from_args(retriever=retriever, llm=MockLLM(), node_postprocessors=[reranker])
    expected = reranker.postprocess_nodes(retriever.retrieve(QUERY), query_str=QUERY)

    counted = Calls(rr, monkeypatch)
    response = engine.query(QUERY)
    assert [r.node.node_id for r in response.source_nodes] == [r.node.node_id for r in expected]
    assert [r.score for r in response.source_nodes] == pytest.approx([r.score for r in expected], abs=1e-6)

    async def run() -> tuple[str, list[NodeWithScore]]:
        return threading.current_thread().name, await engine.aretrieve(QueryBundle(QUERY))

    counted.threads.clear()
    loop_thread, nodes = asyncio.run(run())
    assert [r.node.node_id for r in nodes] == [r.node.node_id for r in expected]
    assert counted.calls == 2 and counted.threads and loop_thread not in counted.threads  # scored off the loop


# ------------------------------------------------ MultiModalVectorStoreIndex
@pytest.mark.filterwarnings("ignore:Call to deprecated class SimpleMultiModalQueryEngine:DeprecationWarning")
def test_after_a_multimodal_vector_store_index_on_chroma(rr, clip_encoder, folder, tmp_path, monkeypatch) -> None:
    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        texts, images = (
            ChromaVectorStore(chroma_collection=client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None))
            for name in ("texts", "images")
        )  # fmt: skip  # aligned by hand
        embed = LocalMultiModalEmbedding(encoder=clip_encoder)
        index = MultiModalVectorStoreIndex.from_documents(
            SimpleDirectoryReader(str(folder)).load_data(),
            storage_context=StorageContext.from_defaults(vector_store=texts, image_store=images),
            embed_model=embed,
            image_embed_model=embed,
        )
        retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=4)
        nodes = retriever.retrieve(QUERY)
        assert sum(isinstance(r.node, ImageNode) for r in nodes) == 4 and len(nodes) == 7
        assert all(r.node.image_path for r in nodes if isinstance(r.node, ImageNode))
        reranker = CrossModalReranker(reranker=rr, top_n=4)

        counted = Calls(rr, monkeypatch)
        out = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
        assert counted.calls == 1 and counted.forwards == 2
        _assert_matches_rerank(out, nodes, counted.real_rerank(QUERY, [_candidate(r) for r in nodes], top_n=4))
        originals = {r.node.node_id: r for r in nodes}
        for result in out:
            original = originals[result.node.node_id]
            assert result.node.metadata["file_path"] == original.node.metadata["file_path"]
            assert result.node.metadata["retrieval_score"] == original.score
            assert type(result.node) is type(original.node)

        # In the index's own query engine (SimpleMultiModalQueryEngine).
        engine = index.as_query_engine(
            llm=MockLLM(), similarity_top_k=3, image_similarity_top_k=4, node_postprocessors=[reranker]
        )
        assert [r.node.node_id for r in engine.retrieve(QueryBundle(QUERY))] == [r.node.node_id for r in out]

        # Text candidates with metadata (MetadataMode.EMBED: file path lines, then the text).
        embed_mode = CrossModalReranker(reranker=rr, metadata_mode=MetadataMode.EMBED)
        text_nodes = [r for r in nodes if not isinstance(r.node, ImageNode)]
        expected = counted.real_rerank(QUERY, [r.node.get_content(MetadataMode.EMBED) for r in text_nodes])
        _assert_matches_rerank(embed_mode.postprocess_nodes(text_nodes, query_str=QUERY), text_nodes, expected)
    finally:
        client.close()


# ------------------------------------------------------------ node kinds
def test_image_node_sources_and_texts_that_look_like_images(rr, folder, monkeypatch) -> None:
    blue = folder / "blue.png"
    encoded = base64.b64encode(blue.read_bytes()).decode()
    nodes = [
        NodeWithScore(node=ImageNode(id_="path", image_path=str(blue)), score=0.5),
        NodeWithScore(node=ImageNode(id_="b64", image=encoded), score=0.4),
        NodeWithScore(node=ImageNode(id_="uri", image_url="data:image/png;base64," + encoded), score=None),
        NodeWithScore(node=TextNode(id_="text", text="a blue square"), score=0.3),
    ]
    reranker = CrossModalReranker(reranker=rr)
    counted = Calls(rr, monkeypatch)
    out = {r.node.node_id: r for r in reranker.postprocess_nodes(nodes, query_str="a blue square")}
    assert counted.calls == 1 and counted.forwards == 2
    assert out["path"].score == pytest.approx(out["b64"].score, abs=1e-6) == pytest.approx(out["uri"].score, abs=1e-6)
    assert "retrieval_score" not in out["uri"].node.metadata  # no first-stage score to keep
    assert out["b64"].node.image == encoded and out["text"].node.metadata == {"retrieval_score": 0.3}

    # A text that the "auto" rule would read as an image: texts and images are scored apart, merged alike.
    tricky = [
        NodeWithScore(node=TextNode(id_="url-text", text="https://example.com/cat.png"), score=0.9),
        NodeWithScore(node=TextNode(id_="path-text", text=str(blue)), score=0.8),
        *nodes[:2],
    ]
    counted = Calls(rr, monkeypatch)
    out = reranker.postprocess_nodes(tricky, query_str="a blue square")
    assert counted.calls == 2  # never a network fetch for the URL text
    text_z = rr.log_odds("a blue square", ["https://example.com/cat.png", str(blue)], candidate_type="text")
    image_z = rr.log_odds("a blue square", [blue, blue], candidate_type="image")
    order = sorted(range(4), key=lambda i: (-np.concatenate([text_z, image_z])[i], i))
    assert [r.node.node_id for r in out] == [tricky[i].node.node_id for i in order]


def test_errors_and_edge_cases(rr, folder) -> None:
    reranker = CrossModalReranker(reranker=rr, top_n=2)
    node = NodeWithScore(node=TextNode(text="hello"), score=1.0)
    assert reranker.postprocess_nodes([], query_str="anything") == []
    assert CrossModalReranker(reranker=rr, top_n=0).postprocess_nodes([node], query_str="x") == []
    with pytest.raises(ValueError, match="needs a query"):
        reranker.postprocess_nodes([node])
    with pytest.raises(ValueError, match="empty query"):
        reranker.postprocess_nodes([node], query_str="  ")
    with pytest.raises(ValueError, match="nothing to rerank"):
        reranker.postprocess_nodes([NodeWithScore(node=ImageNode(id_="empty"), score=0.1)], query_str="x")
    with pytest.raises(mmrag.ImageInputError):
        reranker.postprocess_nodes([NodeWithScore(node=ImageNode(image_path=str(folder / "gone.png")))], query_str="x")
    with pytest.raises(ValueError, match="either reranker"):
        CrossModalReranker()
    with pytest.raises(ValueError, match="either reranker"):
        CrossModalReranker(rr, model="blip-itm-base-coco")
    with pytest.raises(ValueError, match="load_reranker instead"):
        CrossModalReranker(rr, device="cpu")


def test_loading_by_model_fields_and_callbacks(rr, tiny_model_dirs) -> None:
    blip, ce = (backend.model_id for backend in (rr.routes["text->image"], rr.routes["text->text"]))
    handler = LlamaDebugHandler()
    loaded = CrossModalReranker(
        model=[Path(blip), ce], device="cpu", batch_size=4, top_n=1, callback_manager=CallbackManager([handler])
    )
    assert loaded.model == [blip, ce] and loaded.batch_size == loaded.reranker.batch_size == 4
    assert loaded.device == "cpu" and loaded.top_n == 1 and loaded.reranker is not rr
    assert sorted(loaded.reranker.routes) == ["image->text", "text->image", "text->text"]
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in ("a red fire truck", "the sea")]
    out = loaded.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == 1 and out[0].score == pytest.approx(max(rr.score(QUERY, [n.node.text for n in nodes])))
    assert len(handler.get_event_pairs(CBEventType.RERANKING)) == 1
    loaded.close()

    shared = CrossModalReranker(reranker=rr)
    assert shared.reranker is rr and shared.batch_size == rr.batch_size == 8
    assert set(shared.model) == set(rr.routes) and shared.model["text->text"] == ce
    data = shared.to_dict()
    assert data["class_name"] == "CrossModalReranker" and "_reranker" not in data
    assert all(CrossModalReranker.model_fields[name].description for name in ("model", "top_n", "batch_size"))


def test_loading_options_object(rr) -> None:
    blip = rr.routes["text->image"].model_id
    options = mmrag.LoadOptions(device="cpu", batch_size=4, local_files_only=True)
    loaded = CrossModalReranker(model=blip, options=options, top_n=2)
    assert loaded.reranker.batch_size == loaded.batch_size == 4 and loaded.model == blip
    assert (loaded.device, loaded.local_files_only) == ("cpu", True)
    assert sorted(loaded.reranker.routes) == ["image->text", "text->image"]
    override = CrossModalReranker(model=blip, options=options, batch_size=2)  # the keyword wins
    assert override.reranker.batch_size == override.batch_size == 2
    for reranker in (loaded, override):
        reranker.close()

    with pytest.raises(mmrag.InvalidInputError, match=r"got reranker and options"):
        CrossModalReranker(rr, options=options)
    with pytest.raises(mmrag.InvalidInputError, match=r"got reranker and dtype, local_files_only"):
        CrossModalReranker(rr, dtype="float16", local_files_only=True)
    assert CrossModalReranker(rr, batch_size=3).batch_size == 3  # pairs per call: not a loading option here
