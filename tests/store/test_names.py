"""mmrag.store.names: file names that are not UTF-8 are indexed, stored exactly and shown readably."""

from __future__ import annotations

import os
import sys

import pytest
from store_helpers import COLOURS, image, raw_path, records_by_source

from mmrag.store import MultimodalStore
from mmrag.store.names import path_from_key, path_key, printable

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes; Windows' are UTF-16"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain.txt", "plain.txt"),
        ("caf\u00e9 \u65e5\u672c.txt", "caf\u00e9 \u65e5\u672c.txt"),  # valid UTF-8 stays as it is
        (os.fsdecode(b"caf\xff.txt"), "caf\\xff.txt"),
        (os.fsdecode(b"\xc3(\xa0\xa1.md"), "\\xc3(\\xa0\\xa1.md"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),  # not from a file name: still printable
    ],
)
def test_printable_and_exact_keys_round_trip(name: str, shown: str) -> None:
    assert printable(name) == shown
    printable(name).encode("utf-8")  # always encodable: printing or sending it as JSON cannot fail
    if "\ud800" not in name:
        assert path_from_key(path_key(name)) == name  # lossless
        assert path_key(name) == name or path_key(name).startswith("bytes:")


def test_non_utf8_names_are_indexed_stored_exactly_and_shown_readably(tmp_path, demo_store: MultimodalStore) -> None:
    folder = raw_path(tmp_path, b"photos\xff")  # even the indexed folder's own name
    sub = raw_path(folder, b"sub\xfe")
    sub.mkdir(parents=True)
    picture = raw_path(folder, b"caf\xff.png")
    image(COLOURS["red"], seed=1).save(picture)
    note = raw_path(sub, b"note\xff.txt")
    note.write_bytes(b"a note with an odd name")
    bad = raw_path(sub, b"latin\xe9.txt")
    bad.write_bytes(b"caf\xe9")

    report = demo_store.index_folder(folder)
    shown = str(tmp_path) + "/photos\\xff"
    assert (report.added, report.failed) == (2, [(f"{shown}/sub\\xfe/latin\\xe9.txt", report.failed[0][1])])
    assert report.failed[0][1] == "not UTF-8 text (byte 0xe9 at offset 3)"
    assert set(records_by_source(demo_store)) == {str(picture), str(note)}  # the exact names, losslessly
    stored = demo_store.client.get_collection("demo_images").get(include=["metadatas"])["metadatas"][0]
    assert stored["source"] == f"{shown}/caf\\xff.png"  # readable, and Chroma accepts it
    assert stored["mmrag_path"] == "bytes:" + os.fsencode(picture).hex()
    hit = demo_store.search("a note with an odd name", k=1, modality="text")[0]
    assert (hit.source, hit.text) == (f"{shown}/sub\\xfe/note\\xff.txt", "a note with an odd name")
    print(report.failed, hit.source)  # printing never fails on such names

    again = demo_store.index_folder(folder)  # the exact names match: nothing is embedded again
    assert (again.skipped, again.added, again.embedded, again.removed) == (2, 0, 0, 0)
    note.unlink()
    gone = demo_store.index_folder(folder)
    assert (gone.skipped, gone.removed) == (1, 1)
    assert set(records_by_source(demo_store)) == {str(picture)}


def test_two_names_that_look_alike_stay_two_files(tmp_path, demo_store: MultimodalStore) -> None:
    """``a\\xff.txt`` (the byte) and ``a\\\\xff.txt`` (a backslash, x, f, f) print alike but are two files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    raw_path(folder, b"a\xff.txt").write_text("the byte", encoding="utf-8")
    (folder / "a\\xff.txt").write_text("the backslash", encoding="utf-8")
    assert demo_store.index_folder(folder).added == 2
    assert demo_store.index_folder(folder).skipped == 2  # neither replaces the other
    raw_path(folder, b"a\xff.txt").unlink()
    report = demo_store.index_folder(folder)
    assert (report.removed, report.skipped) == (1, 1)
    assert [h.text for h in demo_store.search("x", k=5, modality="text")] == ["the backslash"]


def test_add_images_with_a_non_utf8_path(tmp_path, demo_store: MultimodalStore) -> None:
    picture = raw_path(tmp_path, b"\xff.png")
    image(COLOURS["blue"], seed=3).save(picture)
    report = demo_store.add_images([picture])
    assert report.added == 1
    assert demo_store.get(report.ids)[0].source == f"{tmp_path}/\\xff.png"
    assert demo_store.add_images([picture]).skipped == 1
