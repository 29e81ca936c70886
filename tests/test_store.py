"""MultimodalStore on a real Chroma: embedded in a temp dir, and a `chroma run` server."""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import mmrag
from mmrag.errors import ImageInputError, StoreMismatchError
from mmrag.store import Hit, MultimodalStore, merge_ranked
from mmrag.testing import speckled_image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
_image = functools.partial(speckled_image, size=48, dots=40)  # 48 px, 40 random dots


def _make_folder(root: Path) -> Path:
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    for n, (name, colour) in enumerate(COLOURS.items()):
        target = folder / ("nested" if n % 2 else "") / f"{name}.png"
        _image(colour, seed=n).save(target)
    (folder / "notes.txt").write_text("a note about red things", encoding="utf-8")
    (folder / "readme.md").write_text("# Blue\nsomething about the sea", encoding="utf-8")
    (folder / "ignored.csv").write_text("a,b", encoding="utf-8")
    return folder


@pytest.fixture
def store(tmp_path, clip_encoder):
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="test") as opened:
        yield opened


def test_four_directions_and_exact_matches_rank_first(store: MultimodalStore) -> None:
    images = [_image(c, seed=i) for i, c in enumerate(COLOURS.values())]
    texts = ["a red circle", "a blue square", "a green star", "a yellow heart"]
    store.add_images(images, metadatas=[{"colour": name} for name in COLOURS])
    store.add_texts(texts)

    text_to_image = store.search("a red circle", k=3, modality="image")
    text_to_text = store.search("a blue square", k=2, modality="text")
    image_to_image = store.search(images[2], k=2, modality="image")
    image_to_text = store.search(images[0], k=4, modality="text")

    assert [h.modality for h in text_to_image] == ["image"] * 3
    assert text_to_text[0].text == "a blue square" and text_to_text[0].score == pytest.approx(1.0, abs=1e-4)
    assert text_to_text[0].source == "a blue square"
    assert image_to_image[0].metadata == {"colour": "blue"} and image_to_image[0].score == pytest.approx(1.0, abs=1e-4)
    assert image_to_image[0].source is None  # pixels are never stored as a source
    assert {h.text for h in image_to_text} == set(texts)
    assert all(a.score >= b.score for a, b in itertools.pairwise(image_to_text))


def test_scores_are_cosine_similarities(store: MultimodalStore, clip_encoder) -> None:
    store.add_texts(["alpha", "beta"])
    hits = store.search("gamma", k=2, modality="text")
    query = clip_encoder.embed_texts(["gamma"])[0]
    expected = {t: float(query @ clip_encoder.embed_texts([t])[0]) for t in ("alpha", "beta")}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.text], abs=1e-4)


def test_mixed_modalities_are_fused_by_rank_not_scale(store: MultimodalStore) -> None:
    store.add_texts(["a red circle"] * 4, ids=["t1", "t2", "t3", "t4"])
    store.add_images([_image(c, seed=i) for i, c in enumerate(COLOURS.values())])
    fused = store.search("a red circle", k=4)
    by_score = store.search("a red circle", k=4, fusion="score")
    # Near-duplicate texts score far above any image; raw scores would show texts only.
    assert [h.modality for h in by_score] == ["text"] * 4
    assert sorted(h.modality for h in fused) == ["image", "image", "text", "text"]
    assert fused[0].text == "a red circle"


def test_merge_ranked_interleaves_equal_ranks() -> None:
    texts = [Hit(f"t{i}", "text", None, "t", {}, 0.9 - i / 100) for i in range(3)]
    images = [Hit(f"i{i}", "image", None, None, {}, 0.3 - i / 100) for i in range(3)]
    merged = merge_ranked([texts, images], 4)
    assert [h.id for h in merged] == ["t0", "i0", "t1", "i1"]


def test_metadata_filter(store: MultimodalStore) -> None:
    store.add_images(
        [_image(c, seed=i) for i, c in enumerate(COLOURS.values())],
        metadatas=[{"colour": name, "n": i} for i, name in enumerate(COLOURS)],
    )
    hits = store.search("anything", k=10, where={"colour": "blue"})
    assert [h.metadata["colour"] for h in hits] == ["blue"]
    hits = store.search("anything", k=10, modality="image", where={"n": {"$gte": 2}})
    assert sorted(h.metadata["n"] for h in hits) == [2, 3]


