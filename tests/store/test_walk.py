"""mmrag.store.walk: which entries index_folder reads; links leaving the folder are not followed by default."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from store_helpers import COLOURS, image, records_by_source

from mmrag.store import MultimodalStore

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and FIFOs need POSIX"),
    pytest.mark.usefixtures("one_torch_thread"),
]

LEAVES = "leaves the indexed folder (pass follow_links=True to follow it)"


@pytest.fixture
def linked(tmp_path):
    """``photos/`` with one image and a note, links of every kind, and ``outside/`` holding a secret."""
    outside = tmp_path / "outside"
    (outside / "album").mkdir(parents=True)
    (outside / "secret.txt").write_text("root:x:0:0 the secret", encoding="utf-8")
    image(COLOURS["green"], seed=5).save(outside / "album" / "far.png")
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    image(COLOURS["red"], seed=1).save(folder / "red.png")
    (folder / "nested" / "note.txt").write_text("a note", encoding="utf-8")
    links = {
        "passwd.txt": outside / "secret.txt",  # a file outside
        "album": outside / "album",  # a folder outside
        "dangling.png": folder / "nowhere.png",
        "loop.txt": folder / "loop.txt",  # points at itself
        "also-nested": folder / "nested",  # a folder inside
        "alias.txt": folder / "nested" / "note.txt",  # a file inside
        "ignored.csv": outside / "secret.txt",  # not an indexed ending: not a candidate at all
    }
    for name, target in links.items():
        os.symlink(target, folder / name)
    return folder


def test_links_that_leave_the_folder_are_not_followed_and_every_skip_is_listed(
    linked, demo_store: MultimodalStore
) -> None:
    report = demo_store.index_folder(linked)
    sources = set(records_by_source(demo_store))
    assert sources == {str(linked / name) for name in ("red.png", "nested/note.txt", "alias.txt")}
    assert all("secret" not in (h.text or "") for h in demo_store.search("the secret", k=10))
    assert dict(report.skipped_links) == {
        str(linked / "passwd.txt"): LEAVES,
        str(linked / "album"): LEAVES,
        str(linked / "dangling.png"): "a dangling link (its target does not exist)",
        str(linked / "loop.txt"): "a symbolic link loop",
        str(linked / "also-nested"): f"links to a folder inside the indexed folder ({linked / 'nested'})",
    }
    assert (report.added, report.failed) == (3, [])
    assert report.summary().endswith("failed 0, skipped links 5")


def test_follow_links_opts_in_and_a_later_run_without_it_removes_what_it_added(
    linked, demo_store: MultimodalStore
) -> None:
    followed = demo_store.index_folder(linked, follow_links=True)
    assert followed.added == 5
    assert {str(linked / "passwd.txt"), str(linked / "album" / "far.png")} <= set(records_by_source(demo_store))
    assert demo_store.search("root:x:0:0 the secret", k=1, modality="text")[0].text == "root:x:0:0 the secret"
    assert {source for source, _ in followed.skipped_links} == {
        str(linked / name) for name in ("dangling.png", "loop.txt", "also-nested")
    }
    default = demo_store.index_folder(linked)
    assert (default.removed, default.skipped) == (2, 3)
    assert str(linked / "passwd.txt") not in records_by_source(demo_store)


def test_a_folder_reached_again_through_links_is_walked_once(tmp_path, demo_store: MultimodalStore) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.txt").write_text("far away", encoding="utf-8")
    folder = tmp_path / "photos"
    folder.mkdir()
    os.symlink(outside, folder / "a")
    os.symlink(outside, folder / "b")  # the same folder again
    os.symlink(tmp_path, outside / "up")  # a loop back above the indexed folder
    report = demo_store.index_folder(folder, follow_links=True)
    assert set(records_by_source(demo_store)) == {str(folder / "a" / "far.txt")}
    assert dict(report.skipped_links)[str(folder / "b")] == f"links to a folder walked already ({outside})"
    assert report.added == 1


def test_special_entries_with_indexed_endings(tmp_path, demo_store: MultimodalStore) -> None:
    folder = tmp_path / "photos"
    (folder / "x.png").mkdir(parents=True)  # a folder named like an image is a folder
    (folder / "x.png" / "inside.txt").write_text("inside a folder named x.png", encoding="utf-8")
    os.mkfifo(folder / "pipe.txt")  # opening it would block for ever
    (folder / ".hidden.txt").write_text("hidden", encoding="utf-8")
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(report=demo_store.index_folder(folder)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "index_folder blocked on a FIFO"
    report = result["report"]
    assert report.failed == [(str(folder / "pipe.txt"), "not a regular file (a FIFO)")]
    assert set(records_by_source(demo_store)) == {str(folder / "x.png" / "inside.txt")}
    not_recursive = demo_store.index_folder(folder, recursive=False)
    assert (not_recursive.removed, not_recursive.failed[0][0]) == (1, str(folder / "pipe.txt"))


def test_an_unreadable_subfolder_is_failed_and_its_records_kept(
    tmp_path, demo_store: MultimodalStore, monkeypatch
) -> None:
    folder = tmp_path / "photos"
    locked = folder / "locked"
    locked.mkdir(parents=True)
    (locked / "kept.txt").write_text("kept", encoding="utf-8")
    assert demo_store.index_folder(folder).added == 1
    if os.geteuid() == 0:  # root reads every folder: refuse this one the way the OS would
        scandir = os.scandir

        def refusing(path=".", *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(locked))
            return scandir(path, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", refusing)
    locked.chmod(0)
    try:
        report = demo_store.index_folder(folder)
    finally:
        locked.chmod(0o755)
    assert report.failed == [(str(locked), "cannot read folder: Permission denied")]
    assert report.removed == 0 and set(records_by_source(demo_store)) == {str(locked / "kept.txt")}
