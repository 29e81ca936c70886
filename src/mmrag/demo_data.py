"""Synthetic shape images with English and Chinese captions, generated deterministically.

The bundled ``demo`` model (``mmrag.load_encoder("demo")``) was trained on
exactly this kind of data (see ``scripts/train_demo_model.py``): one coloured
shape of some size at some position on a light background. Each image has a
caption in English and in Chinese, e.g. ``"a small red circle on the left"``
and ``"左边的红色小圆形"``.

Shapes are drawn clip-art style, filled and with a dark outline. The
vocabulary is small on purpose:

* colours: red, green, blue, yellow, purple, orange, black, white
* shapes: circle, square, triangle, star, cross, diamond
* sizes: small, large
* positions: left, right, top, bottom, center
* backgrounds: a few light plain colours, some with light noise (never named
  in captions)

Everything is a pure function of a seed: :func:`sample_shapes` with the same
``seed`` gives the same samples, and :meth:`ShapeSample.render` gives the same
pixels for the same sample on any machine (Pillow drawing only).

Example:
    >>> from mmrag.demo_data import sample_shapes
    >>> sample = sample_shapes(1, seed=0)[0]
    >>> sample.caption("en")  # doctest: +SKIP
    'a small red circle on the left'
    >>> sample.caption("zh")  # doctest: +SKIP
    '左边的红色小圆形'
    >>> sample.render().size
    (64, 64)
"""

from __future__ import annotations

import math
import os
import pathlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "DEFAULT_IMAGE_SIZE",
    "DETAILS",
    "LANGUAGES",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Background",
    "Colour",
    "Detail",
    "Language",
    "ShapeSample",
    "Word",
    "sample_shapes",
    "write_sample_folder",
]

Language = Literal["en", "zh"]
Detail = Literal["full", "colour_shape", "colour_shape_size", "colour_shape_position"]

LANGUAGES: tuple[Language, ...] = ("en", "zh")
"""Caption languages: English and Chinese."""

DETAILS: tuple[Detail, ...] = ("full", "colour_shape", "colour_shape_size", "colour_shape_position")
"""Caption detail levels, from all attributes to colour and shape only."""

DEFAULT_IMAGE_SIZE = 64
"""Rendered image side in pixels; the demo model's input size."""


@dataclass(frozen=True)
class Word:
    """One attribute value with its English and Chinese words.

    Attributes:
        name: Identifier used in :class:`ShapeSample` fields (English, ASCII).
        en: English word or phrase used in captions.
        zh: Chinese word or phrase used in captions.
    """

    name: str
    en: str
    zh: str


@dataclass(frozen=True)
class Colour(Word):
    """A shape colour.

    Attributes:
        rgb: The colour drawn (before a small random jitter).
    """

    rgb: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True)
class Background(Word):
    """A background: a light plain colour, optionally with light noise.

    Attributes:
        rgb: The base colour.
        noise: Standard deviation of per-pixel grey noise (0 for plain).
    """

    rgb: tuple[int, int, int] = (255, 255, 255)
    noise: float = 0.0


COLOURS: tuple[Colour, ...] = (
    Colour("red", "red", "红色", (215, 30, 30)),
    Colour("green", "green", "绿色", (30, 155, 50)),
    Colour("blue", "blue", "蓝色", (35, 75, 215)),
    Colour("yellow", "yellow", "黄色", (245, 210, 0)),
    Colour("purple", "purple", "紫色", (135, 45, 175)),
    Colour("orange", "orange", "橙色", (250, 135, 0)),
    Colour("black", "black", "黑色", (20, 20, 20)),
    Colour("white", "white", "白色", (255, 255, 255)),
)
"""Shape colours."""

SHAPES: tuple[Word, ...] = (
    Word("circle", "circle", "圆形"),
    Word("square", "square", "正方形"),
    Word("triangle", "triangle", "三角形"),
    Word("star", "star", "星形"),
    Word("cross", "cross", "十字形"),
    Word("diamond", "diamond", "菱形"),
)
"""Shapes."""

SIZES: tuple[Word, ...] = (
    Word("small", "small", "小"),
    Word("large", "large", "大"),
)
"""Shape sizes."""

POSITIONS: tuple[Word, ...] = (
    Word("left", "on the left", "左边"),
    Word("right", "on the right", "右边"),
    Word("top", "at the top", "上边"),
    Word("bottom", "at the bottom", "下边"),
    Word("center", "in the center", "中间"),
)
"""Shape positions (English words are the caption phrases)."""

BACKGROUNDS: tuple[Background, ...] = (
    Background("grey", "light grey", "浅灰色", (196, 196, 196)),
    Background("beige", "beige", "米色", (232, 218, 186)),
    Background("sky", "light blue", "浅蓝色", (182, 206, 232)),
    Background("mint", "light green", "浅绿色", (192, 224, 192)),
    Background("pink", "light pink", "浅粉色", (236, 198, 210)),
    Background("grey_noise", "noisy light grey", "有噪点的浅灰色", (196, 196, 196), 12.0),
    Background("beige_noise", "noisy beige", "有噪点的米色", (232, 218, 186), 12.0),
)
"""Backgrounds (never named in captions)."""