def test_adding_same_content_again_changes_nothing(store: MultimodalStore, clip_encoder) -> None:
    first = store.add_texts(["one", "two"])
    before = clip_encoder.forward_count
    again = store.add_texts(["one", "two"])
    assert (first.added, again.added, again.skipped) == (2, 0, 2)
    assert again.ids == first.ids and clip_encoder.forward_count == before
    assert store.count("text") == 2
    updated = store.add_texts(["one"], metadatas=[{"tag": "x"}])
    assert updated.updated == 1 and store.get(first.ids[:1])[0].metadata == {"tag": "x"}


def test_ids_depend_on_content_and_model(tmp_path, store: MultimodalStore, tiny_encoders) -> None:
    image = _image(COLOURS["red"])
    a = store.add_images([image]).ids[0]
    b = store.add_images([np.asarray(image)]).ids[0]  # same pixels, other input type
    assert a == b and store.count("image") == 1
    with MultimodalStore(tiny_encoders["siglip"], path=tmp_path / "other", collection="test") as other:
        assert other.add_images([image]).ids[0] != a


def test_bad_image_names_item_and_stores_nothing(store: MultimodalStore) -> None:
    store.add_texts(["kept"])
    with pytest.raises(ImageInputError, match=r"image 1\b"):
        store.add_images([_image(COLOURS["red"]), b"\x89PNG broken", _image(COLOURS["blue"])])
    assert store.count("image") == 0 and store.count("text") == 1


def test_bad_metadata_is_named(store: MultimodalStore) -> None:
    with pytest.raises(ValueError, match="metadata of item 1: value of 'tags' must be"):
        store.add_texts(["a", "b"], metadatas=[{}, {"tags": ["x"]}])
    with pytest.raises(ValueError, match="reserved"):
        store.add_texts(["a"], metadatas=[{"modality": "image"}])


def test_get_delete_and_count(store: MultimodalStore) -> None:
    text_ids = store.add_texts(["x", "y"]).ids
    image_ids = store.add_images([_image(COLOURS["red"])], ids=["my-image"]).ids
    assert image_ids == ["my-image"]
    records = store.get([image_ids[0], "missing", text_ids[1]])
    assert [(r.id, r.modality) for r in records] == [("my-image", "image"), (text_ids[1], "text")]
    assert store.delete([text_ids[0], "missing"]) == 1
    assert (store.count(), store.count("text"), store.count("image")) == (2, 1, 1)


def test_index_folder_sync(tmp_path, store: MultimodalStore, clip_encoder) -> None:
    folder = _make_folder(tmp_path)
    first = store.index_folder(folder)
    assert (first.added, first.updated, first.skipped, first.removed, first.failed) == (6, 0, 0, 0, [])
    assert store.count("image") == 4 and store.count("text") == 2

    forwards = clip_encoder.forward_count
    second = store.index_folder(folder)
    assert (second.added, second.skipped, second.embedded) == (0, 6, 0)
    assert clip_encoder.forward_count == forwards  # zero embeddings on an unchanged re-run

    (folder / "notes.txt").write_text("now about green things", encoding="utf-8")
    os.utime(folder / "notes.txt", ns=(time.time_ns(), time.time_ns() + 10_000_000))
    (folder / "nested" / "green.png").unlink()
    _image(COLOURS["red"], seed=9).save(folder / "new.png")
    third = store.index_folder(folder)
    assert (third.added, third.updated, third.removed, third.skipped) == (1, 1, 1, 4)
    assert store.count("image") == 4 and store.count("text") == 2
    texts = {h.text for h in store.search("x", k=10, modality="text")}
    assert "now about green things" in texts and "a note about red things" not in texts
    sources = {h.source for h in store.search("x", k=10, modality="image")}
    assert str((folder / "new.png").resolve()) in sources
    assert str((folder / "nested" / "green.png").resolve()) not in sources


