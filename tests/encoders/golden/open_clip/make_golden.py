"""Make the OpenCLIP golden vectors with the real ``open_clip`` library (run once, commit the outputs).

Not part of the test suite: it needs ``open_clip_torch`` (3.3.0), which imports torchvision at import
time, and torchvision does not install beside the CPU torch build here. So it runs in a throwaway
venv (torch, ``open_clip_torch --no-deps``, ftfy, regex, huggingface_hub, safetensors, tqdm) with a
minimal stand-in for the torchvision pieces open_clip uses at inference, written below after
torchvision's documented behaviour on PIL images (``Resize`` of the shortest edge with
``int(size * long / short)``, ``CenterCrop`` with ``round((h - ch) / 2)``, ``ToTensor``,
``Normalize``). Usage::

    /work/venvs/openclip/bin/python tests/encoders/golden/open_clip/make_golden.py

For each variant (``gelu``: GELU, shortest-edge resize + centre crop, bicubic, OpenAI mean/std,
safetensors weights; ``quickgelu``: QuickGELU, squash resize, bilinear, other mean/std, a pickle
``.bin``) it writes a directory holding ``open_clip_config.json``, the random weights, the BPE as
``vocab.json`` + ``merges.txt``, and ``golden.npz``: the images (uint8), the token ids open_clip's
``SimpleTokenizer`` made and the L2-normalised text and image vectors of open_clip's
``encode_text`` / ``encode_image`` after its own preprocessing (``create_model_and_transforms``
with ``local-dir:``).
"""

from __future__ import annotations

import enum
import gzip
import itertools
import json
import re
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent

TEXTS = [
    "a red circle",
    "a blue square on the left",
    "A Small GREEN triangle!!",
    "two yellow stars above a large purple square, drawn on a white background with thin black lines",
]
CORPUS = [
    "a red circle on the left",
    "a blue square on the right",
    "a small green triangle in the middle",
    "a large yellow star above a purple square",
    "two circles and three squares on a white background",
    "thin black lines drawn around a red shape",
    "the triangle is below the circle",
    "a photo of a cat",
    "a photo of a dog",
] * 3


# ------------------------------------------------------------------ torchvision stand-in
class InterpolationMode(enum.Enum):
    """The interpolation names open_clip passes; values are the PIL filters."""

    NEAREST = Image.Resampling.NEAREST
    BILINEAR = Image.Resampling.BILINEAR
    BICUBIC = Image.Resampling.BICUBIC


def _resize(img: Image.Image, size: Any, interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> Any:
    width, height = img.size
    if isinstance(size, int) or len(size) == 1:
        target = size if isinstance(size, int) else size[0]
        short, long = min(width, height), max(width, height)
        new_short, new_long = target, int(target * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    else:
        new_h, new_w = size
    if (new_w, new_h) == (width, height):
        return img
    return img.resize((new_w, new_h), interpolation.value)


def _center_crop(img: Image.Image, output_size: Any) -> Image.Image:
    crop_h, crop_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    width, height = img.size
    if crop_w > width or crop_h > height:
        raise NotImplementedError("the stand-in does not pad")
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    return img.crop((left, top, left + crop_w, top + crop_h))


def _to_tensor(pic: Image.Image) -> torch.Tensor:
    array = np.asarray(pic, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)


class _Callable:
    def __repr__(self) -> str:
        return type(self).__name__


class Compose(_Callable):
    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms

    def __call__(self, img: Any) -> Any:
        for transform in self.transforms:
            img = transform(img)
        return img


class Resize(_Callable):
    def __init__(self, size: Any, interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        return _resize(img, self.size, self.interpolation)


class CenterCrop(_Callable):
    def __init__(self, size: Any) -> None:
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        return _center_crop(img, self.size)


class ToTensor(_Callable):
    def __call__(self, pic: Image.Image) -> torch.Tensor:
        return _to_tensor(pic)


class Normalize(_Callable):
    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor - self.mean) / self.std


class _TrainingOnly(_Callable):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # open_clip builds its training transforms too; they are never called here

    def __call__(self, img: Any) -> Any:
        raise NotImplementedError("training augmentations are not part of the stand-in")


def install_torchvision_stand_in() -> None:
    """Put the stand-in modules in ``sys.modules`` under torchvision's names."""
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    misc = types.ModuleType("torchvision.ops.misc")
    for name, value in {
        "InterpolationMode": InterpolationMode,
        "Compose": Compose,
        "Resize": Resize,
        "CenterCrop": CenterCrop,
        "ToTensor": ToTensor,
        "Normalize": Normalize,
        "RandomResizedCrop": _TrainingOnly,
        "ColorJitter": _TrainingOnly,
        "Grayscale": _TrainingOnly,
        "functional": functional,
    }.items():
        setattr(transforms, name, value)
    functional.resize = _resize  # type: ignore[attr-defined]  # a stand-in module
    functional.center_crop = _center_crop  # type: ignore[attr-defined]  # a stand-in module
    functional.to_tensor = _to_tensor  # type: ignore[attr-defined]  # a stand-in module
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})  # type: ignore[attr-defined]  # a stand-in module
    root.transforms, root.ops, ops.misc = transforms, ops, misc  # type: ignore[attr-defined]  # a stand-in module
    sys.modules.update(
        {
            "torchvision": root,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
            "torchvision.ops.misc": misc,
        }
    )


