#!/usr/bin/env python
"""Train the bundled ``demo`` model: a tiny CLIP on synthetic bilingual shape captions.

Model weights cannot be downloaded on every machine, and a random-weight model
cannot show that search works, so mmrag ships its own small model, trained by
this script, deterministically, on the CPU in a few minutes:

1. Data: :mod:`mmrag.demo_data` renders one outlined, coloured shape per
   64 px image (8 colours x 6 shapes x 2 sizes x 5 positions x 7
   backgrounds, with jitter) from ``--seed``. Every step, each image gets an
   English and a Chinese caption drawn from several templates (with a few
   synonyms: "big", "in the middle", "上面"). The first ``--full-phase`` of
   the steps use captions that name all four attributes; after that a
   caption may also name only colour + shape (+ size or position), so that
   short queries such as "a red circle" / "红色的圆形" work.
2. Tokenizer: a CLIP byte-level BPE (lowercase, ``</w>`` suffix, vocab.json +
   merges.txt, reloads as ``CLIPTokenizer`` through ``AutoProcessor``).
   English merges are learned with :func:`mmrag.testing.train_tokenizer` on
   the English captions. Chinese captions have no spaces, so one caption is
   one pre-token and learned merges would glue words together ("色小圆形");
   instead, Chinese merges are built from the Chinese captions' words and
   characters (segmented with the caption lexicon, ranked by frequency):
   every character becomes one token and every word one token, never a
   piece spanning two words. Any other text still tokenises byte by byte
   (never UNK).
3. Model: ``transformers.CLIPModel``: a ViT (64 px, patch 8, hidden 96,
   2 layers; position embeddings start from a 2-D sin-cos grid) and a text
   transformer (hidden 96, 3 layers, 32 positions), projection 64, trained
   with AdamW and a symmetric contrastive (InfoNCE) loss with CLIP's
   learnable logit scale. A caption naming fewer attributes matches several
   images; every matching pair is a positive, contrasted with the
   non-matching items only.
4. Save: ``save_pretrained`` (safetensors, float32) + ``CLIPProcessor`` into
   ``--out``, plus ``vocab.json``/``merges.txt``; check that the tokenizer
   reloads identically (CLIPTokenizer, AutoTokenizer, AutoProcessor, and
   from vocab.json + merges.txt alone); then evaluate on held-out images from
   ``--eval-seed`` through ``mmrag.load_encoder(out)`` and print the figures
   (recall@1, defined as in ``tests/test_demo_model.py``) as JSON. The same
   held-out images give the text<->image cosine that best separates matches
   from non-matches; it goes into ``config.json`` as
   ``mmrag_neutral_cosine``, for :mod:`mmrag.rerank`'s match probabilities.

Trials (2-core CPU, similar budgets): earlier runs (4-layer vision tower,
no outline, short captions from the first step, every positive in every
denominator) learned colours but left shapes near chance (0.2-0.3). Together,
a shallow vision tower (2 layers learned shapes faster than 4 in a probe),
the outline on the shapes, a first phase of full captions only, leaving other
positives out of each positive's denominator and no captions vaguer than
colour + shape brought shapes to 0.96; 1800 rather than 1200 steps brought
held-out image->text colour + shape from 0.96 to 0.98. Hard-negative batches
and swapped-attribute negative captions did not help.

Usage::

    python scripts/train_demo_model.py                   # writes src/mmrag/models/demo
    python scripts/train_demo_model.py --out /tmp/demo --steps 200

The run is deterministic for a given ``--seed``, ``--steps`` and thread count
(``--threads``, default 2): the same arguments write the same bytes. On an
idle 2-core machine the default run (1800 steps of 128 images, 0.3 s each)
takes about 9 minutes in all. ``--minutes`` is a safety budget for the
training loop: every 25 steps the script checks, at the speed of the last 25
steps, whether the remaining steps fit; if not (a busy or slower machine),
it runs fewer steps, shortens the learning-rate schedule to match and prints
a warning (that run is then no longer the reference run).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import torch
import torch.nn.functional as F

from mmrag.demo_data import (
    COLOURS,
    DEFAULT_IMAGE_SIZE,
    LANGUAGES,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeSample,
    sample_shapes,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "mmrag" / "models" / "demo"

# CLIP's image normalisation (the processor applies the same).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

MAX_TEXT_LENGTH = 32
PROJECTION_DIM = 64
ATTRIBUTES = ("colour", "shape", "size", "position")
_VALUES = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}
_INDEX = {field: {w.name: i for i, w in enumerate(words)} for field, words in _VALUES.items()}


# ----------------------------------------------------------------------------- captions
# Extra words, used only as synonyms in training captions so that natural
# variants of the queries work too.
_EN_SYNONYMS = {"large": ("large", "large", "big"), "center": ("in the center", "in the center", "in the middle")}
_ZH_POSITION_SYNONYMS = {"top": ("上边", "上边", "上面"), "bottom": ("下边", "下边", "下面")}
_ZH_FUNCTION_WORDS = ("的", "一个", "有", "在", "图片", "东西", "形状", "里")

# Which attributes a training caption names, with probabilities. Every caption
# names at least colour and shape: vaguer captions ("a shape on the left",
# "something red") match many images at once and, in trials, stopped the
# model from learning anything but colour.
_SUBSETS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("size", "colour", "shape", "position"), 0.5),
    (("colour", "shape"), 0.25),
    (("size", "colour", "shape"), 0.125),
    (("colour", "shape", "position"), 0.125),
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def english_caption(sample: ShapeSample, names: tuple[str, ...], rng: random.Random) -> str:
    """A random English caption of ``sample`` naming exactly the attributes in ``names``."""
    words = sample.words("en")
    size = rng.choice(_EN_SYNONYMS.get(sample.size, (words["size"],))) if "size" in names else None
    colour = words["colour"] if "colour" in names else None
    shape = words["shape"] if "shape" in names else None
    position = rng.choice(_EN_SYNONYMS.get(sample.position, (words["position"],))) if "position" in names else None
    if shape is None and colour is not None and size is None and rng.random() < 0.5:
        phrase = rng.choice((f"something {colour}", f"a {colour} thing", colour))
    else:
        noun = shape or rng.choice(("shape", "object"))
        phrase = " ".join(w for w in (size, colour, noun) if w)
        phrase = rng.choice(
            (f"{_article(phrase)} {phrase}",) * 3
            + (
                phrase,
                f"a photo of {_article(phrase)} {phrase}",
                f"an image of {_article(phrase)} {phrase}",
                f"there is {_article(phrase)} {phrase}",
            )
        )
    return f"{phrase} {position}" if position else phrase


def chinese_caption(sample: ShapeSample, names: tuple[str, ...], rng: random.Random) -> str:
    """A random Chinese caption of ``sample`` naming exactly the attributes in ``names``."""
    words = sample.words("zh")
    size = words["size"] if "size" in names else ""
    colour = words["colour"] if "colour" in names else ""
    shape = words["shape"] if "shape" in names else "形状"
    position = (
        rng.choice(_ZH_POSITION_SYNONYMS.get(sample.position, (words["position"],))) if "position" in names else ""
    )
    if colour and not size and "shape" not in names and rng.random() < 0.5:
        phrase = rng.choice((f"{colour}的东西", colour))
    elif colour:
        phrase = rng.choice(
            (f"{colour}{size}{shape}",) * 2
            + (f"{colour}的{size}{shape}",)
            + ((f"{size}的{colour}{shape}",) if size else (f"{colour}{shape}",))
        )
    else:
        phrase = rng.choice((f"{size}{shape}", f"{size}的{shape}" if size else shape))
    template = "{phrase}"
    if position:
        template = rng.choice(
            ("{position}的{phrase}",) * 3
            + ("{position}有一个{phrase}", "{phrase}在{position}", "图片{position}有一个{phrase}")
        )
    if "有一个" not in template and phrase != colour and rng.random() < 0.25:
        phrase = f"一个{phrase}"
    return template.format(position=position, phrase=phrase)


FULL = ("size", "colour", "shape", "position")


def random_caption(
    sample: ShapeSample, lang: str, rng: random.Random, *, full_only: bool = False
) -> tuple[str, tuple[int, int, int, int]]:
    """A random training caption and the attribute indices it names (-1: not named).

    Args:
        sample: The image's sample.
        lang: ``"en"`` or ``"zh"``.
        rng: Random source.
        full_only: Name all four attributes (the first training phase).
    """
    names = FULL
    r = rng.random()
    for names, p in _SUBSETS:  # noqa: B007 - the subset picked is used after the loop
        r -= p
        if r < 0:
            break
    if full_only:
        names = FULL
    if rng.random() < 0.15:  # the canonical captions the public API shows, verbatim
        detail = {
            4: "full",
            2: "colour_shape",
            3: ("colour_shape_size" if "size" in names else "colour_shape_position"),
        }
        if set(names) >= {"colour", "shape"}:
            text = sample.caption(lang, detail[len(names)])  # type: ignore[arg-type]  # "en"/"zh" and DETAILS values
            return text, _named(sample, names)
    text = english_caption(sample, names, rng) if lang == "en" else chinese_caption(sample, names, rng)
    return text, _named(sample, names)


def _named(sample: ShapeSample, names: tuple[str, ...]) -> tuple[int, int, int, int]:
    return tuple(_INDEX[f][getattr(sample, f)] if f in names else -1 for f in ATTRIBUTES)  # type: ignore[return-value]  # 4 ATTRIBUTES


def attribute_indices(samples: list[ShapeSample]) -> torch.Tensor:
    """``(n, 4)`` long tensor of colour, shape, size and position indices."""
    return torch.tensor([[_INDEX[f][getattr(s, f)] for f in ATTRIBUTES] for s in samples], dtype=torch.long)


def caption_corpus(seed: int, n_random: int = 6000) -> list[str]:
    """Every canonical caption of every combination plus random template captions."""
    corpus = []
    for c, s, z, p in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS):
        sample = ShapeSample(c.name, s.name, z.name, p.name)
        for lang in LANGUAGES:
            for detail in ("full", "colour_shape", "colour_shape_size", "colour_shape_position"):
                corpus.append(sample.caption(lang, detail))
    rng = random.Random(f"corpus:{seed}")
    for sample in sample_shapes(n_random // 2, seed=10_000 + seed):
        for lang in LANGUAGES:
            corpus.append(random_caption(sample, lang, rng)[0])
    return corpus


# ----------------------------------------------------------------------------- tokenizer
def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


def chinese_lexicon() -> list[str]:
    """The Chinese words of the captions (attribute words, synonyms, function words)."""
    words = {w.zh for group in _VALUES.values() for w in group}
    words.update(w for alts in _ZH_POSITION_SYNONYMS.values() for w in alts)
    words.update(_ZH_FUNCTION_WORDS)
    return sorted(words)


def _segment(text: str, lexicon: list[str]) -> list[str]:
    """Greedy longest-match segmentation of a CJK run; unknown characters stand alone."""
    by_length = sorted(lexicon, key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        word = next((w for w in by_length if text.startswith(w, i)), text[i])
        out.append(word)
        i += len(word)
    return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tokenizer(corpus: list[str]) -> Any:
    """A CLIPTokenizer: learned English BPE merges + frequency-ranked Chinese character and word merges."""
    from transformers import CLIPTokenizer

    from mmrag.testing import train_tokenizer

    english = [t for t in corpus if not any(_is_cjk(ch) for ch in t)]
    chinese = [t for t in corpus if any(_is_cjk(ch) for ch in t)]
    base = train_tokenizer("clip_bpe", english, vocab_size=2000, model_max_length=MAX_TEXT_LENGTH)
    model = json.loads(base.backend_tokenizer.to_str())["model"]
    specials = ("<|startoftext|>", "<|endoftext|>")
    order = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if t not in specials]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    byte_char = _bytes_to_unicode()
    lexicon = chinese_lexicon()
    char_count: collections.Counter[str] = collections.Counter()
    word_count: collections.Counter[str] = collections.Counter()
    for text in chinese:
        for run in "".join(ch if _is_cjk(ch) else " " for ch in text).split():
            char_count.update(run)
            word_count.update(w for w in _segment(run, lexicon) if len(w) > 1)

    def symbols(ch: str) -> list[str]:
        return [byte_char[b] for b in ch.encode("utf-8")]

    vocab_seen = set(order)
    new_merges: list[tuple[str, str]] = []

    def add_merge(a: str, b: str) -> None:
        if (a, b) not in seen_merges:
            seen_merges.add((a, b))
            new_merges.append((a, b))
        for token in (a + b,):
            if token not in vocab_seen:
                vocab_seen.add(token)
                order.append(token)

    seen_merges = set(merges)
    chars = [ch for ch, _ in sorted(char_count.items(), key=lambda kv: (-kv[1], kv[0]))]
    # Characters: first every (lead byte, continuation byte) pair, then the completions, so a
    # merge never joins bytes of two characters; each character also gets its word-final form.
    for ch in chars:
        b = symbols(ch)
        add_merge(b[0], b[1])
    for ch in chars:
        b = symbols(ch)
        add_merge(b[0] + b[1], b[2])
        add_merge(b[0] + b[1], b[2] + "</w>")
    # Words, most frequent first, left to right; non-final and word-final forms.
    for word, _ in sorted(word_count.items(), key=lambda kv: (-kv[1], kv[0])):
        prefix = "".join(symbols(word[0]))
        for k, ch in enumerate(word[1:], start=1):
            token = "".join(symbols(ch))
            if k == len(word) - 1:
                add_merge(prefix, token + "</w>")
            add_merge(prefix, token)
            prefix += token
    merges.extend(new_merges)
    order.extend(specials)
    vocab = {token: i for i, token in enumerate(order)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TEXT_LENGTH)


def save_vocab_files(tokenizer: Any, out: Path) -> None:
    """Write CLIP's classic ``vocab.json`` and ``merges.txt`` next to ``tokenizer.json``.

    transformers 5 saves only ``tokenizer.json``; the classic files let any
    CLIP BPE implementation (and older transformers) rebuild the tokenizer.
    """
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = [" ".join(m) if not isinstance(m, str) else m for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def check_tokenizer(tokenizer: Any, out: Path, texts: list[str]) -> None:
    """Reload the saved tokenizer three ways and require identical, UNK-free ids."""
    import transformers
    from transformers import AutoProcessor, AutoTokenizer, CLIPTokenizer

    reloaded = {
        "CLIPTokenizer": CLIPTokenizer.from_pretrained(out),
        "AutoTokenizer": AutoTokenizer.from_pretrained(out),
        "AutoProcessor": AutoProcessor.from_pretrained(out).tokenizer,
    }
    if hasattr(transformers, "CLIPTokenizerFast"):
        reloaded["CLIPTokenizerFast"] = transformers.CLIPTokenizerFast.from_pretrained(out)
    with tempfile.TemporaryDirectory() as classic:  # from vocab.json + merges.txt alone
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            shutil.copy(out / name, Path(classic) / name)
        reloaded["vocab.json+merges.txt"] = CLIPTokenizer.from_pretrained(classic)
    special = set(tokenizer.all_special_ids)
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        body = [i for i in ids if i not in special]
        if not body or tokenizer.unk_token_id in body:
            raise RuntimeError(f"tokenizer maps {text!r} to UNK or nothing: {ids}")
        for name, other in reloaded.items():
            if other(text)["input_ids"] != ids:
                raise RuntimeError(f"{name} reload tokenizes {text!r} differently: {other(text)['input_ids']} != {ids}")


# ----------------------------------------------------------------------------- model
def make_config(tokenizer: Any) -> Any:
    from transformers import CLIPConfig

    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TEXT_LENGTH,
        "hidden_act": "quick_gelu",
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "image_size": DEFAULT_IMAGE_SIZE,
        "patch_size": 8,
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_act": "quick_gelu",
    }
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=PROJECTION_DIM, logit_scale_init_value=math.log(30.0)
    )


def init_vision_positions(model: Any) -> None:
    """Start the image position embeddings from a 2-D sine-cosine grid.

    CLIP initialises them with std 0.02, ~50x smaller than the patch
    embeddings, and a tiny ViT trained from scratch then takes many steps
    to notice *where* a shape is. A fixed 2-D sin-cos pattern of a similar
    scale as the patch embeddings (still trainable) makes positions visible
    from the first step. The class token's position embedding is zero.
    """
    embedding = model.vision_model.embeddings.position_embedding.weight
    dim = embedding.shape[1]
    grid = round(math.sqrt(embedding.shape[0] - 1))
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij"
    )
    parts = []
    for coord in (xs.reshape(-1), ys.reshape(-1)):
        angles = coord[:, None] * omega[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    table = torch.cat(parts, dim=1)
    table = torch.cat([table, torch.zeros(table.shape[0], dim - table.shape[1])], dim=1)
    with torch.no_grad():
        embedding.zero_()
        embedding[1:] = table


def make_processor(tokenizer: Any) -> Any:
    import transformers
    from transformers import CLIPProcessor
    from transformers.utils import is_torchvision_available

    name = "CLIPImageProcessor"
    if not is_torchvision_available() and hasattr(transformers, name + "Pil"):
        name += "Pil"
    n = DEFAULT_IMAGE_SIZE
    image_processor = getattr(transformers, name)(
        size={"shortest_edge": n}, crop_size={"height": n, "width": n},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )  # fmt: skip  # aligned by hand
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, h, w, 3)`` -> normalised float ``(n, 3, h, w)``, as the image processor does at 64 px."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def render_all(samples: list[ShapeSample]) -> np.ndarray:
    return np.stack([np.asarray(s.render(DEFAULT_IMAGE_SIZE), dtype=np.uint8) for s in samples])


def image_features(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def text_features(model: Any, batch: Any) -> torch.Tensor:
    out = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return model.text_projection(out.pooler_output)


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, match: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every matching (image, caption) pair is a positive.

    A caption that names fewer attributes ("a red circle") matches several
    images. Each positive pair is contrasted with the *non-matching* items
    only (other positives are left out of its denominator), so a caption
    is not asked to be equally close to images of different specificity.

    Args:
        img: Image features ``(B, d)``.
        txt: Caption features ``(T, d)``.
        match: ``(B, T)`` bool, caption ``j`` describes image ``i``.
        scale: The logit scale (inverse temperature).

    Returns:
        The mean of the image->text and text->image losses.
    """
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    negatives = logits.masked_fill(match, -1e4)
    m = match.float()
    per_image = (torch.logaddexp(logits, torch.logsumexp(negatives, 1, keepdim=True)) - logits) * m
    per_text = (torch.logaddexp(logits, torch.logsumexp(negatives, 0, keepdim=True)) - logits) * m
    i2t = (per_image.sum(1) / m.sum(1).clamp(min=1)).mean()
    t2i = (per_text.sum(0) / m.sum(0).clamp(min=1)).mean()
    return (i2t + t2i) / 2


