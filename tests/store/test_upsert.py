"""mmrag.store.upsert: the add path writes full client batches, ``add`` for new ids, ``upsert`` only to replace."""

from __future__ import annotations

from typing import Any

import pytest

from mmrag.store import MultimodalStore


class _Recorder:
    """A Chroma collection that records each write call (name, batch size) and passes it on."""

    def __init__(self, collection: Any, calls: list[tuple[str, int]]) -> None:
        self._collection = collection
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in ("add", "upsert", "update"):
            return attribute

        def recorded(**kwargs: Any) -> Any:
            self._calls.append((name, len(kwargs["ids"])))
            return attribute(**kwargs)

        return recorded


@pytest.fixture
def writes(store: MultimodalStore) -> list[tuple[str, int]]:
    """The store's text-collection write calls, in order."""
    calls: list[tuple[str, int]] = []
    guarded = store._collections["text"]
    guarded._collection = _Recorder(guarded._collection, calls)
    return calls


def test_new_texts_go_in_one_add_of_the_client_batch_not_one_per_encoder_batch(store, writes) -> None:
    texts = [f"text number {i}" for i in range(30)]  # the tiny encoder embeds 4 at a time
    report = store.add_texts(texts)
    assert (report.added, report.embedded) == (30, 30)
    assert writes == [("add", 30)]
    assert store._collections.write_batch == store.client.get_max_batch_size()


def test_writes_split_at_the_client_max_batch(store, writes) -> None:
    store._collections.write_batch = 8
    store.add_texts([f"text number {i}" for i in range(20)])
    assert writes == [("add", 8), ("add", 8), ("add", 4)]
    assert store.count("text") == 20


def test_an_explicit_id_given_again_is_upserted_and_a_new_one_added(store, writes) -> None:
    store.add_texts(["first"], ids=["a"])
    report = store.add_texts(["second", "third"], ids=["a", "b"])
    assert (report.added, report.updated) == (1, 1)
    assert writes == [("add", 1), ("add", 1), ("upsert", 1)]
    assert [(r.id, r.text) for r in store.get(["a", "b"])] == [("a", "second"), ("b", "third")]


def test_unchanged_texts_write_nothing_and_changed_metadata_only_updates(store, writes) -> None:
    store.add_texts(["alpha", "beta"], metadatas=[{"n": 1}, {"n": 2}])
    report = store.add_texts(["alpha", "beta"], metadatas=[{"n": 1}, {"n": 3}])
    assert (report.skipped, report.updated, report.embedded) == (1, 1, 0)
    assert writes == [("add", 2), ("update", 1)]
    assert sorted(r.metadata["n"] for r in store.get(report.ids)) == [1, 3]


def test_the_same_text_twice_in_one_call_is_stored_once_with_its_last_metadata(store) -> None:
    report = store.add_texts(["same", "same", "other"], metadatas=[{"n": 1}, {"n": 2}, None])
    assert (report.added, report.skipped, report.embedded) == (2, 1, 2)
    assert report.ids[0] == report.ids[1]
    assert store.count() == 2
    assert store.get([report.ids[0]])[0].metadata == {"n": 2}


def test_a_text_added_directly_keeps_its_text_once_and_still_reads_it_as_source(store) -> None:
    report = store.add_texts(["a red circle"], metadatas=[{"album": "x"}])
    stored = store._collections["text"].get(ids=report.ids, include=["metadatas", "documents"])
    assert "source" not in stored["metadatas"][0]  # the document holds the text; no copy in metadata
    assert stored["documents"] == ["a red circle"]
    record = store.get(report.ids)[0]
    assert (record.source, record.text, record.metadata) == ("a red circle", "a red circle", {"album": "x"})
    hit = store.search("a red circle", k=1, modality="text")[0]
    assert (hit.source, hit.text) == ("a red circle", "a red circle")


def test_records_written_with_a_source_copy_still_read_as_before(store, clip_encoder) -> None:
    vector = clip_encoder.embed_texts(["old text"])[0]
    store._collections["text"].upsert(
        ids=["old"],
        embeddings=[vector],
        metadatas=[{"source": "old text", "modality": "text", "album": "y"}],
        documents=["old text"],
    )
    record = store.get(["old"])[0]
    assert (record.source, record.text, record.metadata) == ("old text", "old text", {"album": "y"})
    report = store.add_texts(["old text"], metadatas=[{"album": "y"}], ids=None)
    assert store.search("old text", k=1, modality="text")[0].source == "old text"
    assert report.added == 1  # a content-derived id differs from "old": both are kept