_BY_NAME: dict[str, dict[str, Word]] = {
    "colour": {w.name: w for w in COLOURS},
    "shape": {w.name: w for w in SHAPES},
    "size": {w.name: w for w in SIZES},
    "position": {w.name: w for w in POSITIONS},
    "background": {w.name: w for w in BACKGROUNDS},
}

# Shape centre per position, as fractions of the image side (x, y).
_CENTRES = {"left": (0.29, 0.5), "right": (0.71, 0.5), "top": (0.5, 0.29), "bottom": (0.5, 0.71), "center": (0.5, 0.5)}
# Shape "radius" per size, as a fraction of the image side.
_RADII = {"small": 0.14, "large": 0.23}
_SUPERSAMPLE = 4
_OUTLINE = 1.5  # width of the dark outline, in pixels of a 64 px image


@dataclass(frozen=True)
class ShapeSample:
    """One synthetic image: a coloured shape on a background, plus its captions.

    Attributes:
        colour: A name from :data:`COLOURS` (e.g. ``"red"``).
        shape: A name from :data:`SHAPES` (e.g. ``"circle"``).
        size: A name from :data:`SIZES` (``"small"`` or ``"large"``).
        position: A name from :data:`POSITIONS` (e.g. ``"left"``).
        background: A name from :data:`BACKGROUNDS` (e.g. ``"beige"``).
        variant: Seed of the small random jitter (exact position, size,
            rotation, colour shade, noise) applied when rendering.

    Raises:
        ValueError: An attribute is not one of the known names.
    """

    colour: str
    shape: str
    size: str
    position: str
    background: str = "grey"
    variant: int = 0

    def __post_init__(self) -> None:
        for field in ("colour", "shape", "size", "position", "background"):
            value = getattr(self, field)
            if value not in _BY_NAME[field]:
                raise ValueError(f"unknown {field} {value!r}; expected one of {sorted(_BY_NAME[field])}")

    def words(self, lang: Language = "en") -> dict[str, str]:
        """The caption words of each attribute in one language.

        Args:
            lang: ``"en"`` or ``"zh"``.

        Returns:
            ``{"colour": ..., "shape": ..., "size": ..., "position": ...}``.

        Raises:
            ValueError: Unknown language.
        """
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")
        return {
            field: getattr(_BY_NAME[field][getattr(self, field)], lang)
            for field in ("colour", "shape", "size", "position")
        }

    def caption(self, lang: Language = "en", detail: Detail = "full") -> str:
        """The caption of this sample.

        Args:
            lang: ``"en"`` (e.g. ``"a small red circle on the left"``) or
                ``"zh"`` (e.g. ``"左边的红色小圆形"``).
            detail: Which attributes to name: ``"full"`` (size, colour,
                shape, position), ``"colour_shape"`` (``"a red circle"``,
                ``"红色的圆形"``), ``"colour_shape_size"`` (``"a small red
                circle"``, ``"红色小圆形"``) or ``"colour_shape_position"``
                (``"a red circle on the left"``, ``"左边的红色圆形"``).

        Returns:
            The caption text.

        Raises:
            ValueError: Unknown language or detail level.
        """
        if detail not in DETAILS:
            raise ValueError(f"unknown detail {detail!r}; expected one of {DETAILS}")
        w = self.words(lang)
        with_size = detail in ("full", "colour_shape_size")
        with_position = detail in ("full", "colour_shape_position")
        if lang == "zh":
            if not with_size and not with_position:
                return f"{w['colour']}的{w['shape']}"
            text = f"{w['colour']}{w['size'] if with_size else ''}{w['shape']}"
            return f"{w['position']}的{text}" if with_position else text
        words = ([w["size"]] if with_size else []) + [w["colour"], w["shape"]]
        text = f"{_article(words[0])} {' '.join(words)}"
        return f"{text} {w['position']}" if with_position else text

    def attributes(self) -> dict[str, str]:
        """The attribute names: ``{"colour", "shape", "size", "position", "background"}``."""
        return {
            "colour": self.colour,
            "shape": self.shape,
            "size": self.size,
            "position": self.position,
            "background": self.background,
        }

    def render(self, image_size: int = DEFAULT_IMAGE_SIZE) -> Image.Image:
        """Draw the sample.

        The shape is drawn at 4x resolution and downsampled (anti-aliased).
        Position, size, rotation and shade vary slightly with :attr:`variant`,
        never enough to change the caption.

        Args:
            image_size: Side of the square RGB image in pixels.

        Returns:
            A new ``image_size`` x ``image_size`` RGB image.
        """
        from PIL import Image, ImageDraw

        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        rng = random.Random(f"mmrag-demo-render:{self.variant}")
        background = _BY_NAME["background"][self.background]
        colour = _BY_NAME["colour"][self.colour]
        assert isinstance(background, Background) and isinstance(colour, Colour)
        big = image_size * _SUPERSAMPLE
        bg = tuple(_clip(c + rng.randint(-8, 8)) for c in background.rgb)
        canvas = Image.new("RGB", (big, big), bg)
        draw = ImageDraw.Draw(canvas)
        cx, cy = _CENTRES[self.position]
        cx = (cx + rng.uniform(-0.04, 0.04)) * big
        cy = (cy + rng.uniform(-0.04, 0.04)) * big
        radius = _RADII[self.size] * rng.uniform(0.92, 1.08) * big
        rotation = rng.uniform(-12.0, 12.0)
        fill = tuple(_clip(c + rng.randint(-14, 14)) for c in colour.rgb)
        # A dark outline makes the silhouette visible whatever the fill and background colours.
        outline = tuple(_clip(c * 0.25) for c in fill)
        width = max(1, round(_OUTLINE * big / 64))
        if self.shape == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill, outline=outline, width=width)
        else:
            draw.polygon(_polygon(self.shape, cx, cy, radius, rotation), fill=fill, outline=outline, width=width)
        image = canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)
        if background.noise > 0:
            image = _add_noise(image, background.noise, rng.getrandbits(32))
        return image


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _clip(value: float) -> int:
    return max(0, min(255, round(value)))


