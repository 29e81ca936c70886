"""mmrag.encoders.preprocess: uint8 preprocessing + device-side normalize, equal to the transformers processors."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from PIL import Image, ImageDraw, ImageFilter

from mmrag import ImageInputError, ImageLimits, resolve_image
from mmrag.encoders.preprocess import (
    ImageSpec,
    image_spec,
    load_image,
    normalize,
    pixel_lut,
    prepare_image,
    preprocess_image,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = [(640, 480), (1024, 768), (333, 500), (7, 9), (224, 224), (225, 224), (3, 400), (4000, 3000)]

# Processor settings of the real checkpoints (and custom ones), built from the classes transformers
# loads without torchvision.
PROCESSORS: dict[str, Any] = {
    "clip": lambda: transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    ),
    "clip_336_bilinear_custom_stats": lambda: transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 320, "width": 336},
        resample=2,
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.3, 0.25],
    ),
    "clip_crop_bigger_than_resize": lambda: transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 200}, crop_size={"height": 224, "width": 224}
    ),
    "chinese_clip": lambda: transformers.ChineseCLIPImageProcessorPil(
        size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224}
    ),
    "chinese_clip_no_crop": lambda: transformers.ChineseCLIPImageProcessorPil(
        size={"height": 224, "width": 224}, do_center_crop=False
    ),
    "siglip": lambda: transformers.SiglipImageProcessorPil(size={"height": 224, "width": 224}, resample=3),
    "siglip2_fixed_res_bilinear": lambda: transformers.SiglipImageProcessorPil(
        size={"height": 256, "width": 256}, resample=2
    ),
    "no_rescale": lambda: transformers.SiglipImageProcessorPil(size={"height": 64, "width": 48}, do_rescale=False),
    "no_normalize": lambda: transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, do_normalize=False
    ),
    "no_resize_crop_only": lambda: transformers.CLIPImageProcessorPil(
        do_resize=False, crop_size={"height": 96, "width": 80}
    ),
}


@pytest.fixture(scope="module")
def processors() -> dict[str, Any]:
    """Each processor variant, built once."""
    return {name: build() for name, build in PROCESSORS.items()}


@pytest.fixture(scope="module")
def images() -> dict[tuple[int, int], Image.Image]:
    """Random RGB images of every test size (noise: every pixel matters)."""
    rng = np.random.default_rng(0)
    return {(w, h): Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES}


def _ours(image: Image.Image, spec: ImageSpec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return spec.normalize(preprocess_image(image, spec)[None], dtype=dtype, device="cpu")


def _assert_processor_pixels(got: torch.Tensor, expected: torch.Tensor, spec: ImageSpec, label: object) -> None:
    """``got`` is the processor's output up to one pixel step in a few values (the crop window's rounding).

    The crop-window resize computes the same filter over the kept region only; its box is a float,
    so a few resampling weights round differently and a pixel can land one step away.
    """
    assert got.shape == expected.shape, label
    step = (spec.rescale_factor or 1.0) / min(spec.image_std or (1.0,))
    diff = (got - expected).abs()
    assert float(diff.max()) <= step * 1.001, label  # never more than one pixel value apart
    assert float((diff > 1e-6).float().mean()) <= 0.05, label  # in few values (bilinear ~4%, bicubic < 0.1%)


# ------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", list(PROCESSORS))
def test_pixels_equal_the_processor_for_every_size(
    processors: dict[str, Any], images: dict[tuple[int, int], Image.Image], name: str
) -> None:
    processor = processors[name]
    spec = image_spec(processor)
    assert spec is not None
    for size, image in images.items():
        expected = processor(images=[image], return_tensors="pt")["pixel_values"]
        _assert_processor_pixels(_ours(image, spec), expected, spec, size)


def test_spec_reads_the_processor_settings(processors: dict[str, Any]) -> None:
    clip = image_spec(processors["clip"])
    custom = image_spec(processors["clip_336_bilinear_custom_stats"])
    siglip = image_spec(processors["siglip"])
    assert clip == ImageSpec(
        processor="CLIPImageProcessorPil",
        shortest_edge=224,
        resize_size=None,
        resample=3,
        crop_size=(224, 224),
        rescale_factor=1 / 255,
        image_mean=(0.48145466, 0.4578275, 0.40821073),
        image_std=(0.26862954, 0.26130258, 0.27577711),
    )
    assert custom is not None and siglip is not None
    assert (custom.shortest_edge, custom.crop_size, custom.resample) == (336, (320, 336), 2)
    assert custom.image_mean == (0.5, 0.4, 0.3) and custom.output_shape == (3, 320, 336)
    assert siglip.resize_size == (224, 224) and siglip.crop_size is None and siglip.image_mean == (0.5, 0.5, 0.5)


def test_saved_custom_settings_are_honoured(tmp_path: Path, images: dict[tuple[int, int], Image.Image]) -> None:
    custom = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 160}, crop_size={"height": 144, "width": 128}, image_mean=[0.1, 0.2, 0.3]
    )
    custom.save_pretrained(tmp_path)
    loaded = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    spec = image_spec(loaded)
    assert spec is not None and spec.shortest_edge == 160 and spec.crop_size == (144, 128)
    assert spec.image_mean == pytest.approx((0.1, 0.2, 0.3))
    image = images[(640, 480)]
    expected = loaded(images=[image], return_tensors="pt")["pixel_values"]
    _assert_processor_pixels(_ours(image, spec), expected, spec, "saved")


def test_settings_changed_on_the_object_are_honoured(images: dict[tuple[int, int], Image.Image]) -> None:
    processor = transformers.SiglipImageProcessorPil(size={"height": 224, "width": 224})
    processor.size = {"height": 100, "width": 120}  # preprocess() re-standardises this; so must we
    spec = image_spec(processor)
    assert spec is not None and spec.resize_size == (100, 120)
    image = images[(333, 500)]
    assert torch.equal(_ours(image, spec), processor(images=[image], return_tensors="pt")["pixel_values"])


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("siglip2 naflex", lambda: transformers.Siglip2ImageProcessorPil()),
        ("padding", lambda: transformers.CLIPImageProcessorPil(do_pad=True, pad_size={"height": 256, "width": 256})),
        ("longest_edge", lambda: transformers.CLIPImageProcessorPil(size={"shortest_edge": 224, "longest_edge": 300})),
        ("variable size", lambda: transformers.CLIPImageProcessorPil(do_center_crop=False)),
        ("uint8 output", lambda: transformers.SiglipImageProcessorPil(do_rescale=False, do_normalize=False)),
        ("no resample", lambda: transformers.SiglipImageProcessorPil(resample=None)),
        ("not a processor", lambda: object()),
    ],
)
def test_unsupported_processors_fall_back(name: str, build: Any) -> None:
    assert image_spec(build()) is None, name


def test_overridden_pipeline_method_falls_back() -> None:
    class Sharpening(transformers.CLIPImageProcessorPil):
        def resize(self, image: Any, size: Any, resample: Any = None, **kwargs: Any) -> Any:
            return super().resize(image, size, resample, **kwargs)

    assert image_spec(Sharpening()) is None
    assert image_spec(transformers.CLIPImageProcessorPil()) is not None


def test_tiny_models_give_the_same_vectors(tiny_model_dirs: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    batch = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES[:6]]
    for family, path in tiny_model_dirs.items():
        processor = transformers.AutoProcessor.from_pretrained(path).image_processor
        spec = image_spec(processor)
        if family == "siglip2":
            assert spec is None  # NaFlex keeps the processor
            continue
        assert spec is not None, family
        model = transformers.AutoModel.from_pretrained(path).eval()
        pixels = np.stack([preprocess_image(image, spec) for image in batch])
        with torch.inference_mode():
            ours = model.get_image_features(pixel_values=spec.normalize(pixels, dtype=torch.float32, device="cpu"))
            ref = model.get_image_features(**processor(images=batch, return_tensors="pt"))
        cos = torch.nn.functional.cosine_similarity(ours.pooler_output, ref.pooler_output, dim=-1)
        assert float(cos.min()) >= 0.9999, family


# ---------------------------------------------------------------------------------- normalize
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_normalize_equals_the_processor_output_cast_to_the_dtype(
    processors: dict[str, Any], images: dict[tuple[int, int], Image.Image], dtype: torch.dtype
) -> None:
    processor = processors["clip"]
    spec = image_spec(processor)
    assert spec is not None
    batch = [images[(640, 480)], images[(333, 500)]]
    # The processor's own uint8 pixels (no rescale, no normalisation), so only normalize is under test.
    raw = processor(images=batch, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    pixels = np.asarray(raw).astype(np.uint8)
    expected = processor(images=batch, return_tensors="pt")["pixel_values"].to(dtype)
    from_numpy = spec.normalize(pixels, dtype=dtype, device="cpu")
    from_tensor = spec.normalize(torch.from_numpy(pixels), dtype=dtype, device="cpu")
    assert from_numpy.dtype == dtype and from_numpy.is_contiguous()
    assert torch.equal(from_numpy, expected) and torch.equal(from_tensor, expected)


def test_lookup_table_matches_transformers_arithmetic() -> None:
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    table = pixel_lut(mean, std, 1 / 255)
    values = np.arange(256, dtype=np.uint8)
    rescaled = (values.astype(np.float64) * (1 / 255)).astype(np.float32)
    for channel in range(3):
        expected = (rescaled - np.float32(mean[channel])) / np.float32(std[channel])
        assert np.array_equal(table[channel], expected)
    assert np.array_equal(pixel_lut(None, None, None)[1], values.astype(np.float32))


def test_normalize_refuses_what_is_not_a_uint8_chw_batch() -> None:
    kwargs: dict[str, Any] = {"mean": None, "std": None, "rescale_factor": 1 / 255, "dtype": torch.float32}
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((1, 3, 4, 4), np.float32), device="cpu", **kwargs)
    with pytest.raises(ValueError, match=r"\(n, 3, h, w\)"):
        normalize(np.zeros((1, 4, 4, 3), np.uint8), device="cpu", **kwargs)
    with pytest.raises(ValueError, match="uint8"):
        normalize(torch.zeros((3, 4, 4), dtype=torch.uint8), device="cpu", **kwargs)


def test_preprocess_refuses_non_rgb_and_wrong_out(processors: dict[str, Any]) -> None:
    spec = image_spec(processors["clip"])
    assert spec is not None
    with pytest.raises(ValueError, match="RGB"):
        preprocess_image(Image.new("L", (50, 50)), spec)
    with pytest.raises(ValueError, match="out must be"):
        preprocess_image(Image.new("RGB", (50, 50)), spec, out=np.empty((224, 224, 3), np.uint8))


# ------------------------------------------------------------------------------------ decoding
def _encoded(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _encoded(image, "JPEG", exif=exif.tobytes())


DECODING_CASES = (
    "jpeg with EXIF rotation",
    "grey JPEG",
    "CMYK JPEG",
    "RGBA PNG",
    "palette PNG with transparency",
    "16-bit PNG",
    "WEBP",
)


@functools.lru_cache(maxsize=1)
def _decoding_cases() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (90, 120, 4), dtype=np.uint8), "RGBA")
    palette = Image.fromarray(rng.integers(0, 8, (70, 60), dtype=np.uint8), "P")
    palette.putpalette(list(range(0, 256, 10)) * 3)
    palette.info["transparency"] = 3
    wide = Image.fromarray(rng.integers(0, 65535, (64, 80), dtype=np.uint16))  # mode I;16
    return {
        "jpeg with EXIF rotation": _rotated_jpeg(),
        "grey JPEG": _encoded(Image.fromarray(rng.integers(0, 256, (200, 260), dtype=np.uint8)), "JPEG"),
        "CMYK JPEG": _encoded(Image.new("CMYK", (130, 90), (10, 200, 30, 40)), "JPEG"),
        "RGBA PNG": _encoded(rgba, "PNG"),
        "palette PNG with transparency": _encoded(palette, "PNG"),
        "16-bit PNG": _encoded(wide, "PNG"),
        "WEBP": _encoded(Image.new("RGB", (77, 55), (1, 2, 3)), "WEBP"),
    }


@pytest.mark.parametrize("case", DECODING_CASES)
def test_exact_decoding_gives_the_resolvers_pixels(case: str, processors: dict[str, Any]) -> None:
    data = _decoding_cases()[case]
    spec = image_spec(processors["clip"])
    assert spec is not None
    ours = load_image(data, spec)
    theirs = resolve_image(data)
    assert ours.mode == "RGB" and ours.size == theirs.size
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert np.array_equal(prepare_image(data, spec), preprocess_image(theirs, spec))


def test_decoding_errors_name_the_item_and_index(processors: dict[str, Any], tmp_path: Path) -> None:
    spec = image_spec(processors["clip"])
    assert spec is not None
    for fast in (False, True):
        with pytest.raises(ImageInputError, match=r"image 7 \(bytes \(4\)\): cannot decode") as caught:
            prepare_image(b"junk", spec, index=7, fast=fast)
        assert caught.value.index == 7
        with pytest.raises(ImageInputError, match="file not found"):
            prepare_image(tmp_path / "missing.jpg", spec, index=0, fast=fast)
        big = _encoded(Image.new("RGB", (1000, 1000)), "JPEG")
        with pytest.raises(ImageInputError, match="max_pixels") as caught:
            prepare_image(big, spec, limits=ImageLimits(max_pixels=500_000), index=2, fast=fast)  # full size counts
        assert caught.value.index == 2
        with pytest.raises(ImageInputError, match="max_bytes"):
            prepare_image(big, spec, limits=ImageLimits(max_bytes=100), fast=fast)


def test_fast_decoding_scales_jpegs_but_never_below_the_resize_size(processors: dict[str, Any]) -> None:
    spec = image_spec(processors["clip"])
    assert spec is not None
    noise = np.random.default_rng(4).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    expectations = {(640, 480): (320, 240), (1024, 768): (512, 384), (4000, 3000): (500, 375), (400, 300): (400, 300)}
    for (width, height), drafted in expectations.items():
        data = _encoded(Image.fromarray(noise[:height, :width]), "JPEG")
        image = load_image(data, spec, fast=True)
        assert image.size == drafted and min(image.size) >= 224
        assert load_image(data, spec).size == (width, height)
    png = _encoded(Image.fromarray(noise[:768, :1024]), "PNG")
    assert load_image(png, spec, fast=True).size == (1024, 768)  # only JPEGs are scaled
    rotated = load_image(_rotated_jpeg(), spec, fast=True)
    assert rotated.size == (300, 500)  # EXIF orientation still applied (300x500 stays above 224)


# ------------------------------------------------------------------------------ fast: vectors
def _photo_like_jpeg(width: int, height: int, seed: int) -> bytes:
    """Smooth colour fields, a dozen soft-edged ellipses and mild sensor noise, saved as JPEG q90."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127 + 90 * np.sin(rng.uniform(0.002, 0.02) * x + rng.uniform(0.002, 0.02) * y + rng.uniform(0, 6.3))
        for _ in range(3)
    ]
    image = Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 20, width // 3)), y0 + int(rng.integers(height // 20, height // 3))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0))).astype(np.float32)
    pixels += rng.normal(0, 3, pixels.shape)
    return _encoded(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=90)


