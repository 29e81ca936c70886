"""Crash points of index_folder: an exception at every write step, and kill -9; a re-run leaves no duplicates and
loses nothing."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from store_helpers import assert_store_matches, image, records_by_source

import mmrag
from mmrag.store import MultimodalStore

_WRITES = ("upsert", "delete")
_T0 = 1_700_000_000_000_000_000  # modification times are set explicitly: a change is always a new mtime

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread


class Crash(Exception):
    """The injected failure."""


def _write(folder: Path, name: str, content: str | int, tick: int) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        image((content * 37 % 256, 255 - content * 53 % 256, content * 11 % 256), seed=content).save(path)
    os.utime(path, ns=(_T0 + tick, _T0 + tick))


def _expected(folder: Path) -> dict[str, str]:
    """What the store should hold for ``folder``: source -> text ("" for images)."""
    return {
        str(path): path.read_text(encoding="utf-8") if path.suffix == ".txt" else ""
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _initial(folder: Path) -> None:
    for i in range(6):
        _write(folder, f"img{i}.png", i, 1)
    for i in range(4):
        _write(folder, f"texts/t{i}.txt", f"text number {i}", 1)


def _change(folder: Path) -> None:
    """Every kind of change at once: changed texts and image, deleted, added and renamed files."""
    _write(folder, "texts/t0.txt", "text number 0, changed", 2)
    _write(folder, "texts/t1.txt", "text number 1, changed as well", 2)
    _write(folder, "img0.png", 40, 2)
    (folder / "img1.png").unlink()
    (folder / "texts" / "t3.txt").unlink()
    (folder / "img2.png").rename(folder / "img2-renamed.png")
    _write(folder, "new0.png", 50, 2)
    _write(folder, "new1.png", 51, 2)
    _write(folder, "texts/new.txt", "a new text", 2)


def _count_writes(monkeypatch) -> list[str]:
    import chromadb.api.models.Collection as chroma_collection

    calls: list[str] = []
    for name in _WRITES:
        original = getattr(chroma_collection.Collection, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(chroma_collection.Collection, name, counting)
    return calls


def _crash_at(monkeypatch, step: int, after: bool) -> None:
    """Raise Crash at the ``step``-th Chroma write of the run: instead of it, or right after it."""
    import chromadb.api.models.Collection as chroma_collection

    seen = {"n": 0}
    for name in _WRITES:
        original = getattr(chroma_collection.Collection, name)

        def crashing(self, *args, _original=original, **kwargs):
            seen["n"] += 1
            if seen["n"] == step and not after:
                raise Crash(f"before write {step}")
            result = _original(self, *args, **kwargs)
            if seen["n"] == step:
                raise Crash(f"after write {step}")
            return result

        monkeypatch.setattr(chroma_collection.Collection, name, crashing)


def test_an_exception_at_every_write_step_then_a_rerun_converges(tmp_path, demo_encoder, monkeypatch) -> None:
    """index_folder's writes are Chroma upserts and deletes (a chunk's records, then the records they replace,
    then the records of gone files). Fail at each, before and after it; the re-run must converge."""
    template, folder, db = tmp_path / "template", tmp_path / "photos", tmp_path / "db"
    _initial(folder)
    with MultimodalStore(demo_encoder, path=db) as store:
        store.index_folder(folder)
    shutil.copytree(db, tmp_path / "db-template")
    shutil.copytree(folder, template)  # copy2 keeps the modification times
    _change(folder)
    expected = _expected(folder)
    with MultimodalStore(demo_encoder, path=db) as store:
        calls = _count_writes(monkeypatch)
        clean = store.index_folder(folder)
        monkeypatch.undo()
        assert_store_matches(store, expected)
    assert (clean.added, clean.updated, clean.removed) == (4, 3, 3)  # renamed: one added, one removed
    assert len(calls) >= 5, calls  # image and text chunks, replaced records, gone files

    tried = []
    for step in range(1, len(calls) + 1):
        for after in (False, True):
            for path, source in ((db, tmp_path / "db-template"), (folder, template)):
                shutil.rmtree(path)
                shutil.copytree(source, path)
            _change(folder)
            with MultimodalStore(demo_encoder, path=db) as store:
                _crash_at(monkeypatch, step, after)
                with pytest.raises(Crash):
                    store.index_folder(folder)
                monkeypatch.undo()
                found = records_by_source(store)
                unchanged = [s for s in expected if s.endswith(("img3.png", "img4.png", "img5.png", "t2.txt"))]
                assert all(s in found for s in unchanged), f"lost a record at step {step} (after={after})"
                store.index_folder(folder)
                assert_store_matches(store, expected)
                assert store.index_folder(folder).embedded == 0  # and it stays converged
            tried.append((step, after))
    assert len(tried) == 2 * len(calls)


_KILLED_RUN = """
    import os, signal, sys, time
    import chromadb.api.models.Collection as chroma_collection
    import mmrag
    from mmrag.store import MultimodalStore

    mode, step = sys.argv[1], int(sys.argv[2])
    seen = {"n": 0}
    for name in ("upsert", "delete"):
        original = getattr(chroma_collection.Collection, name)
        def killing(self, *args, _original=original, _name=name, **kwargs):
            seen["n"] += 1
            result = _original(self, *args, **kwargs)
            if mode == "after" and seen["n"] == step:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush, no lock release
            return result
        setattr(chroma_collection.Collection, name, killing)
    with MultimodalStore(mmrag.load_encoder("demo", device="cpu", batch_size=4), path=sys.argv[3]) as store:
        print("READY", flush=True)
        time.sleep(float(sys.argv[5]))
        store.index_folder(sys.argv[4])
        print("DONE", flush=True)
"""


def _killed_run(db: Path, folder: Path, mode: str, step: int, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", textwrap.dedent(_KILLED_RUN), mode, str(step), str(db), str(folder), str(delay)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_kill_9_mid_run_then_a_rerun_converges(tmp_path, demo_encoder) -> None:
    """A process killed with SIGKILL while indexing: right after a changed file's new record is written (before
    its old one is deleted), after later writes, and at a random moment. The next run removes every leftover."""
    folder, db = tmp_path / "photos", tmp_path / "db"
    for i in range(24):
        _write(folder, f"many/img{i:02d}.png", 100 + i, 1)
    _initial(folder)
    with MultimodalStore(demo_encoder, path=db) as store:
        store.index_folder(folder)
    rng = random.Random(13)
    points = [("after", 1, 0.0), ("after", 3, 0.0), ("timer", 0, 0.0)]
    for tick, (mode, step, _) in enumerate(points, start=2):
        for i in range(0, 24, 2):  # change half of the many images each round, and the usual set once
            _write(folder, f"many/img{i:02d}.png", 200 + 10 * tick + i, tick)
        if tick == 2:
            _change(folder)
        process = _killed_run(db, folder, mode, step, delay=0.0)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY", process.stderr.read() if process.stderr else ""
        if mode == "timer":
            time.sleep(rng.uniform(0.05, 0.6))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
        assert process.returncode == -signal.SIGKILL, (mode, step, process.stdout.read(), process.stderr.read())
        expected = _expected(folder)
        with MultimodalStore(demo_encoder, path=db) as store:  # the dead process's lock is gone
            found = records_by_source(store)
            assert all(source in found for source in expected if "many/img" in source and int(source[-6:-4]) % 2)
            store.index_folder(folder)
            assert_store_matches(store, expected)