def _polygon(shape: str, cx: float, cy: float, radius: float, rotation: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` around (cx, cy), rotated by ``rotation`` degrees."""
    if shape == "square":
        half = radius * 0.82
        points = [(-half, -half), (half, -half), (half, half), (-half, half)]
    elif shape == "triangle":
        r = radius * 1.12
        points = [
            (r * math.cos(a), r * math.sin(a) + radius * 0.14) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    elif shape == "star":
        points = []
        for i in range(10):
            r = radius * (1.1 if i % 2 == 0 else 0.45)
            a = -math.pi / 2 + i * math.pi / 5
            points.append((r * math.cos(a), r * math.sin(a)))
    elif shape == "cross":
        a, b = radius, radius * 0.3
        points = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
    elif shape == "diamond":
        points = [(0.0, -radius * 1.1), (radius * 0.68, 0.0), (0.0, radius * 1.1), (-radius * 0.68, 0.0)]
    else:  # pragma: no cover - guarded by ShapeSample.__post_init__
        raise ValueError(f"unknown shape {shape!r}")
    t = math.radians(rotation)
    cos, sin = math.cos(t), math.sin(t)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


def _add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8), "RGB")


def sample_shapes(n: int, *, seed: int = 0) -> list[ShapeSample]:
    """Draw ``n`` random samples (attributes and jitter) from a seed.

    Attributes are drawn uniformly and independently, so combinations repeat
    and every colour and shape is common. The same ``seed`` always gives the
    same list, and ``sample_shapes(n, seed=s)`` is a prefix of
    ``sample_shapes(m, seed=s)`` for ``n <= m``.

    Args:
        n: Number of samples (0 or more).
        seed: Random seed.

    Returns:
        The samples.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    rng = random.Random(f"mmrag-demo-samples:{seed}")
    samples = []
    for _ in range(n):
        samples.append(
            ShapeSample(
                colour=rng.choice(COLOURS).name,
                shape=rng.choice(SHAPES).name,
                size=rng.choice(SIZES).name,
                position=rng.choice(POSITIONS).name,
                background=rng.choice(BACKGROUNDS).name,
                variant=rng.getrandbits(48),
            )
        )
    return samples


def write_sample_folder(
    path: str | os.PathLike[str],
    *,
    n: int = 24,
    seed: int = 0,
    captions: bool = True,
    languages: tuple[Language, ...] = LANGUAGES,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> list[pathlib.Path]:
    """Write a folder of sample PNG images and, optionally, caption text files.

    For sample ``i`` the files are ``shape_{i:03d}.png`` and, with
    ``captions``, one UTF-8 file per language, ``shape_{i:03d}.{lang}.txt``,
    holding its full caption. Existing files of the same names are
    overwritten; nothing else in the folder is touched.

    Args:
        path: The folder (created if needed).
        n: Number of images.
        seed: Random seed for :func:`sample_shapes`.
        captions: Also write caption files.
        languages: Caption languages to write (``"en"``, ``"zh"``).
        image_size: Image side in pixels.

    Returns:
        The paths written, in order (each image, then its caption files).

    Raises:
        ValueError: ``n`` is negative or a language is unknown.

    Example:
        >>> paths = write_sample_folder("samples", n=4)  # doctest: +SKIP
        >>> [p.name for p in paths[:3]]  # doctest: +SKIP
        ['shape_000.png', 'shape_000.en.txt', 'shape_000.zh.txt']
    """
    for lang in languages:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")
    folder = pathlib.Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    for index, sample in enumerate(sample_shapes(n, seed=seed)):
        stem = f"shape_{index:03d}"
        image_path = folder / f"{stem}.png"
        sample.render(image_size).save(image_path, format="PNG")
        written.append(image_path)
        if captions:
            for lang in languages:
                text_path = folder / f"{stem}.{lang}.txt"
                text_path.write_text(sample.caption(lang) + "\n", encoding="utf-8")
                written.append(text_path)
    return written
