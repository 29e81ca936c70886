"""Shared helpers of the store tests: coloured test images, a small photo folder, a fresh interpreter."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mmrag
from mmrag.store.names import printable, recorded_path
from mmrag.testing import speckled_image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
image = functools.partial(speckled_image, size=48, dots=40)  # 48 px, 40 random dots


def make_folder(root: Path) -> Path:
    """``root/photos``: four images (two in ``nested/``), a ``.txt`` and a ``.md`` text, and an ignored ``.csv``."""
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    for n, (name, colour) in enumerate(COLOURS.items()):
        target = folder / ("nested" if n % 2 else "") / f"{name}.png"
        image(colour, seed=n).save(target)
    (folder / "notes.txt").write_text("a note about red things", encoding="utf-8")
    (folder / "readme.md").write_text("# Blue\nsomething about the sea", encoding="utf-8")
    (folder / "ignored.csv").write_text("a,b", encoding="utf-8")
    return folder


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this tree's mmrag."""
    env = {**os.environ, "PYTHONPATH": str(Path(mmrag.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


def raw_path(folder: Path, name: bytes) -> Path:
    """``folder / name`` for a file name given as bytes (not necessarily UTF-8), as Python spells it."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def records_by_source(store) -> dict[str, list[str]]:
    """Every record in ``store`` read straight from Chroma: exact file path (or source) -> record ids.

    More than one id for a path is a duplicate. The exact path is the one Python gives for the file (surrogate
    escapes for bytes that are not UTF-8), not the readable ``source``: two names can print alike.
    """
    found: dict[str, list[str]] = {}
    for modality in ("image", "text"):
        got = store.client.get_collection(f"{store.name}_{modality}s").get(include=["metadatas"])
        for record_id, meta in zip(got["ids"], got["metadatas"]):
            found.setdefault(recorded_path(meta or {}), []).append(record_id)
    return found


def assert_store_matches(store, expected: dict[str, str]) -> None:
    """The store holds exactly one record per expected file (exact path -> text, ``""`` for an image), no other,
    and a search sees every one of them (not a stale index), with its readable source and its text."""
    found = records_by_source(store)
    duplicates = {source: ids for source, ids in found.items() if len(ids) > 1}
    assert not duplicates, f"duplicate records: {duplicates}"
    assert set(found) == set(expected), f"missing {set(expected) - set(found)}, extra {set(found) - set(expected)}"
    assert store.count() == len(expected)
    if expected:
        hits = store.search("anything", k=len(expected) + 5)
        assert sorted((hit.source or "", hit.text or "") for hit in hits) == sorted(
            (printable(path), text) for path, text in expected.items()
        )