# ----------------------------------------------------------------------------- evaluation
def evaluate(embed_texts: Any, embed_images: Any, samples: list[ShapeSample], images: list[Any]) -> dict[str, Any]:
    """Held-out recall@1 figures (see the module docstring of tests/test_demo_model.py)."""
    img = embed_images(images)
    attrs = attribute_indices(samples).numpy()
    results: dict[str, Any] = {"n_images": len(samples)}
    combos = {
        "colour_shape": ("colour_shape", [0, 1]),
        "full": ("full", [0, 1, 2, 3]),
    }
    for key, (detail, cols) in combos.items():
        # Candidate captions: every combination of the named attributes.
        grids = list(itertools.product(*[range(len(_VALUES[ATTRIBUTES[c]])) for c in cols]))
        for lang in LANGUAGES:

            def caption(combo: tuple[int, ...], cols: list[int] = cols, lang: str = lang, detail: str = detail) -> str:
                values = {ATTRIBUTES[c]: _VALUES[ATTRIBUTES[c]][v].name for c, v in zip(cols, combo)}
                filler = {"colour": "red", "shape": "circle", "size": "small", "position": "left"}
                return ShapeSample(**{**filler, **values}).caption(lang, detail)  # type: ignore[arg-type]  # "en"/"zh", a DETAILS value

            txt = embed_texts([caption(c) for c in grids])
            grid_arr = np.array(grids)
            # text -> image: query each combination present among the images.
            present = sorted({tuple(a[cols]) for a in attrs})
            index = {c: i for i, c in enumerate(grids)}
            q = txt[[index[c] for c in present]]
            top = (q @ img.T).argmax(1)
            hits = [tuple(attrs[t][cols]) == c for t, c in zip(top, present)]
            results[f"t2i_{key}_{lang}"] = round(float(np.mean(hits)), 4)
            results[f"t2i_{key}_{lang}_queries"] = len(present)
            # image -> text: the best of all candidate captions.
            best = grid_arr[(img @ txt.T).argmax(1)]
            results[f"i2t_{key}_{lang}"] = round(float(np.mean((best == attrs[:, cols]).all(1))), 4)
            if key == "full":
                for j, c in enumerate(cols):
                    results[f"i2t_full_{lang}_{ATTRIBUTES[c]}"] = round(float(np.mean(best[:, j] == attrs[:, c])), 4)
    return results


