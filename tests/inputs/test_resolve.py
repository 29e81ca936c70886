"""resolve_image / resolve_images: every input type, batches, descriptions, sources."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from input_helpers import (
    PNG_BYTES,
    reason_of,
)
from PIL import Image

from mmrag.errors import ImageInputError, NotASequenceError
from mmrag.inputs import (
    ImageLimits,
    decode,
    describe_image_input,
    image_source,
    read_image_bytes,
    resolve_image,
    resolve_images,
)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: PNG_BYTES, id="bytes"),
        pytest.param(lambda: bytearray(PNG_BYTES), id="bytearray"),
        pytest.param(lambda: memoryview(PNG_BYTES), id="memoryview"),
        pytest.param(lambda: io.BytesIO(PNG_BYTES), id="BytesIO"),
        pytest.param(lambda: base64.b64encode(PNG_BYTES).decode(), id="base64"),
        pytest.param(lambda: base64.encodebytes(PNG_BYTES).decode(), id="base64-with-newlines"),
        pytest.param(lambda: "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode(), id="data-uri"),
        pytest.param(
            lambda: "  DATA:Image/PNG;name=x.png;base64," + base64.b64encode(PNG_BYTES).decode(),
            id="data-uri-params",
        ),
        pytest.param(lambda: Image.open(io.BytesIO(PNG_BYTES)), id="lazy-PIL-file"),
        pytest.param(lambda: np.full((6, 8, 3), (10, 20, 30), dtype=np.uint8), id="ndarray-rgb"),
    ],
)
def test_encoded_and_in_memory_inputs(make: Callable[[], object]) -> None:
    image = resolve_image(make())  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (10, 20, 30))


def test_pil_input_is_not_mutated_or_returned() -> None:
    original = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image = resolve_image(original)
    assert image is not original and original.mode == "RGBA"
    assert image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(np.zeros((4, 4, 3), dtype=np.float64), "dtype float64", id="float"),
        pytest.param(np.zeros((4, 4, 2), dtype=np.uint8), "shape (4, 4, 2)", id="two-channels"),
        pytest.param(np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape (2, 4, 4, 3)", id="4d"),
        pytest.param(np.zeros((2, 9, 3), dtype=np.uint8), "at least 3 pixels", id="too-small"),
        pytest.param(Image.new("RGB", (1, 1)), "at least 3 pixels", id="pil-1x1"),
        pytest.param(42, "unsupported image input type 'int'", id="int"),
        pytest.param(None, "unsupported image input type 'NoneType'", id="none"),
        pytest.param(io.StringIO("abc"), "binary mode", id="text-file"),
    ],
)
def test_unsupported_objects(item: object, expected: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(item)  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert expected in reason_of(excinfo)


def test_batch_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "ok.png"
    target.write_bytes(PNG_BYTES)
    good = [PNG_BYTES, target, np.zeros((4, 4, 3), dtype=np.uint8)]
    assert [image.size for image in resolve_images(good)] == [(8, 6), (8, 6), (4, 4)]
    with pytest.raises(ImageInputError) as excinfo:
        resolve_images([PNG_BYTES, target, "garbage!!", PNG_BYTES])
    assert excinfo.value.index == 2
    assert str(excinfo.value).startswith("image 2 (")
    with pytest.raises(NotASequenceError, match="images must be a list of items, not a single str"):
        resolve_images(str(target))  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert resolve_images([]) == []


def test_describe_image_input() -> None:
    long_b64 = base64.b64encode(b"\0" * 7500).decode()
    assert describe_image_input(long_b64) == "base64 string (10000 chars)"
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    assert describe_image_input(data_uri) == f"data URI (image/png, {len(data_uri)} chars)"
    signed = "https://user:pw@example.com/a.png?X-Sig=secret"
    assert describe_image_input(signed) == "https://example.com/a.png?..."
    assert describe_image_input("photos/cat.jpg") == "photos/cat.jpg"
    assert describe_image_input(Path("/x/y.png")) == "/x/y.png"
    assert describe_image_input(PNG_BYTES) == f"bytes ({len(PNG_BYTES)})"
    assert describe_image_input(Image.new("RGB", (640, 480))) == "PIL.Image 640x480 RGB"
    assert describe_image_input(np.zeros((480, 640, 3), dtype=np.uint8)) == "ndarray (480, 640, 3) uint8"
    assert describe_image_input(io.BytesIO()) == "file-like BytesIO"
    assert describe_image_input(3) == "int"


def test_errors_never_dump_base64() -> None:
    garbage = base64.b64encode(np.random.default_rng(2).bytes(6000)).decode()[:-3]  # bad padding
    with pytest.raises(ImageInputError) as excinfo:
        resolve_image(garbage)
    assert len(str(excinfo.value)) < 200
    assert "base64 string (7997 chars)" in str(excinfo.value)


def test_image_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cat.png"
    target.write_bytes(PNG_BYTES)
    monkeypatch.chdir(tmp_path)
    assert image_source("cat.png") == str(target)
    assert image_source(str(target)) == str(target)
    assert image_source(Path("cat.png")) == str(target)
    assert image_source(" https://example.com/a.png?x=1 ") == "https://example.com/a.png?x=1"
    for item in (
        "missing.png",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        base64.b64encode(PNG_BYTES).decode(),
        PNG_BYTES,
        Image.new("RGB", (3, 3)),
        io.BytesIO(),
    ):
        assert image_source(item) is None


def test_read_image_bytes() -> None:
    assert read_image_bytes(base64.b64encode(PNG_BYTES).decode()) == PNG_BYTES
    assert read_image_bytes(Image.new("RGB", (3, 3))) is None
    with pytest.raises(ImageInputError) as excinfo:
        read_image_bytes(b"x" * 20, limits=ImageLimits(max_bytes=10), index=4)
    assert excinfo.value.index == 4


# --------------------------------------------------------------------------- #
# Resolved once: an image resolve_image produced passes through unchanged
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: PNG_BYTES, id="bytes"),
        pytest.param(lambda: base64.b64encode(PNG_BYTES).decode(), id="base64"),
        pytest.param(lambda: np.zeros((6, 8, 3), dtype=np.uint8), id="ndarray"),
        pytest.param(lambda: Image.new("RGB", (8, 6)), id="caller-PIL"),
    ],
)
def test_a_resolved_image_resolves_to_itself(make: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> None:
    first = resolve_image(make())  # type: ignore[arg-type]  # the wrong type is what the test passes
    copies: list[object] = []
    monkeypatch.setattr(decode, "from_pil", lambda *args: copies.append(args) or Image.new("RGB", (3, 3)))
    assert resolve_image(first) is first
    assert resolve_image(first, limits=ImageLimits(allow_local_paths=False), index=3) is first
    assert resolve_images([first, first]) == [first, first] and resolve_images([first])[0] is first
    assert copies == []


def test_a_callers_rgb_image_is_still_copied() -> None:
    own = Image.new("RGB", (8, 6), (10, 20, 30))
    resolved = resolve_image(own)
    assert resolved is not own and resolve_image(own) is not own
    resolved.putpixel((0, 0), (0, 0, 0))
    assert own.getpixel((0, 0)) == (10, 20, 30)
    # A copy the caller makes of a resolved image is the caller's own image again.
    duplicate = resolved.copy()
    assert resolve_image(duplicate) is not duplicate


def test_a_resolved_image_changed_to_another_mode_is_converted_again() -> None:
    resolved = resolve_image(PNG_BYTES)
    resolved.putalpha(0)  # in place: now RGBA, fully transparent
    again = resolve_image(resolved)
    assert again is not resolved and again.mode == "RGB" and again.getpixel((0, 0)) == (255, 255, 255)
    assert resolve_image(again) is again


def test_a_failed_batch_leaves_resolved_inputs_open() -> None:
    resolved = resolve_image(PNG_BYTES)
    with pytest.raises(ImageInputError) as excinfo:
        resolve_images([resolved, PNG_BYTES, b"garbage"])
    assert excinfo.value.index == 2
    assert resolved.getpixel((0, 0)) == (10, 20, 30)  # not closed by the failed batch
