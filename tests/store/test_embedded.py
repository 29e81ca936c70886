"""mmrag.store.embedded: a reopened store is never stale; a full disk or a read-only folder gets a clear error."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import assert_store_matches, image, run_python

from mmrag.store import MultimodalStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread


def _chroma_systems() -> dict:
    from chromadb.api.shared_system_client import SharedSystemClient

    return SharedSystemClient._identifier_to_system


def test_a_reopened_store_sees_what_another_process_wrote(tmp_path, demo_encoder) -> None:
    """Chroma caches one System (and its vector index) per path; an unclosed client kept the old index alive,
    so a reopened store counted 40 records but searched 10 and answered a query for a new image wrongly."""
    path = tmp_path / "db"
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    files = []
    for i in range(40):
        files.append(pictures / f"{i:02d}.png")
        image((6 * i, 255 - 6 * i, (97 * i) % 256), seed=i).save(files[-1])
    with MultimodalStore(demo_encoder, path=path) as store:
        store.add_images(files[:10])
        assert len(store.search("x", k=50, modality="image")) == 10
    writer = run_python(f"""
        import mmrag
        from mmrag.store import MultimodalStore
        with MultimodalStore(mmrag.load_encoder("demo", device="cpu"), path={str(path)!r}) as store:
            print("WROTE", store.add_images({[str(f) for f in files[10:]]!r}).added)
    """)
    assert "WROTE 30" in writer.stdout, writer.stderr
    with MultimodalStore(demo_encoder, path=path) as store:
        assert store.count() == 40
        assert len(store.search("x", k=50, modality="image")) == 40
        for probe in (files[25], files[39]):
            assert store.search(probe, k=1, modality="image")[0].source == str(probe)
    assert str(path) not in _chroma_systems()


def test_close_releases_chromas_cache_only_when_the_last_store_closes(tmp_path, demo_encoder) -> None:
    path = tmp_path / "db"
    first = MultimodalStore(demo_encoder, path=path)
    second = MultimodalStore(demo_encoder, path=path)
    first.add_texts(["shared"])
    first.close()
    assert second.count() == 1 and str(path) in _chroma_systems()  # the other store still works
    assert MultimodalStore.recorded_model(path) == demo_encoder.model_id  # opens and closes its own client
    assert str(path) in _chroma_systems()
    second.close()
    second.close()
    assert str(path) not in _chroma_systems()
    assert MultimodalStore.recorded_model(path) == demo_encoder.model_id
    assert str(path) not in _chroma_systems()


# ---------------------------------------------------------------- full disk, read-only folder
def _can_mount(tmp_path: Path) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
    if mounted.returncode != 0:
        return False
    subprocess.run(["umount", str(probe)], check=True)
    return True


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    with open(filler, "ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 512)
    return filler


def _photos(folder: Path, start: int, n: int) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    expected = {}
    for i in range(start, start + n):
        image((40 * i % 256, 90, 200), seed=i).save(folder / f"{i:02d}.png")
        expected[str(folder / f"{i:02d}.png")] = ""
        (folder / f"{i:02d}.txt").write_text(f"note number {i} " * 30, encoding="utf-8")
        expected[str(folder / f"{i:02d}.txt")] = f"note number {i} " * 30
    return expected


def test_a_full_disk_is_a_clear_error_nothing_is_lost_and_a_rerun_completes(
    tmp_path, demo_encoder, monkeypatch
) -> None:
    folder = tmp_path / "photos"
    expected = _photos(folder, 0, 4)
    with contextlib.ExitStack() as stack:
        if _can_mount(tmp_path):  # a real, small disk that fills up
            disk = stack.enter_context(_tmpfs(tmp_path / "disk", "8m"))
            store = stack.enter_context(MultimodalStore(demo_encoder, path=disk / "db"))
            store.index_folder(folder)
            free_space = _fill(disk).unlink
        else:  # no mounting here: a write that fails the way a full disk does
            store = stack.enter_context(MultimodalStore(demo_encoder, path=tmp_path / "db"))
            store.index_folder(folder)
            import chromadb.api.models.Collection as chroma_collection

            def no_space(self, *args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(chroma_collection.Collection, "upsert", no_space)
            free_space = monkeypatch.undo
        more = _photos(folder, 4, 8)
        with pytest.raises(OSError, match="no space left on its device") as info:
            store.index_folder(folder)
        assert info.value.errno == errno.ENOSPC and str(store.path) in str(info.value)
        assert store.count() >= len(expected)  # what was stored before is still there
        free_space()
        report = store.index_folder(folder)
        assert report.added + report.skipped == len(expected) + len(more)
        assert_store_matches(store, {**expected, **more})


def _remount(disk: Path, mode: str) -> None:
    """Remount ``disk`` read-only or read-write; Chroma's background threads may hold a file a moment after close."""
    for attempt in range(12):
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(0.25 * (attempt + 1))
    holders = [fd for fd in Path("/proc").glob("[0-9]*/fd/*") if str(disk) in _link(fd)]
    raise AssertionError(f"cannot remount {disk} {mode}: {done.stderr.strip()}; open there: {holders}")


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def test_a_read_only_store_is_a_clear_error_and_nothing_is_lost(tmp_path, demo_encoder) -> None:
    folder = tmp_path / "photos"
    expected = _photos(folder, 0, 2)
    with contextlib.ExitStack() as stack:
        mounted = _can_mount(tmp_path)
        if mounted:
            disk = stack.enter_context(_tmpfs(tmp_path / "disk", "16m"))
        elif os.geteuid() == 0:
            pytest.skip("root writes to read-only folders and cannot mount here")
        else:
            disk = tmp_path / "disk"
            disk.mkdir()
        path = disk / "db"
        with MultimodalStore(demo_encoder, path=path) as store:
            store.index_folder(folder)
        if mounted:
            _remount(disk, "ro")
        else:
            for entry in [path, *path.rglob("*")]:
                entry.chmod(0o555 if entry.is_dir() else 0o444)
        with pytest.raises(OSError, match="read-only") as info:
            MultimodalStore(demo_encoder, path=path)
        assert info.value.errno in (errno.EROFS, errno.EACCES) and str(path) in str(info.value)
        if mounted:
            _remount(disk, "rw")
        else:
            for entry in [path, *path.rglob("*")]:
                entry.chmod(0o755 if entry.is_dir() else 0o644)
        with MultimodalStore(demo_encoder, path=path) as store:
            assert store.index_folder(folder).skipped == len(expected)
            assert_store_matches(store, expected)


def test_opening_on_a_full_disk_fails_clearly_and_works_once_there_is_space(tmp_path, demo_encoder) -> None:
    """Chroma caches a path's System before starting it; a start that fails (full disk) left a broken one that
    made every later open in the process fail with an unrelated AttributeError."""
    if not _can_mount(tmp_path):
        pytest.skip("needs a small tmpfs (root on Linux)")
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        with MultimodalStore(demo_encoder, path=disk / "db") as store:
            store.add_texts(["kept one", "kept two"])
        filler = _fill(disk)
        with pytest.raises(OSError, match="cannot open the store at .*: no space left on its device") as info:
            MultimodalStore(demo_encoder, path=disk / "db")
        assert info.value.errno == errno.ENOSPC
        filler.unlink()
        with MultimodalStore(demo_encoder, path=disk / "db") as store:
            assert store.count() == 2 and store.search("kept one", k=1)[0].text == "kept one"
