"""mmrag.langchain.CrossModalReranker: a document compressor in ContextualCompressionRetriever, tiny rerankers.

The reranker is a tiny BLIP ITM (text<->image), a tiny BERT cross-encoder (text->text) and the session's
tiny CLIP (image->image); the first stage is MultimodalStoreRetriever over real Chroma with tiny CLIP.
Every ranking is checked against ``Reranker.rerank`` itself.
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
from langchain_core.documents import BaseDocumentCompressor, Document
from PIL import Image
from pydantic import ValidationError

import mmrag
from mmrag.langchain import CrossModalReranker, MultimodalStoreRetriever
from mmrag.rerank import Reranker, load_reranker
from mmrag.store import MultimodalStore
from mmrag.testing import build_tiny_blip_itm, build_tiny_cross_encoder, speckled_image

ContextualCompressionRetriever = pytest.importorskip(
    "langchain_classic.retrievers.contextual_compression"
).ContextualCompressionRetriever

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
TEXTS = ["a red circle", "a blue square", "a green star"]
QUERY = "a red circle"


# ------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("lc_rerank_images")
    paths = []
    for seed, (name, colour) in enumerate(COLOURS.items()):
        speckled_image(colour, seed).save(folder / f"{name}.png")
        paths.append(str(folder / f"{name}.png"))
    return paths


@pytest.fixture(scope="module")
def rr(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> Iterator[Reranker]:
    """BLIP ITM for text<->image, a cross-encoder for text->text, CLIP for image->image (batch_size 8)."""
    root = tmp_path_factory.mktemp("lc_rerankers")
    paths = [build_tiny_blip_itm(root / "blip"), build_tiny_cross_encoder(root / "ce"), tiny_model_dirs["clip"]]
    reranker = load_reranker(paths, device="cpu", batch_size=8)
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, clip_encoder, image_paths) -> Iterator[MultimodalStore]:
    with MultimodalStore(clip_encoder, path=tmp_path_factory.mktemp("lc_rr_db"), collection="rerank") as opened:
        opened.add_images(image_paths, metadatas=[{"colour": name} for name in COLOURS])
        opened.add_texts(TEXTS, metadatas=[{"lang": "en"}] * 3)
        yield opened


class Calls:
    """Counts Reranker.rerank calls, the threads they ran on, and the model calls they cost."""

    def __init__(self, reranker: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reranker, self.calls, self.threads = reranker, 0, set()
        self.real_rerank = reranker.rerank

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
            return self.real_rerank(*args, **kwargs)

        monkeypatch.setattr(reranker, "rerank", counting)
        self.start = reranker.forward_count

    @property
    def forwards(self) -> int:
        return self.reranker.forward_count - self.start


def _candidate(doc: Document) -> Any:
    """What a user would hand Reranker.rerank for a retrieved document."""
    return doc.metadata["source"] if doc.metadata["modality"] == "image" else doc.page_content


def _assert_matches_rerank(out: list[Document], docs: list[Document], expected: list[Any]) -> None:
    assert [d.id for d in out] == [docs[item.index].id for item in expected]
    scores = [d.metadata["relevance_score"] for d in out]
    np.testing.assert_allclose(scores, [item.score for item in expected], atol=1e-6)
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)


# ------------------------------------------- ContextualCompressionRetriever
def test_text_query_in_contextual_compression_retriever(rr, store, monkeypatch) -> None:
    base = MultimodalStoreRetriever(store=store, k=7)
    reranker = CrossModalReranker(reranker=rr, top_n=5)
    assert isinstance(reranker, BaseDocumentCompressor)
    pipeline = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)
    docs = base.invoke(QUERY)
    assert {d.metadata["modality"] for d in docs} == {"image", "text"} and len(docs) == 7

    counted = Calls(rr, monkeypatch)
    out = pipeline.invoke(QUERY)
    assert counted.calls == 1  # texts and images in one scoring call
    assert counted.forwards == 2  # 4 images: one BLIP pass; 3 texts: one cross-encoder pass (batch_size 8)
    expected = counted.real_rerank(QUERY, [_candidate(d) for d in docs], top_n=5)
    assert len(out) == 5
    _assert_matches_rerank(out, docs, expected)
    originals = {d.id: d for d in docs}
    for doc in out:
        original = originals[doc.id]
        assert doc.page_content == original.page_content
        assert doc.metadata == {**original.metadata, "relevance_score": doc.metadata["relevance_score"]}
        assert doc.metadata["score"] == original.metadata["score"]  # the retriever's cosine is kept
    assert all("relevance_score" not in d.metadata for d in docs)  # inputs are left alone

    # Async: the same documents, scored off the event loop.
    async def run() -> tuple[str, list[Document]]:
        return threading.current_thread().name, await pipeline.ainvoke(QUERY)

    counted.threads.clear()
    loop_thread, async_out = asyncio.run(run())
    assert [d.id for d in async_out] == [d.id for d in out]
    assert counted.calls == 2 and counted.threads and loop_thread not in counted.threads


def test_image_queries(rr, store, image_paths, monkeypatch) -> None:
    red = image_paths[0]
    base = MultimodalStoreRetriever(store=store, k=7, query_type="auto")
    docs = base.invoke(red)
    assert docs[0].page_content == red  # the retriever read the path as an image

    # Through ContextualCompressionRetriever: the image as the query string, query_type="auto" on both.
    pipeline = ContextualCompressionRetriever(
        base_compressor=CrossModalReranker(reranker=rr, query_type="auto"), base_retriever=base
    )
    counted = Calls(rr, monkeypatch)
    out = pipeline.invoke(red)
    # image->image (CLIP): query + 1 batch; image->text (BLIP): vision tower once + 1 batch.
    assert counted.calls == 1 and counted.forwards == 4
    expected = counted.real_rerank(red, [_candidate(d) for d in docs], query_type="image")
    _assert_matches_rerank(out, docs, expected)
    assert out[0].page_content == red  # CLIP: the identical image, cosine 1

    # Directly, with image=: any image input.
    direct = CrossModalReranker(reranker=rr, top_n=3)
    out = direct.compress_documents(docs, "", image=Image.open(red))
    _assert_matches_rerank(out, docs, counted.real_rerank(red, [_candidate(d) for d in docs], top_n=3))
    out = asyncio.run(direct.acompress_documents(docs, "", image=red))
    _assert_matches_rerank(out, docs, counted.real_rerank(red, [_candidate(d) for d in docs], top_n=3))

    # invoke("", image=...) reaches the base retriever but not the compressor: a clear error says what to do.
    plain = ContextualCompressionRetriever(base_compressor=direct, base_retriever=base)
    with pytest.raises(ValueError, match="query_type='auto'"):
        plain.invoke("", image=red)
    with pytest.raises(ValueError, match="not both"):
        direct.compress_documents(docs, "a red circle", image=red)


def test_batching_follows_batch_size(rr, store, monkeypatch) -> None:
    docs = MultimodalStoreRetriever(store=store, k=4, modality="image").invoke(QUERY)
    counted = Calls(rr, monkeypatch)
    out = CrossModalReranker(reranker=rr, batch_size=3, top_n=2).compress_documents(docs, QUERY)
    assert counted.calls == 1 and counted.forwards == 2  # ceil(4 / 3) BLIP passes
    _assert_matches_rerank(out, docs, counted.real_rerank(QUERY, [_candidate(d) for d in docs], top_n=2))
    counted = Calls(rr, monkeypatch)
    CrossModalReranker(reranker=rr).compress_documents(docs, QUERY)
    assert counted.calls == 1 and counted.forwards == 1


# ------------------------------------------------------------ document kinds
def test_image_documents_from_every_source(rr, store, image_paths, monkeypatch) -> None:
    blue = image_paths[2]
    encoded = base64.b64encode(Path(blue).read_bytes()).decode()
    with_bytes = MultimodalStoreRetriever(store=store, k=1, modality="image", include_image_base64=True)
    from_store = with_bytes.invoke("", image=blue)[0]  # image_base64 + source
    assert "image_base64" in from_store.metadata
    docs = [
        from_store,
        Document(page_content=blue, metadata={"modality": "image"}, id="content-path"),
        Document(page_content=encoded, metadata={"modality": "image"}, id="content-b64"),  # as Chroma stores images
        Document(page_content="", metadata={"modality": "image", "source": Path(blue)}, id="pathlike"),
        Document(page_content="a blue square", metadata={"lang": "en"}, id="text"),
    ]
    counted = Calls(rr, monkeypatch)
    out = {
        d.id: d.metadata["relevance_score"] for d in CrossModalReranker(reranker=rr).compress_documents(docs, "blue")
    }
    assert counted.calls == 1 and counted.forwards == 2
    images = [out[from_store.id], out["content-path"], out["content-b64"], out["pathlike"]]
    np.testing.assert_allclose(images, [images[0]] * 4, atol=1e-6)
    assert out["text"] == pytest.approx(float(rr.score("blue", ["a blue square"])[0]), abs=1e-6)

    # Texts the "auto" rule would read as images: texts and images are scored apart, merged alike.
    tricky = [
        Document(page_content="https://example.com/cat.png", id="url-text"),
        Document(page_content=blue, id="path-text"),
        docs[1],
        docs[2],
    ]
    counted = Calls(rr, monkeypatch)
    ranked = CrossModalReranker(reranker=rr).compress_documents(tricky, "blue")
    assert counted.calls == 2  # and no network fetch for the URL text
    text_z = rr.log_odds("blue", ["https://example.com/cat.png", blue], candidate_type="text")
    image_z = rr.log_odds("blue", [blue, blue], candidate_type="image")
    order = sorted(range(4), key=lambda i: (-np.concatenate([text_z, image_z])[i], i))
    assert [d.id for d in ranked] == [tricky[i].id for i in order]


def test_errors_and_edge_cases(rr, store) -> None:
    reranker = CrossModalReranker(reranker=rr, top_n=2)
    text = Document(page_content="hello", metadata={"score": 0.5})
    assert reranker.compress_documents([], QUERY) == []
    assert CrossModalReranker(reranker=rr, top_n=0).compress_documents([text], QUERY) == []
    with pytest.raises(ValueError, match="empty query"):
        reranker.compress_documents([text], "  ")
    with pytest.raises(TypeError, match="image="):
        reranker.compress_documents([text], Image.new("RGB", (8, 8)))
    pixels = Document(page_content="", metadata={"modality": "image", "source": None}, id="px")
    with pytest.raises(ValueError, match="stored as pixels"):
        reranker.compress_documents([text, pixels], QUERY)
    gone = Document(page_content="/no/such/image.png", metadata={"modality": "image", "source": "/no/such/image.png"})
    with pytest.raises(mmrag.ImageInputError, match="not found"):
        reranker.compress_documents([gone], QUERY)
    with pytest.raises(ValueError, match="either reranker"):
        CrossModalReranker()
    with pytest.raises(ValueError, match="either reranker"):
        CrossModalReranker(reranker=rr, model="blip-itm-base-coco")
    with pytest.raises(ValueError, match="not both"):
        CrossModalReranker(reranker=rr, device="cpu")
    with pytest.raises(ValidationError):
        CrossModalReranker(reranker=rr, query_type="video")
    with pytest.raises(ValidationError):
        CrossModalReranker(reranker=rr, top_n=-1)
    with pytest.raises(ValidationError, match="extra"):
        CrossModalReranker(reranker=rr, temperature=0.5)


def test_loading_by_model_and_fields(rr) -> None:
    blip, ce = (backend.model_id for backend in (rr.routes["text->image"], rr.routes["text->text"]))
    loaded = CrossModalReranker(model=[Path(blip), ce], device="cpu", batch_size=4, top_n=1)
    assert loaded.model == [blip, ce] and loaded.batch_size == loaded.reranker.batch_size == 4
    assert loaded.device == "cpu" and loaded.reranker is not rr
    assert sorted(loaded.reranker.routes) == ["image->text", "text->image", "text->text"]
    docs = [Document(page_content=t) for t in ("a red circle", "the sea")]
    out = loaded.compress_documents(docs, QUERY)
    assert len(out) == 1 and out[0].metadata["relevance_score"] == pytest.approx(
        max(rr.score(QUERY, [*TEXTS[:1], "the sea"]))
    )
    loaded.close()

    shared = CrossModalReranker(reranker=rr)
    assert shared.reranker is rr and shared.batch_size == rr.batch_size == 8 and shared.top_n is None
    assert set(shared.model) == set(rr.routes) and shared.query_type == "text"
    assert set(shared.model_dump()) == set(CrossModalReranker.model_fields)
    assert all(field.description for field in CrossModalReranker.model_fields.values())
    shared.top_n = 2
    with pytest.raises(ValidationError):
        shared.top_n = -3  # type: ignore[assignment]  # the wrong type is what the test passes


def test_loading_options_object(rr) -> None:
    blip = rr.routes["text->image"].model_id
    options = mmrag.LoadOptions(device="cpu", batch_size=4, local_files_only=True)
    loaded = CrossModalReranker(model=blip, options=options, top_n=2)
    assert loaded.reranker.batch_size == loaded.batch_size == 4 and loaded.model == blip
    assert (loaded.device, loaded.local_files_only) == ("cpu", True)
    override = CrossModalReranker(model=blip, options=options, batch_size=2)  # the keyword wins
    assert override.reranker.batch_size == override.batch_size == 2
    for reranker in (loaded, override):
        reranker.close()

    with pytest.raises(mmrag.InvalidInputError, match=r"got reranker and options"):
        CrossModalReranker(reranker=rr, options=options)
    with pytest.raises(mmrag.InvalidInputError, match=r"got reranker and dtype"):
        CrossModalReranker(reranker=rr, dtype="float16")
    assert CrossModalReranker(reranker=rr, batch_size=3).batch_size == 3  # pairs per call: not a loading option here
