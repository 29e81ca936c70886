"""The store's #14 wiring: a shared embedding cache, HitList results, progress bars and logs a user can see."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import pytest

import mmrag
from mmrag.cache import EmbeddingCache
from mmrag.store import HitList, MultimodalStore
from mmrag.testing import speckled_image


@pytest.fixture
def cached_encoder():
    encoder = mmrag.load_encoder("demo", device="cpu", batch_size=4)
    yield encoder
    encoder.close()


def test_a_second_store_with_the_same_cache_embeds_nothing(tmp_path, cached_encoder) -> None:
    texts = ["a red circle", "a blue square", "a green triangle"]
    images = [speckled_image((200, 30, 30)), speckled_image((30, 30, 200))]
    cache = EmbeddingCache()
    with MultimodalStore(cached_encoder, path=tmp_path / "one", cache=cache) as first:
        assert cached_encoder.cache is cache
        first.add_texts(texts)
        first.add_images(images)
        before = first.search("a red circle", k=3)
    n = cached_encoder.forward_count
    with MultimodalStore(cached_encoder, path=tmp_path / "two") as second:
        second.add_texts(texts)
        second.add_images(images)
        assert cached_encoder.forward_count == n  # every vector came from the cache
        after = second.search("a red circle", k=3)
    assert [hit.text for hit in after] == [hit.text for hit in before]
    assert cached_encoder.forward_count == n  # the query was cached too


def test_search_returns_a_hitlist_that_is_still_a_plain_list(demo_store) -> None:
    demo_store.add_texts(["a red circle", "a blue square"])
    hits = demo_store.search("a red circle", k=2, modality="text")
    assert isinstance(hits, HitList) and isinstance(hits, list)
    assert hits == list(hits) and isinstance(hits[:1], HitList)
    assert "a red circle" in hits._repr_html_() and "a red circle" in hits[0]._repr_html_()
    assert json.loads(json.dumps([asdict(hit) for hit in hits]))[0]["text"] == "a red circle"
    both = demo_store.search_by_vector(demo_store.embed_query("a blue square"), k=2)
    assert isinstance(both, HitList) and len(both) == 2


def test_add_texts_shows_a_bar_only_when_asked_or_past_one_batch(demo_store, monkeypatch, capsys) -> None:
    monkeypatch.setattr("mmrag.progress.stderr_is_terminal", lambda: True)
    demo_store.add_texts(["one", "two"])  # one batch: no bar even in a terminal
    assert "embedding" not in capsys.readouterr().err
    demo_store.add_texts(["three", "four"], show_progress=True)
    assert "embedding" in capsys.readouterr().err
    demo_store.add_texts([f"text {i}" for i in range(9)])  # three batches of 4 in a terminal
    assert "embedding" in capsys.readouterr().err
    demo_store.add_texts([f"more {i}" for i in range(9)], show_progress=False)
    assert capsys.readouterr().err == ""


def test_index_folder_logs_skipped_files_and_opening_logs_counts(tmp_path, demo_encoder, caplog) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    speckled_image((200, 30, 30)).save(folder / "red.png")
    (folder / "broken.png").write_bytes(b"not an image")
    caplog.set_level(logging.INFO, logger="mmrag")
    with MultimodalStore(demo_encoder, path=tmp_path / "db") as store:
        report = store.index_folder(folder, show_progress=False)
    assert len(report.failed) == 1
    messages = [(record.name, record.levelno, record.getMessage()) for record in caplog.records]
    warned = [text for name, level, text in messages if name == "mmrag.store" and level == logging.WARNING]
    assert any("broken.png" in text for text in warned)
    assert any("opened store 'mmrag' (0 images, 0 texts)" in text for _, _, text in messages)
    with MultimodalStore(demo_encoder, path=tmp_path / "db"):
        pass
    assert "opened store 'mmrag' (1 images, 0 texts)" in caplog.text
