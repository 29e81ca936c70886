"""mmrag.store.folder: index_folder keeps a store in sync with a folder, reading and writing around the model."""

from __future__ import annotations

import os
import threading
import time

import pytest
from store_helpers import COLOURS, image, make_folder

from mmrag.store import MultimodalStore
from mmrag.store import folder as folder_module

_PIPELINE_THREADS = ("mmrag-read", "mmrag-write")


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(_PIPELINE_THREADS)]


def test_index_folder_sync(tmp_path, store: MultimodalStore, clip_encoder) -> None:
    folder = make_folder(tmp_path)
    first = store.index_folder(folder)
    assert (first.added, first.updated, first.skipped, first.removed, first.failed) == (6, 0, 0, 0, [])
    assert store.count("image") == 4 and store.count("text") == 2
    assert len(first.ids) == 6 and first.embedded == 6 and str(first) == first.summary()

    forwards = clip_encoder.forward_count
    second = store.index_folder(folder)
    assert (second.added, second.skipped, second.embedded) == (0, 6, 0)
    assert clip_encoder.forward_count == forwards  # zero embeddings on an unchanged re-run
    assert sorted(second.ids) == sorted(first.ids)

    (folder / "notes.txt").write_text("now about green things", encoding="utf-8")
    os.utime(folder / "notes.txt", ns=(time.time_ns(), time.time_ns() + 10_000_000))
    (folder / "nested" / "green.png").unlink()
    image(COLOURS["red"], seed=9).save(folder / "new.png")
    third = store.index_folder(folder)
    assert (third.added, third.updated, third.removed, third.skipped) == (1, 1, 1, 4)
    assert store.count("image") == 4 and store.count("text") == 2
    texts = {h.text for h in store.search("x", k=10, modality="text")}
    assert "now about green things" in texts and "a note about red things" not in texts
    sources = {h.source for h in store.search("x", k=10, modality="image")}
    assert str((folder / "new.png").resolve()) in sources
    assert str((folder / "nested" / "green.png").resolve()) not in sources


def test_not_recursive_and_not_a_folder(tmp_path, store: MultimodalStore) -> None:
    folder = make_folder(tmp_path)
    report = store.index_folder(folder, recursive=False)
    assert report.added == 4  # red.png, blue.png, notes.txt, readme.md; nested/ is left out
    with pytest.raises(NotADirectoryError, match="not a folder"):
        store.index_folder(folder / "notes.txt")


def test_index_folder_reports_corrupt_files_and_indexes_the_rest(tmp_path, store: MultimodalStore) -> None:
    folder = make_folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "blank.md").write_text("  \n", encoding="utf-8")
    report = store.index_folder(folder)
    failed = dict(report.failed)
    assert set(failed) == {str((folder / name).resolve()) for name in ("broken.jpg", "latin1.txt", "blank.md")}
    assert "UTF-8" in failed[str((folder / "latin1.txt").resolve())]
    assert failed[str((folder / "blank.md").resolve())] == "empty text file"
    assert report.added == 6 and store.count() == 6


def test_interrupted_index_finishes_without_duplicates(tmp_path, store: MultimodalStore, monkeypatch) -> None:
    folder = make_folder(tmp_path)
    calls = {"n": 0}
    original = folder_module.write_chunk

    def crash_after_first_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(folder_module, "write_chunk", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        store.index_folder(folder)  # batch_size 4: the first 4 files land, then the run dies
    assert _pipeline_threads() == []
    monkeypatch.setattr(folder_module, "write_chunk", original)
    assert 0 < store.count() < 6
    report = store.index_folder(folder)
    assert report.skipped + report.added == 6
    assert store.count() == 6
    assert len({h.source for h in store.search("x", k=20)}) == 6


def test_reading_and_writing_overlap_embedding_and_writes_stay_in_order(
    tmp_path, store: MultimodalStore, clip_encoder, monkeypatch
) -> None:
    """Chunk 0 (4 images) and chunk 1 (2 texts): chunk 1 is read while chunk 0 is embedded, chunk 0 written while
    chunk 1 is embedded. Each embedding blocks until the other stage has started; without the overlap it times out."""
    folder = make_folder(tmp_path)
    text_read_started, image_write_started = threading.Event(), threading.Event()
    reads: list[str] = []
    writes: list[tuple[str, list[str]]] = []
    read_text, write_chunk = folder_module.read_text, folder_module.write_chunk
    read_image_bytes = folder_module.read_image_bytes
    embed_images, embed_texts = clip_encoder.embed_images, clip_encoder.embed_texts

    def reading_text(file):
        reads.append(threading.current_thread().name)
        text_read_started.set()
        return read_text(file)

    def reading_image(file, **kwargs):
        reads.append(threading.current_thread().name)
        return read_image_bytes(file, **kwargs)

    def writing(collections, chunk):
        writes.append((threading.current_thread().name, sorted(item.modality for item in chunk.items)))
        image_write_started.set()
        write_chunk(collections, chunk)

    def embedding_images(images):
        assert text_read_started.wait(timeout=30), "chunk 1 was not read while chunk 0 was embedded"
        return embed_images(images)

    def embedding_texts(texts):
        assert image_write_started.wait(timeout=30), "chunk 0 was not written while chunk 1 was embedded"
        return embed_texts(texts)

    monkeypatch.setattr(folder_module, "read_text", reading_text)
    monkeypatch.setattr(folder_module, "read_image_bytes", reading_image)
    monkeypatch.setattr(folder_module, "write_chunk", writing)
    monkeypatch.setattr(clip_encoder, "embed_images", embedding_images)
    monkeypatch.setattr(clip_encoder, "embed_texts", embedding_texts)

    report = store.index_folder(folder)
    assert report.added == 6 and store.count("image") == 4 and store.count("text") == 2
    assert len(reads) == 6 and all(name.startswith("mmrag-read") for name in reads)
    assert [modalities for _, modalities in writes] == [["image"] * 4, ["text"] * 2]  # in order
    assert all(name.startswith("mmrag-write") for name, _ in writes)
    assert _pipeline_threads() == []


def test_an_embedding_failure_propagates_and_stops_the_threads(
    tmp_path, store: MultimodalStore, clip_encoder, monkeypatch
) -> None:
    folder = make_folder(tmp_path)

    def broken(texts):
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(clip_encoder, "embed_texts", broken)
    with pytest.raises(RuntimeError, match="the model fell over"):
        store.index_folder(folder)
    assert _pipeline_threads() == []
    assert (store.count("image"), store.count("text")) == (4, 0)  # chunk 0 was written before the error surfaced
    monkeypatch.undo()
    report = store.index_folder(folder)
    assert (report.skipped, report.added, store.count()) == (4, 2, 6)


def test_a_write_failure_propagates_and_stops_the_threads(tmp_path, store: MultimodalStore, monkeypatch) -> None:
    folder = make_folder(tmp_path)

    def full_disk(collections, chunk):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder_module, "write_chunk", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.index_folder(folder)
    assert _pipeline_threads() == []
    assert store.count() == 0