def neutral_cosine(embed_texts: Any, embed_images: Any, samples: list[ShapeSample], images: list[Any]) -> float:
    """The text<->image cosine that best separates matching from non-matching pairs.

    Pairs: every held-out image with every colour + shape caption, in both
    languages; a pair matches when the caption names the image's colour and
    shape. The result (the middle of the thresholds with the best balanced
    accuracy, rounded to 0.01) is saved in the config as
    ``mmrag_neutral_cosine``, where :mod:`mmrag.rerank` reads it: a cosine
    above it scores above 0.5 as a match probability.
    """
    img = embed_images(images)
    combos = list(itertools.product(COLOURS, SHAPES))
    captions = [ShapeSample(c.name, s.name, "small", "left").caption(lang, "colour_shape")
                for lang in LANGUAGES for c, s in combos]  # fmt: skip  # aligned by hand
    cos = img @ embed_texts(captions).T
    match = np.array([[(x.colour, x.shape) == (c.name, s.name) for _ in LANGUAGES for c, s in combos] for x in samples])
    grid = np.round(np.arange(0.0, 1.0, 0.01), 2)
    balanced = np.array([((cos[match] >= t).mean() + (cos[~match] < t).mean()) / 2 for t in grid])
    best = grid[balanced >= balanced.max() - 1e-9]
    return round(float(best.mean()), 2)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1800, help="training steps (default: %(default)s)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=13.0,
        help="time budget of the training loop; fewer steps are run if needed (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="training data and init seed (default: %(default)s)")
    parser.add_argument("--eval-seed", type=int, default=1, help="held-out data seed (default: %(default)s)")
    parser.add_argument("--eval-images", type=int, default=400, help="held-out images (default: %(default)s)")
    parser.add_argument(
        "--train-images", type=int, default=8000, help="distinct training images (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default: %(default)s)")
    parser.add_argument(
        "--full-phase",
        type=float,
        default=0.6,
        help="fraction of steps that use full captions only (default: %(default)s)",
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=0, help="quick held-out check every N steps (0: off)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(f"train:{args.seed}")

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

    from transformers import CLIPModel

    corpus = caption_corpus(args.seed)
    tokenizer = build_tokenizer(corpus)
    log(f"tokenizer: {len(tokenizer)} tokens from {len(corpus)} captions")

    config = make_config(tokenizer)
    model = CLIPModel(config)
    init_vision_positions(model)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters")

    samples = sample_shapes(args.train_images, seed=args.seed)
    pixels_u8 = render_all(samples)
    attrs = attribute_indices(samples)
    log(f"rendered {len(samples)} training images")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
    )  # fmt: skip  # aligned by hand
    steps = args.steps
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    quick_samples = sample_shapes(200 if args.eval_every else 0, seed=args.eval_seed)
    quick_pixels = to_pixels(render_all(quick_samples)) if quick_samples else None

    @torch.no_grad()
    def quick_eval() -> dict[str, Any]:
        model.eval()

        def embed_texts(texts: list[str]) -> np.ndarray:
            batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt")
            return F.normalize(text_features(model, batch), dim=-1).numpy()

        def embed_images(pixels: torch.Tensor) -> np.ndarray:
            return F.normalize(image_features(model, pixels), dim=-1).numpy()

        figures = evaluate(embed_texts, embed_images, quick_samples, quick_pixels)
        model.train()
        return {k: v for k, v in figures.items() if not k.endswith("_queries") and k != "n_images"}

    batch_rng = random.Random(f"batches:{args.seed}")
    model.train()
    train_start = time.perf_counter()
    budget = args.minutes * 60
    step = 0
    running = 0.0
    mark = (0, 0.0)  # (step, elapsed seconds) at the last budget check
    while step < steps:
        idx = batch_rng.sample(range(len(samples)), args.batch_size)
        texts, named = [], []
        for i in idx:
            for lang in LANGUAGES:
                text, names = random_caption(samples[i], lang, rng, full_only=step < args.full_phase * steps)
                texts.append(text)
                named.append(names)
        batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt")
        named_t = torch.tensor(named, dtype=torch.long)
        img_attrs = attrs[idx]
        match = ((named_t[None] == -1) | (named_t[None] == img_attrs[:, None])).all(-1)

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        img = image_features(model, to_pixels(pixels_u8[idx]))
        txt = text_features(model, batch)
        loss = multi_positive_loss(img, txt, match, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        running = loss.item() if step == 1 else 0.95 * running + 0.05 * loss.item()
        elapsed = time.perf_counter() - train_start
        if step % 25 == 0 and step < steps:
            # Budget guard: at the speed of the last 25 steps, do the remaining steps fit? If not (a busy
            # machine), shorten the run and with it the schedule; if the machine is free again, grow it back.
            rate = (elapsed - mark[1]) / (step - mark[0])
            fits = max(step + 1, min(args.steps, step + int((budget - elapsed) / rate)))
            if fits != steps:
                log(
                    f"WARNING: at {rate:.2f}s/step, running {fits} steps instead of {steps} to fit --minutes "
                    f"{args.minutes}"
                )
                steps = fits
            mark = (step, elapsed)
        if step % 50 == 0 or step == steps:
            log(
                f"step {step}/{steps} loss {running:.4f} scale {model.logit_scale.exp().item():.1f} "
                f"lr {lr_at(step - 1):.2e} ({elapsed / step:.2f}s/step)"
            )
        if args.eval_every and step % args.eval_every == 0:
            log(f"quick eval: {json.dumps(quick_eval())}")
    train_seconds = time.perf_counter() - train_start

    model.eval()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "pytorch_model.bin"):
        (out / stale).unlink(missing_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    make_processor(tokenizer).save_pretrained(out)
    save_vocab_files(tokenizer, out)
    for file in out.iterdir():  # safetensors writes 0600; package data must be world-readable
        if file.is_file():
            file.chmod(0o644)
    check_texts = [
        *sorted(set(corpus))[:: max(1, len(set(corpus)) // 300)],
        "a small red circle on the left",
        "左边的红色小圆形",
        "蓝色的正方形",
        "一只猫",
        "A Photo Of A Cat",
        "héllo wörld 123",
    ]
    check_tokenizer(tokenizer, out, check_texts)
    size_bytes = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    log(f"saved to {out} ({size_bytes / 1e6:.2f} MB); tokenizer reloads identically")

    import mmrag

    encoder = mmrag.load_encoder(out, device="cpu")
    held_out = sample_shapes(args.eval_images, seed=args.eval_seed)
    images = [s.render(DEFAULT_IMAGE_SIZE) for s in held_out]
    figures = evaluate(encoder.embed_texts, encoder.embed_images, held_out, images)
    # Where a match probability crosses 0.5 for this model, for mmrag's reranker (see mmrag.rerank.dual).
    neutral = neutral_cosine(encoder.embed_texts, encoder.embed_images, held_out, images)
    config = type(encoder.model.config).from_pretrained(out)
    config.mmrag_neutral_cosine = {"text->image": neutral, "image->text": neutral}
    config.save_pretrained(out)
    figures["neutral_cosine"] = neutral
    figures.update(
        eval_seed=args.eval_seed,
        train_seed=args.seed,
        steps=step,
        params=n_params,
        size_mb=round(size_bytes / 1e6, 3),
        train_seconds=round(train_seconds, 1),
        total_seconds=round(time.perf_counter() - start, 1),
        threads=args.threads,
    )
    print(json.dumps(figures, indent=1, ensure_ascii=False))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
