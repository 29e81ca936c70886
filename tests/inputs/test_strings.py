"""The string rule and the query rule built on it."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from input_helpers import PNG_BYTES, reason_of
from PIL import Image

from mmrag.errors import ImageInputError
from mmrag.inputs import (
    decode_base64_image,
    image_reference,
    is_image_query,
    is_url,
    resolve,
    resolve_image,
)

PNG_B64 = base64.b64encode(PNG_BYTES).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file:///etc/passwd", "unsupported URL scheme 'file'; only http and https are fetched"),
        ("file:/etc/passwd", "unsupported URL scheme 'file'"),
        ("FILE://localhost/etc/passwd", "unsupported URL scheme 'file'"),
        ("ftp://example.invalid/a.png", "unsupported URL scheme 'ftp'"),
        ("gopher://example.invalid/", "unsupported URL scheme 'gopher'"),
        ("not base64!!", "not a URL, data URI, existing file or valid base64"),
        ("iVBORw0KGgo", "not a URL, data URI, existing file or valid base64"),
        ("missing/cat.png", "file not found: missing/cat.png"),
        ("typo.jpg", "file not found: typo.jpg"),
        ("C:\\nope\\img.png", "file not found"),
        ("data:image/png,rawdata", "must be base64-encoded"),
        ("data:text/plain;base64,aGVsbG8=", "media type must be image/*"),
        ("data:image/png;base64,@@@@", "payload is not valid base64"),
        ("data:image/png;base64", "malformed data URI"),
        ("http://", "no host name"),
    ],
)
def test_string_rule_errors(text: str, expected: str, connect_log: list) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(text)
    assert expected in reason_of(excinfo)
    assert connect_log == []


def test_is_url() -> None:
    assert is_url("HTTPS://example.com/a.png") and is_url("http://x") and is_url("  https://x/a.png ")
    assert not is_url("file:///a.png") and not is_url("cat.png") and not is_url("data:image/png;base64,")


@pytest.fixture
def image_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory (also $HOME) holding cat.png, notes.txt and a directory named dir.png."""
    (tmp_path / "cat.png").write_bytes(PNG_BYTES)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "dir.png").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_query_rule(image_dir: Path) -> None:
    images = [
        "https://example.com/a.png",
        " HTTP://example.com/a ",
        "data:image/png;base64," + PNG_B64,
        "cat.png",
        "  cat.png\t",
        str(image_dir / "cat.png"),
        "~/cat.png",
        Path("no/such/file.png"),
        PNG_BYTES,
        Image.new("RGB", (3, 3)),
        np.zeros((3, 3, 3), dtype=np.uint8),
    ]
    texts = [
        "a red shoe",
        "missing.png",  # an image ending, but no such file
        "notes.txt",  # an existing file, but no image ending
        "dir.png",  # a directory
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        PNG_B64,  # the resolver would decode it; the query rule reads it as text
        "",
    ]
    assert [is_image_query(item) for item in images] == [True] * len(images)
    assert [is_image_query(item) for item in texts] == [False] * len(texts)
    assert is_image_query("a red shoe", "image") and not is_image_query("cat.png", "text")
    with pytest.raises(ValueError, match="query_type must be 'auto', 'text' or 'image'"):
        is_image_query("x", "video")  # type: ignore[arg-type]  # the wrong type is what the test passes


def test_a_string_the_query_rule_calls_an_image_resolves_by_that_branch(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []

    def record(branch: str, real: object) -> object:
        def spy(*args: object) -> object:
            taken.append(branch)
            return real(*args)  # type: ignore[operator]  # the wrong type is what the test passes

        return spy

    monkeypatch.setattr(resolve, "fetch_url", lambda *args: taken.append("url") or PNG_BYTES)
    monkeypatch.setattr(resolve, "data_uri_bytes", record("data", resolve.data_uri_bytes))
    monkeypatch.setattr(resolve, "read_file", record("file", resolve.read_file))
    monkeypatch.setattr(resolve, "strict_b64decode", record("base64", resolve.strict_b64decode))
    cases = {
        "https://example.com/a.png": "url",
        " HTTP://example.com/a ": "url",
        " data:image/png;base64," + PNG_B64: "data",
        "cat.png": "file",
        "  cat.png\t": "file",
        str(image_dir / "cat.png"): "file",
        "~/cat.png": "file",
    }
    for text, branch in cases.items():
        assert is_image_query(text)
        taken.clear()
        assert resolve_image(text).size == (8, 6)
        assert taken == [branch], text


def test_image_reference(image_dir: Path) -> None:
    assert image_reference(" https://example.com/a.png ", may_be_base64=True) == "https://example.com/a.png"
    assert image_reference("data:image/png;base64,AAAA", may_be_base64=False) == "data:image/png;base64,AAAA"
    assert image_reference(PNG_B64, may_be_base64=True) == PNG_BYTES
    assert image_reference(PNG_B64, may_be_base64=False) == Path(PNG_B64)
    assert image_reference("cat.png", may_be_base64=True) == Path("cat.png")  # an existing file, not base64
    assert image_reference("photos/cat.jpg", may_be_base64=True) == Path("photos/cat.jpg")


def test_decode_base64_image() -> None:
    assert decode_base64_image(PNG_B64) == PNG_BYTES
    assert decode_base64_image(PNG_B64.encode()) == PNG_BYTES
    assert decode_base64_image(PNG_B64[:40] + "\n" + PNG_B64[40:]) == PNG_BYTES
    uri = "data:image/png;base64," + PNG_B64
    assert decode_base64_image(uri) == uri
    assert decode_base64_image("not base64!!") == "not base64!!"
