"""LocalMultiModalEmbeddings and #14: our cache (images too), cache_identity, progress, batch_size="auto"."""

from __future__ import annotations

import pickle

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_chroma import Chroma

import mmrag
from mmrag.cache import EmbeddingCache, encoder_identity
from mmrag.langchain import LocalMultiModalEmbeddings
from mmrag.testing import speckled_image


@pytest.fixture
def encoder():
    loaded = mmrag.load_encoder("demo", device="cpu", batch_size=4)
    yield loaded
    loaded.close()


def test_our_cache_covers_documents_queries_and_chroma_add_images(encoder, tmp_path) -> None:
    cache = EmbeddingCache()
    emb = LocalMultiModalEmbeddings(encoder=encoder, cache=cache)
    assert encoder.cache is cache
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        paths.append(str(tmp_path / f"{i}.png"))
        speckled_image(colour).save(paths[-1])
    client = chromadb.EphemeralClient(Settings(anonymized_telemetry=False))
    store = Chroma(client=client, collection_name="wiring", embedding_function=emb)
    store.add_images(uris=paths)
    store.add_texts(["a red circle", "a green square"])
    before = encoder.forward_count
    again = Chroma(client=client, collection_name="wiring_again", embedding_function=emb)
    again.add_images(uris=paths)  # Chroma finds embed_image on us, and the cache answers
    again.add_texts(["a red circle", "a green square"])
    assert encoder.forward_count == before
    np.testing.assert_allclose(emb.embed_query("a red circle"), emb.embed_documents(["a red circle"])[0], atol=1e-6)
    assert encoder.forward_count == before


def test_cache_identity_is_one_value_per_vector_space(encoder) -> None:
    named = LocalMultiModalEmbeddings(model="demo", device="cpu")
    passed = LocalMultiModalEmbeddings(encoder=encoder)
    assert named.cache_identity == passed.cache_identity == encoder_identity(encoder) != ""
    assert pickle.loads(pickle.dumps(named)).cache_identity == named.cache_identity


def test_batch_size_auto_is_accepted_and_resolved(encoder) -> None:
    emb = LocalMultiModalEmbeddings(model="demo", device="cpu", batch_size="auto")
    assert emb.batch_size == "auto" and emb.forward_batch == emb.encoder.batch_size >= 1
    assert len(emb.embed_documents(["a", "b", "c"])) == 3
    with pytest.raises(ValueError, match="batch_size"):
        LocalMultiModalEmbeddings(model="demo", device="cpu", batch_size=0)


def test_embed_documents_shows_progress_when_asked_and_matches_one_call(encoder, monkeypatch, capsys) -> None:
    texts = [f"text number {i}" for i in range(21)]
    quiet = LocalMultiModalEmbeddings(encoder=encoder, show_progress=False)
    expected = quiet.embed_documents(texts)
    assert capsys.readouterr().err == ""
    loud = LocalMultiModalEmbeddings(encoder=encoder, show_progress=True)
    np.testing.assert_allclose(loud.embed_documents(texts), expected, atol=1e-6)
    assert "embedding" in capsys.readouterr().err
    monkeypatch.setattr("mmrag.progress.stderr_is_terminal", lambda: True)
    auto = LocalMultiModalEmbeddings(encoder=encoder)
    auto.embed_documents(texts[:2])  # within one batch: no bar
    assert capsys.readouterr().err == ""
    auto.embed_image([speckled_image((9, 9, 9), seed=i) for i in range(6)])
    assert "embedding" in capsys.readouterr().err
