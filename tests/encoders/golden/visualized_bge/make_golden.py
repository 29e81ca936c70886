"""Make the Visualized-BGE golden files with the ORIGINAL code (FlagEmbedding ``research/visual_bge``).

Runs in its own environment, never in the test suite: the original needs transformers 4.x, and it imports
torchvision and timm (replaced here by the minimal stand-ins in ``stand_ins/``). Setup used::

    python3 -m venv /work/venvs/vbge
    /work/venvs/vbge/bin/pip install torch==2.13.0 "transformers<5" numpy pillow einops ftfy regex tqdm
    git clone https://github.com/FlagOpen/FlagEmbedding   # tested at 7ed43d67ec03fbe5c31c0992dbfa941fb1860549
    /work/venvs/vbge/bin/python make_golden.py --source FlagEmbedding/research/visual_bge

For each of the two published variants it builds the original ``Visualized_BGE`` with random weights at tiny sizes:

- ``base_en``: ``bge-base-en-v1.5`` (BERT, 2 layers of width 64) with the EVA02-CLIP-B-16 config at 2 layers of width
  128 (2 heads), MLP ratio 0.5;
- ``m3``: ``bge-m3`` (XLM-RoBERTa, 2 layers of width 32) with the EVA02-CLIP-L-14 config at 2 layers of width 64,
  MLP ratio 1.

Both text models share one small WordPiece vocabulary (the original reads its tokenizer with ``use_fast=False``; the
XLM-RoBERTa variant pads with id 0, so its positions start at 1). The script saves each ``state_dict()`` as
``tiny_<variant>.pth`` (the original's own layout: ``bge_encoder.*``, ``bge_embeddings.*``, ``bge_pooler.*``,
``model_visual.*``, ``visual_proj.*``), reloads it through the original's strict ``load_model``, and writes the
vectors of ``encode_text``, ``encode_image`` and ``encode_mm``, one input at a time, to ``golden_<variant>.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
# variant -> (text model dir: the original picks its sizes by this substring of the name, EVA config, its overrides)
VARIANTS = {
    "base_en": ("tiny-bge-base-en-v1.5", "EVA02-CLIP-B-16", {"layers": 2, "width": 128, "mlp_ratio": 0.5}),
    "m3": ("tiny-bge-m3", "EVA02-CLIP-L-14", {"layers": 2, "width": 64, "mlp_ratio": 1.0}),
}

TEXTS = [
    "a red circle",
    "a photo of a small blue square on the left",
    "shoe",
    "the quick brown fox jumps over the lazy dog, twice, in the morning light",
]
PAIRS = [
    ("square_a.png", "make it red"),
    ("wide.png", "a photo of a blue shoe"),
    ("tall.png", "the same, but smaller and on the left"),
    ("square_b.png", "dog"),
]
WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "at",
    "to",
    "and",
    "but",
    "it",
    "is",
    "photo",
    "picture",
    "image",
    "red",
    "blue",
    "green",
    "yellow",
    "small",
    "large",
    "big",
    "circle",
    "square",
    "shoe",
    "dog",
    "cat",
    "fox",
    "quick",
    "brown",
    "jumps",
    "over",
    "lazy",
    "left",
    "right",
    "same",
    "make",
    "smaller",
    "twice",
    "morning",
    "light",
]


def write_text_model(variant: str) -> Path:
    from transformers import BertConfig, XLMRobertaConfig

    text_model = HERE / VARIANTS[variant][0]
    text_model.mkdir(exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!", "?", "'", "-"]
    vocab += letters + [f"##{c}" for c in letters] + WORDS
    (text_model / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer_config = {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}
    (text_model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
    (text_model / "special_tokens_map.json").write_text(json.dumps({**special, "mask_token": "[MASK]"}, indent=2))
    if variant == "base_en":
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
        )
    else:
        config = XLMRobertaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        )
    config.save_pretrained(text_model)
    return text_model


def write_images() -> None:
    IMAGES.mkdir(exist_ok=True)
    sizes = {"square_a.png": (224, 224), "square_b.png": (224, 224), "wide.png": (320, 200), "tall.png": (150, 260)}
    for seed, (name, (width, height)) in enumerate(sizes.items()):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        channels = []
        for _ in range(3):
            fx, fy, phase = [*rng.uniform(0.01, 0.08, size=2).tolist(), rng.uniform(0, 6.28)]
            channels.append(127.5 + 127.5 * np.sin(fx * xx + fy * yy + phase))
        array = np.stack(channels, axis=-1)
        cx, cy, radius = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, min(width, height) / 5
        array[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] = rng.uniform(0, 255, size=3)
        Image.fromarray(array.round().clip(0, 255).astype(np.uint8)).save(IMAGES / name)


def randomize(model: torch.nn.Module) -> None:
    """Random weights large enough that different inputs give clearly different vectors."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 0:  # logit_scale, unused at inference
                continue
            if param.dim() == 3:  # cls_token, pos_embed
                param.copy_(0.5 * noise)
            elif name.endswith("weight") and param.dim() == 1:  # LayerNorm scales
                param.copy_(1.0 + 0.2 * noise)
            elif param.dim() == 1:  # biases, q_bias, v_bias
                param.copy_(0.2 * noise)
            else:
                fan_in = param[0].numel()
                param.copy_(2.0 * noise / fan_in**0.5)