@pytest.fixture(scope="module")
def tiny_clip_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (hidden 32) with a 224-px, patch-32 vision tower and a 224-px processor."""
    from mmrag.testing import build_tiny_model

    path = build_tiny_model("clip", tmp_path_factory.mktemp("tiny_clip_224"))
    config = transformers.CLIPConfig.from_pretrained(path)
    config.vision_config.image_size, config.vision_config.patch_size = 224, 32
    torch.manual_seed(0)
    transformers.CLIPModel(config).eval().save_pretrained(path)
    processor = transformers.AutoProcessor.from_pretrained(path)
    processor.image_processor.size = {"shortest_edge": 224}
    processor.image_processor.crop_size = {"height": 224, "width": 224}
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def photo_files() -> list[bytes]:
    """Photo-like JPEGs of three sizes, two of each."""
    return [_photo_like_jpeg(w, h, seed) for seed, (w, h) in enumerate([(640, 480), (1024, 768), (2000, 1500)] * 2)]


@pytest.mark.parametrize("model", ["tiny_clip_224", "demo"])
def test_fast_decoding_keeps_vectors_close(
    model: str, photo_files: list[bytes], request: pytest.FixtureRequest
) -> None:
    """Random tiny 224-px CLIP and the bundled trained demo CLIP (64 px): cosine >= 0.995 to exact."""
    path = request.getfixturevalue("tiny_clip_224") if model == "tiny_clip_224" else _demo_model_dir()
    clip = transformers.CLIPModel.from_pretrained(path).eval()
    spec = image_spec(transformers.AutoProcessor.from_pretrained(path).image_processor)
    assert spec is not None
    files = photo_files

    def embed(fast: bool) -> torch.Tensor:
        pixels = np.stack([prepare_image(data, spec, fast=fast) for data in files])
        with torch.inference_mode():
            features = clip.get_image_features(pixel_values=spec.normalize(pixels, dtype=torch.float32, device="cpu"))
        return torch.nn.functional.normalize(features.pooler_output, dim=-1)

    exact, fast = embed(False), embed(True)
    assert float((exact * fast).sum(-1).min()) >= 0.995
    between = exact @ exact.T  # the bar means something: different images are far apart
    assert float(between.fill_diagonal_(-1).max()) < 0.99


def _demo_model_dir() -> Path:
    import mmrag

    return Path(mmrag.__file__).parent / "models" / "demo"


def test_a_crop_that_drops_columns_or_rows_resizes_only_the_kept_window(processors: dict[str, Any]) -> None:
    from mmrag.encoders.preprocess.pixels import _crop_window

    spec = image_spec(processors["clip"])
    assert spec is not None
    for width, height in [(640, 480), (333, 500), (4000, 3000)]:  # landscape, portrait (Pillow 13 pass order), huge
        window = _crop_window(spec, width, height, spec.resized_size(width, height))
        assert window is not None and window[0] == (224, 224), (width, height)
        left, top, right, bottom = window[1]
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
    for width, height in [(224, 224), (224, 300), (3, 400), (100, 150)]:  # nothing dropped, no resize, an upscale
        assert _crop_window(spec, width, height, spec.resized_size(width, height)) is None
    fixed = image_spec(processors["chinese_clip"])  # a fixed-size resize: the pass order may differ, so no window
    assert fixed is not None and _crop_window(fixed, 333, 500, fixed.resized_size(333, 500)) is None
