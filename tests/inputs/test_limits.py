"""ImageLimits: validation, and max_bytes for every kind of encoded input."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import pytest
from input_helpers import (
    png,
)

from mmrag.errors import ImageInputError
from mmrag.inputs import (
    ImageLimits,
    resolve_image,
)


def test_limits_validation() -> None:
    for bad in ({"max_bytes": 0}, {"timeout": 0}, {"max_redirects": -1}, {"formats": frozenset()}):
        with pytest.raises(ValueError):
            ImageLimits(**bad)  # type: ignore[arg-type]  # the wrong type is what the test passes


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda data: data, id="bytes"),
        pytest.param(lambda data: io.BytesIO(data), id="BytesIO"),
        pytest.param(lambda data: base64.b64encode(data).decode(), id="base64"),
        pytest.param(lambda data: "data:image/png;base64," + base64.b64encode(data).decode(), id="data-uri"),
    ],
)
def test_max_bytes(make: Callable[[bytes], object]) -> None:
    item = make(png((64, 64)) + b"\0" * 200)
    with pytest.raises(ImageInputError, match="larger than max_bytes=100 bytes"):
        resolve_image(item, limits=ImageLimits(max_bytes=100))
