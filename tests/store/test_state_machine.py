"""A property-based state machine over index_folder: random adds, changes, deletes, renames and corruptions,
odd names and empty texts, re-indexed and searched. After every re-index: store = folder (one record per good
file, none for gone or bad ones, no duplicates, every failure named, a search sees every record)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from store_helpers import assert_store_matches, image, raw_path

import mmrag
from mmrag.store import MultimodalStore
from mmrag.store.names import printable

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="file names as bytes are POSIX"),
    pytest.mark.usefixtures("one_torch_thread"),
]

NAMES = [
    b"a.png",
    b"b.jpg",
    b"sub/c.png",
    b"caf\xff.png",  # not UTF-8
    b"t1.txt",
    b"notes.md",
    b"sub/t\xfe.txt",
    b"a\xff.txt",
    b"a\\xff.txt",  # prints like the one above
    b"with space.txt",
    "日本.txt".encode(),
]
IMAGE_ENDINGS = (b".png", b".jpg")
BAD_CONTENT = [b"", b" \n\t ", b"caf\xe9", b"\x89PNG\r\n broken"]  # empty, blank, not UTF-8, corrupt image
CHANGES = st.one_of(
    st.tuples(st.just("good"), st.sampled_from(NAMES), st.integers(0, 5)),
    st.tuples(st.just("bad"), st.sampled_from(NAMES), st.sampled_from(BAD_CONTENT)),
    st.tuples(st.just("delete"), st.integers(0, 20)),
    st.tuples(st.just("rename"), st.integers(0, 20), st.integers(0, 20)),
)
T0 = 1_700_000_000_000_000_000
ENCODER = None  # loaded once, on first use (a module-level load would slow down collection)


def _encoder() -> object:
    global ENCODER
    if ENCODER is None:
        ENCODER = mmrag.load_encoder("demo", device="cpu", batch_size=4)
    return ENCODER


class FolderMachine(RuleBasedStateMachine):
    """The model: name -> ("image", seed) | ("text", text) | ("bytes", raw) for what each file holds."""

    @initialize()
    def open_store(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mmrag-machine-"))
        self.folder = self.tmp / "photos"
        self.folder.mkdir()
        self.store = MultimodalStore(_encoder(), path=self.tmp / "db", collection="machine")
        self.files: dict[bytes, tuple[str, object]] = {}
        self.tick = 0

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------- the folder
    def _path(self, name: bytes) -> Path:
        return raw_path(self.folder, name)

    def _touch(self, name: bytes) -> None:
        self.tick += 1_000_000  # every change gets a new modification time (change detection is size + mtime)
        os.utime(self._path(name), ns=(T0 + self.tick, T0 + self.tick))

    def _write_good(self, name: bytes, seed: int) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(IMAGE_ENDINGS):
            image((40 * seed, 250 - 40 * seed, 90), seed=seed).save(path, format="PNG")
            self.files[name] = ("image", seed)
        else:  # texts of one name all have the same size: only the mtime tells a change
            text = f"text {seed} in {printable(os.fsdecode(name))}"
            path.write_text(text, encoding="utf-8")
            self.files[name] = ("text", text)
        self._touch(name)

    def _write_bad(self, name: bytes, raw: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        self.files[name] = ("bytes", raw)
        self._touch(name)

    def _delete(self, pick: int) -> None:
        if self.files:
            name = sorted(self.files)[pick % len(self.files)]
            self._path(name).unlink()
            del self.files[name]

    def _rename(self, pick: int, to: int) -> None:
        free = sorted(set(NAMES) - set(self.files))
        if self.files and free:
            old, new = sorted(self.files)[pick % len(self.files)], free[to % len(free)]
            self._path(new).parent.mkdir(parents=True, exist_ok=True)
            self._path(old).rename(self._path(new))  # keeps the modification time
            self.files[new] = self.files.pop(old)

    @rule(changes=st.lists(CHANGES, min_size=1, max_size=4), search=st.integers(0, 100), again=st.booleans())
    def change_and_reindex(self, changes: list[tuple], search: int, again: bool) -> None:
        """Apply a few changes to the folder, re-index, and check that the store is the folder."""
        for kind, *args in changes:
            {"good": self._write_good, "bad": self._write_bad, "delete": self._delete, "rename": self._rename}[kind](
                *args
            )
        report = self.store.index_folder(self.folder)
        good, bad = self._expected()
        assert {source for source, _ in report.failed} == {printable(source) for source in bad}
        assert all(reason for _, reason in report.failed)
        assert report.skipped_links == []
        assert_store_matches(self.store, good)
        if again:
            rerun = self.store.index_folder(self.folder)
            assert (rerun.added, rerun.updated, rerun.removed, rerun.embedded) == (0, 0, 0, 0)
        texts = sorted(text for text in good.values() if text)
        if texts:
            text = texts[search % len(texts)]
            hit = self.store.search(text, k=1, modality="text")[0]
            assert hit.text == text and hit.source in map(printable, good) and hit.score == pytest.approx(1.0, abs=1e-4)

    # -------------------------------------------------------------- the store
    def _expected(self) -> tuple[dict[str, str], set[str]]:
        good: dict[str, str] = {}
        bad: set[str] = set()
        for name, (kind, content) in self.files.items():
            source = str(self._path(name))
            if name.endswith(IMAGE_ENDINGS) and kind == "image":
                good[source] = ""
            elif not name.endswith(IMAGE_ENDINGS) and kind == "text":
                good[source] = str(content)
            else:  # corrupt, empty, not UTF-8, or an image's bytes under a text name (and back)
                bad.add(source)
        return good, bad


FolderMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=8,
    deadline=None,
    derandomize=True,  # the same examples every run: a green suite stays green; failures print their steps
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_index_folder_state_machine = FolderMachine.TestCase