def make_variant(modeling: Any, factory: Any, variant: str) -> None:
    _, eva_name, overrides = VARIANTS[variant]
    eva = factory._MODEL_CONFIGS[eva_name]
    eva["embed_dim"] = 32
    eva["vision_cfg"].update(overrides)
    text_model = write_text_model(variant)
    hidden = json.loads((text_model / "config.json").read_text())["hidden_size"]
    pth = HERE / f"tiny_{variant}.pth"

    torch.manual_seed(0)
    original_load = modeling.Visualized_BGE.load_model
    modeling.Visualized_BGE.load_model = lambda self, weight: None  # first build: random weights, nothing to load
    model = modeling.Visualized_BGE(model_name_bge=str(text_model), model_weight="unused", from_pretrained=text_model)
    # The original sizes visual_proj by the BGE name (768 or 1024 square); tiny, it maps EVA width to text width.
    model.visual_proj = torch.nn.Linear(overrides["width"], hidden)
    randomize(model)
    torch.save(model.state_dict(), pth)

    model = modeling.Visualized_BGE(model_name_bge=str(text_model), model_weight="unused", from_pretrained=text_model)
    model.visual_proj = torch.nn.Linear(overrides["width"], hidden)
    modeling.Visualized_BGE.load_model = original_load
    model.load_model(str(pth))  # strict load of the saved file: the layout round-trips through the original
    model.eval()

    def tokens(text: str) -> dict[str, torch.Tensor]:
        return model.tokenizer([text], return_tensors="pt", padding=True)

    def pixels(name: str) -> torch.Tensor:
        return model.preprocess_val(Image.open(IMAGES / name)).unsqueeze(0)

    with torch.no_grad():
        text = np.concatenate([model.encode_text(tokens(t)).numpy() for t in TEXTS])
        image_names = sorted(p.name for p in IMAGES.glob("*.png"))
        image = np.concatenate([model.encode_image(pixels(n)).numpy() for n in image_names])
        fused = np.concatenate([model.encode_mm(pixels(n), tokens(t)).numpy() for n, t in PAIRS])
    np.savez(
        HERE / f"golden_{variant}.npz",
        texts=np.array(TEXTS),
        text=text.astype(np.float32),
        image_names=np.array(image_names),
        image=image.astype(np.float32),
        pair_images=np.array([n for n, _ in PAIRS]),
        pair_texts=np.array([t for _, t in PAIRS]),
        fused=fused.astype(np.float32),
    )
    for label, vectors in (("text", text), ("image", image), ("fused", fused)):
        cos = vectors @ vectors.T
        print(variant, label, vectors.shape, "largest off-diagonal cos", float((cos - 2 * np.eye(len(cos))).max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="FlagEmbedding's research/visual_bge directory")
    args = parser.parse_args()
    sys.path[:0] = [str(HERE / "stand_ins"), str(Path(args.source).resolve())]

    from visual_bge import modeling
    from visual_bge.eva_clip import factory

    write_images()
    for variant in VARIANTS:
        make_variant(modeling, factory, variant)


if __name__ == "__main__":
    main()
