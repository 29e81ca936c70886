"""Test images: seeded speckled solid colours and the probe images tiny models must tell apart.

Pillow and numpy are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["probe_images", "speckled_image"]


def speckled_image(
    colour: tuple[int, int, int], seed: int = 0, *, size: int | tuple[int, int] = 40, dots: int = 30
) -> Image.Image:
    """A solid-colour test image with a few random dots, so that seeds give different pixels and vectors.

    Args:
        colour: The RGB fill.
        seed: Seed for the dots' positions and colours.
        size: Side in pixels, or ``(width, height)``.
        dots: How many random dots.

    Returns:
        An RGB ``PIL.Image.Image``.

    Example:
        >>> speckled_image((220, 30, 30), seed=1).size
        (40, 40)
    """
    import numpy as np
    from PIL import Image

    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), colour, dtype=np.uint8)
    pixels[rng.integers(0, height, dots), rng.integers(0, width, dots)] = rng.integers(
        0, 256, (dots, 3), dtype=np.uint8
    )
    return Image.fromarray(pixels)


def probe_images() -> list[Image.Image]:
    """Return the probe images (PIL, mixed sizes) whose tiny-model features are distinct.

    Solid red/green/blue/white/black images, a horizontal gradient and two seeded noise images;
    :func:`mmrag.testing.build_tiny_model` guarantees their pairwise feature cosine is < 0.97.

    Returns:
        A list of RGB ``PIL.Image.Image``.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1234)
    images = [
        Image.new("RGB", (20, 30), (255, 0, 0)),
        Image.new("RGB", (64, 48), (0, 255, 0)),
        Image.new("RGB", (33, 33), (0, 0, 255)),
        Image.new("RGB", (40, 24), (255, 255, 255)),
        Image.new("RGB", (24, 40), (0, 0, 0)),
        Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], (32, 1, 3))),
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
    ]
    return images
