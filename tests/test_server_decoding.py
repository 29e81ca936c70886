"""Large images are decoded small: shrunk right after decoding, JPEGs decoded at a reduced scale.

The app runs in-process with the bundled demo model (a trained CLIP with a 64 px input), so the
vectors of shrunk images can be compared with the library's vectors of the full images: they must
stay within cosine 0.9999. Decode steps are counted where :mod:`mmrag.inputs` performs them.
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from mmrag import load_encoder
from mmrag.inputs import decode
from mmrag.server import ServerSettings, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo(width: int, height: int, fmt: str = "PNG", seed: int = 0, exif: Image.Exif | None = None) -> bytes:
    """A smooth picture with flat discs, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 100 // (width + height) + 80], -1)
    for _ in range(8):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(width // 14, width // 4)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": 92} if fmt == "JPEG" else {}
    if exif is not None:
        options["exif"] = exif
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def demo() -> Any:
    return load_encoder("demo", device="cpu")


@contextlib.contextmanager
def serve(**settings: Any) -> Iterator[TestClient]:
    app = create_app(ServerSettings(model="demo", device="cpu", access_log=False, **settings))
    with TestClient(app) as opened:
        deadline = time.monotonic() + 120
        while opened.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)
        yield opened


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with serve() as opened:
        yield opened


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count decodes of encoded bytes and conversions of PIL images (as tests/test_server_images.py does)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    for name in ("decode_image", "from_pil"):
        real = getattr(decode, name)

        def wrapper(*args: Any, _name: str = name, _real: Any = real) -> Any:
            with lock:
                counts[_name] += 1
            return _real(*args)

        monkeypatch.setattr(decode, name, wrapper)
    return counts


def cosine(a: list[float], b: np.ndarray) -> float:
    return float(np.asarray(a, dtype=np.float32) @ b)


def test_a_large_png_is_shrunk_once_decoded_and_embeds_like_the_full_image(
    client: TestClient, counted: Counter[str], demo: Any
) -> None:
    data = photo(1600, 1200)
    before = client.get("/metrics").json()["images_shrunk"]
    body = client.post("/embed", json={"image": b64(data)}).json()
    assert client.get("/metrics").json()["images_shrunk"] == before + 1
    assert counted == {"decode_image": 1, "from_pil": 1}  # decoded once; the shrunk copy is what waits
    assert cosine(body["image_embedding"], demo.embed_images([data])[0]) > 0.9999


def test_a_small_image_is_left_as_it_is(client: TestClient, counted: Counter[str], demo: Any) -> None:
    data = photo(160, 120, seed=2)
    before = client.get("/metrics").json()["images_shrunk"]
    body = client.post("/embed", json={"image": b64(data)}).json()
    assert client.get("/metrics").json()["images_shrunk"] == before and counted == {"decode_image": 1}
    np.testing.assert_allclose(body["image_embedding"], demo.embed_images([data])[0], atol=1e-5)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(counted: Counter[str], demo: Any) -> None:
    width, height = 2400, 1800
    data = photo(width, height, "JPEG", seed=1)
    with serve() as fresh:  # a fresh server: its decode peak is this image's alone
        body = fresh.post("/embed", json={"image": b64(data)}).json()
        metrics = fresh.get("/metrics").json()
    assert counted["decode_image"] == 0  # never decoded at full size
    assert metrics["decode_pixels_peak"] <= width * height // 16  # Pillow's JPEG draft at 1/4 scale or less
    assert cosine(body["image_embedding"], demo.embed_images([data])[0]) > 0.9999


def test_a_rotated_large_jpeg_keeps_its_orientation(client: TestClient, demo: Any) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = photo(2000, 1200, "JPEG", seed=4, exif=exif)
    body = client.post("/embed", json={"image": b64(data)}).json()
    expected = demo.embed_images([data])[0]  # the library applies the orientation at full size
    assert cosine(body["image_embedding"], expected) > 0.9999
    unrotated = demo.embed_images([np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))])[0]  # no EXIF
    assert cosine(body["image_embedding"], unrotated) < cosine(body["image_embedding"], expected)


def test_a_corrupt_large_jpeg_is_a_400_naming_the_input(client: TestClient) -> None:
    data = photo(2000, 1500, "JPEG", seed=5)
    response = client.post("/embed", json={"image": b64(data[: len(data) // 3])})
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (400, "invalid_image")
    assert error["message"].startswith("image (base64 string") and "cannot decode image" in error["message"]