def test_index_folder_reports_corrupt_files_and_indexes_the_rest(tmp_path, store: MultimodalStore) -> None:
    folder = _make_folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    report = store.index_folder(folder)
    failed = dict(report.failed)
    assert set(failed) == {str((folder / "broken.jpg").resolve()), str((folder / "latin1.txt").resolve())}
    assert "UTF-8" in failed[str((folder / "latin1.txt").resolve())]
    assert report.added == 6 and store.count() == 6


def test_interrupted_index_finishes_without_duplicates(tmp_path, store: MultimodalStore, monkeypatch) -> None:
    folder = _make_folder(tmp_path)
    calls = {"n": 0}
    original = store._write_folder_chunk

    def crash_after_first_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "_write_folder_chunk", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        store.index_folder(folder)  # batch_size 4: the first 4 files land, then the run dies
    monkeypatch.setattr(store, "_write_folder_chunk", original)
    assert 0 < store.count() < 6
    report = store.index_folder(folder)
    assert report.skipped + report.added == 6
    assert store.count() == 6
    assert len({h.source for h in store.search("x", k=20)}) == 6


def test_model_mismatch_is_refused(tmp_path, tiny_encoders) -> None:
    path = tmp_path / "db"
    with MultimodalStore(tiny_encoders["clip"], path=path) as opened:
        opened.add_texts(["kept"])
    with pytest.raises(StoreMismatchError, match="was built with model") as info:
        MultimodalStore(tiny_encoders["siglip"], path=path)
    assert "another collection name or path" in str(info.value)
    with MultimodalStore(tiny_encoders["clip"], path=path) as reopened:
        assert reopened.count() == 1


def test_invalid_collection_name() -> None:
    with pytest.raises(ValueError, match="invalid collection name"):
        MultimodalStore(object(), collection="ab")  # type: ignore[arg-type]


def _run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_second_process_fails_fast(tmp_path, clip_encoder) -> None:
    path = tmp_path / "db"
    with MultimodalStore(clip_encoder, path=path) as opened:
        opened.add_texts(["held"])
        started = time.monotonic()
        result = _run_python(f"""
            import mmrag
            from mmrag.store import MultimodalStore
            try:
                MultimodalStore.recorded_model({str(path)!r})
            except mmrag.StoreLockedError as exc:
                print("LOCKED", exc)
        """)
        assert time.monotonic() - started < 60
        assert "LOCKED" in result.stdout and "already open in process" in result.stdout, result.stderr
    # Closed: the other process may open it now.
    result = _run_python(
        f"from mmrag.store import MultimodalStore; print(MultimodalStore.recorded_model({str(path)!r}))"
    )
    assert result.stdout.strip() == clip_encoder.model_id, result.stderr


def test_reopening_in_fresh_process_gives_same_results(tmp_path, clip_encoder) -> None:
    path = tmp_path / "db"
    folder = _make_folder(tmp_path)
    with MultimodalStore(clip_encoder, path=path) as opened:
        opened.index_folder(folder)
        expected = [(h.id, round(h.score, 4)) for h in opened.search("a red circle", k=6)]
    result = _run_python(f"""
        import json, mmrag
        from mmrag.store import MultimodalStore
        enc = mmrag.load_encoder({clip_encoder.model_id!r}, device="cpu")
        with MultimodalStore(enc, path={str(path)!r}) as store:
            print(json.dumps([(h.id, round(h.score, 4)) for h in store.search("a red circle", k=6)]))
    """)
    assert [tuple(x) for x in json.loads(result.stdout.strip().splitlines()[-1])] == expected, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma_server")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("chroma run did not start within 60 s")
    yield port
    process.terminate()
    process.wait(timeout=30)


def test_chroma_server_client(chroma_server, clip_encoder, tmp_path) -> None:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    store = MultimodalStore(clip_encoder, client=client, collection="served")
    folder = _make_folder(tmp_path)
    report = store.index_folder(folder)
    assert report.added == 6
    hits = store.search(_image(COLOURS["blue"], seed=2), k=1, modality="image")
    assert hits[0].source == str((folder / "blue.png").resolve())
    assert store.search("a note about red things", k=1, modality="text")[0].text == "a note about red things"
    again = MultimodalStore(
        clip_encoder, client=chromadb.HttpClient(host="127.0.0.1", port=chroma_server), collection="served"
    )
    assert again.index_folder(folder).skipped == 6
