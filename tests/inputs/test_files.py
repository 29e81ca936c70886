"""Local sources: string and pathlib paths, file objects, FIFOs, allow_local_paths and local_root."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from input_helpers import (
    PNG_BYTES,
    reason_of,
)

from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits, image_source, resolve_image


def test_str_path_and_pathlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cat.png"
    target.write_bytes(PNG_BYTES)
    for item in (str(target), target):
        image = resolve_image(item)
        assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (10, 20, 30))
    monkeypatch.chdir(tmp_path)
    assert resolve_image("cat.png").size == (8, 6)


def test_open_binary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(PNG_BYTES)
    with target.open("rb") as handle:
        assert resolve_image(handle).size == (8, 6)


def test_missing_pathlib_path(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="file not found"):
        resolve_image(tmp_path / "nope.png")


def test_directory_and_fifo_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="not a regular file"):
        resolve_image(tmp_path)
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageInputError, match="not a regular file"):
        resolve_image(fifo)  # must not block waiting for a writer


def test_file_over_max_bytes(tmp_path: Path) -> None:
    target = tmp_path / "big.png"
    target.write_bytes(PNG_BYTES)
    with pytest.raises(ImageInputError, match="max_bytes"):
        resolve_image(target, limits=ImageLimits(max_bytes=10))


def test_local_paths_disabled_reveals_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "cat.png"
    existing.write_bytes(PNG_BYTES)
    limits = ImageLimits(allow_local_paths=False)
    reasons = []
    for item in (str(existing), existing, str(tmp_path / "missing.png")):
        with pytest.raises(ImageInputError) as excinfo:
            resolve_image(item, limits=limits)
        reasons.append(reason_of(excinfo).split(":")[0])
    assert reasons == ["local file paths are disabled (ImageLimits.allow_local_paths=False)"] * 3
    # base64 and bytes still work
    assert resolve_image(base64.b64encode(PNG_BYTES).decode(), limits=limits).size == (8, 6)


def test_local_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "in.png").write_bytes(PNG_BYTES)
    (tmp_path / "out.png").write_bytes(PNG_BYTES)
    limits = ImageLimits(local_root=root)
    assert resolve_image(root / "in.png", limits=limits).size == (8, 6)
    escapes = [str(root / ".." / "out.png"), root / ".." / "out.png", str(tmp_path / "missing.png")]
    if hasattr(os, "symlink"):
        (root / "link.png").symlink_to(tmp_path / "out.png")
        (root / "inner-link.png").symlink_to(root / "in.png")
        escapes.append(str(root / "link.png"))
        assert resolve_image(root / "inner-link.png", limits=limits).size == (8, 6)
    for item in escapes:
        with pytest.raises(ImageInputError, match="outside ImageLimits.local_root"):
            resolve_image(item, limits=limits)


def test_home_is_expanded_like_the_query_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "cat.png").write_bytes(PNG_BYTES)
    monkeypatch.setenv("HOME", str(home))
    for item in ("~/cat.png", Path("~/cat.png")):
        assert resolve_image(item).size == (8, 6)
        assert image_source(item) == str(home / "cat.png")
    with pytest.raises(ImageInputError, match="outside ImageLimits.local_root"):
        resolve_image("~/cat.png", limits=ImageLimits(local_root=tmp_path / "elsewhere"))
    with pytest.raises(ImageInputError, match="local file paths are disabled"):
        resolve_image("~/cat.png", limits=ImageLimits(allow_local_paths=False))