# ------------------------------------------------------------------ a tiny byte-level BPE
def _words(tokenizer_module: Any) -> Counter[tuple[str, ...]]:
    """Corpus words as byte-symbol tuples, split the way open_clip's SimpleTokenizer splits them."""
    byte_encoder = tokenizer_module.bytes_to_unicode()
    pattern = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")
    counts: Counter[tuple[str, ...]] = Counter()
    for line in CORPUS:
        for word in pattern.findall(line.lower()):
            symbols = [byte_encoder[b] for b in word.encode("utf-8")]
            symbols[-1] += "</w>"
            counts[tuple(symbols)] += 1
    return counts


def learn_merges(tokenizer_module: Any, count: int) -> list[tuple[str, str]]:
    """Greedy BPE merges (most frequent pair first, ties by the pair itself) on :data:`CORPUS`."""
    words = _words(tokenizer_module)
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, n in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def write_bpe(tokenizer_module: Any, merges: list[tuple[str, str]], out: Path, gz_path: Path) -> int:
    """Write the merges as open_clip's gzip file and as a transformers ``vocab.json`` + ``merges.txt``."""
    gz_path.write_bytes(gzip.compress(("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges)).encode()))
    symbols = list(tokenizer_module.bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]  # open_clip calls them <start_of_text>, <end_of_text>
    (out / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)


# ------------------------------------------------------------------ the model and its vectors
VARIANTS: dict[str, dict[str, Any]] = {
    "gelu": {
        "quick_gelu": False,
        "weights": "open_clip_model.safetensors",
        "preprocess_cfg": {"resize_mode": "shortest", "interpolation": "bicubic"},
    },
    "quickgelu": {
        "quick_gelu": True,
        "weights": "open_clip_pytorch_model.bin",
        "preprocess_cfg": {
            "mean": [0.5, 0.45, 0.4],
            "std": [0.25, 0.3, 0.35],
            "resize_mode": "squash",
            "interpolation": "bilinear",
        },
    },
}


def make_images() -> list[np.ndarray]:
    """Three RGB images: the model's own size, a larger square and a portrait (even crop margins)."""
    rng = np.random.default_rng(12)
    images = []
    for height, width in ((32, 32), (64, 64), (48, 40)):
        base = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        smooth = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
        noise = rng.integers(-20, 21, size=smooth.shape)
        images.append(np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8))
    return images


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter so that a tiny random model gives clearly different vectors."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "embedding" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                projection = name.endswith(("proj", "text_projection"))  # stored (in, out)
                fan_in = param.shape[0] if projection else param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) * 1.5 * fan_in**-0.5)
            elif name.endswith("logit_scale"):
                param.fill_(float(np.log(1 / 0.07)))
            else:
                base = 1.0 if name.endswith("weight") and "ln" in name else 0.0
                param.copy_(base + 0.2 * torch.randn(param.shape, generator=generator))


def make_variant(name: str, spec: dict[str, Any], merges: list[tuple[str, str]], tmp: Path) -> None:
    import open_clip
    import safetensors.torch

    out = HERE / name
    out.mkdir(exist_ok=True)
    gz_path = tmp / f"{name}_bpe.txt.gz"
    vocab_size = write_bpe(open_clip.tokenizer, merges, out, gz_path)
    context_length = 24
    config = {
        "model_cfg": {
            "embed_dim": 16,
            "quick_gelu": spec["quick_gelu"],
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
            "text_cfg": {
                "context_length": context_length,
                "vocab_size": vocab_size,
                "width": 32,
                "heads": 4,
                "layers": 2,
            },
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
        | spec["preprocess_cfg"],
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    for stale in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        (out / stale).unlink(missing_ok=True)
    model = open_clip.create_model(f"local-dir:{out}")
    randomise(model, seed=len(name))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if spec["weights"].endswith(".safetensors"):
        safetensors.torch.save_file(state, str(out / spec["weights"]))
    else:
        torch.save(state, out / spec["weights"])

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    model.eval()
    tokenizer = open_clip.tokenizer.SimpleTokenizer(str(gz_path), context_length=context_length)
    images = make_images()
    with torch.no_grad():
        ids = tokenizer(TEXTS)
        text = model.encode_text(ids, normalize=True)
        pixels = torch.stack([preprocess(Image.fromarray(array)) for array in images])
        image = model.encode_image(pixels, normalize=True)
    arrays: dict[str, Any] = {f"image_{i}": array for i, array in enumerate(images)}
    np.savez_compressed(
        out / "golden.npz",
        text_ids=ids.numpy(),
        text=text.numpy().astype(np.float32),
        image=image.numpy().astype(np.float32),
        open_clip_version=np.array(open_clip.__version__),
        **arrays,
    )
    print(name, "vocab", vocab_size, "text", tuple(text.shape), "image", tuple(image.shape))


def main() -> None:
    """Write every variant's directory."""
    install_torchvision_stand_in()
    import open_clip

    merges = learn_merges(open_clip.tokenizer, count=200)
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in VARIANTS.items():
            make_variant(name, spec, merges, Path(tmp))


if __name__ == "__main__":
    main()
