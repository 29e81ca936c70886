"""Tiny (and real-size) random-weight models of real CLIP-family architectures, built offline.

This module is a test/benchmark helper. It never downloads anything: tokenizers are trained
locally on a small built-in bilingual caption corpus with the ``tokenizers`` library, weights are
random, and everything is written with ``save_pretrained`` so that the result loads through the
very same ``AutoModel`` / ``AutoProcessor`` / ``AutoTokenizer`` / ``AutoImageProcessor`` /
``AutoConfig`` ``from_pretrained(path)`` code path that real hub ids use.

Families and the real classes they produce:

* ``"clip"``: ``CLIPModel`` + ``CLIPProcessor`` (``CLIPImageProcessor`` + ``CLIPTokenizer``,
  byte-level BPE with ``</w>`` suffix, lowercasing). Text max length 77.
* ``"siglip"``: ``SiglipModel`` + ``SiglipProcessor`` (``SiglipImageProcessor`` +
  ``GemmaTokenizer``, like the multilingual ``google/siglip2-*-patch16-224`` checkpoints, whose
  ``model_type`` is ``"siglip"``). Text must be padded to ``max_length`` 64.
* ``"siglip2"``: ``Siglip2Model`` + ``Siglip2Processor`` (NaFlex ``Siglip2ImageProcessor`` +
  ``Siglip2Tokenizer``: Gemma-style Metaspace BPE with lowercasing). Text padded to 64.
* ``"chinese_clip"``: ``ChineseCLIPModel`` + ``ChineseCLIPProcessor``
  (``ChineseCLIPImageProcessor`` + ``BertTokenizer`` WordPiece with CJK character splitting).
  Text max length 52 (as in the original Chinese-CLIP ``context_length``).

Tokenizers are always built *as the transformers class that reload will produce* (from the
trained vocab/merges), then saved, reloaded with ``AutoTokenizer`` and compared on sample
sentences; a mismatch raises ``RuntimeError`` at build time.

Reference vectors with plain transformers (the parity recipe; see :func:`text_kwargs`)::

    model = AutoModel.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    t = processor(text=texts, return_tensors="pt", **text_kwargs(family))
    # clip: padding=True, truncation=True, max_length=77 (chinese_clip: 52)
    # siglip / siglip2: padding="max_length", max_length=64, truncation=True
    i = processor.image_processor(images=images, return_tensors="pt")
    # identical to processor(images=...) for every family here (siglip2 included: the image
    # processor is saved with the Siglip2Processor call defaults patch_size=16,
    # max_num_patches=256); siglip2 returns pixel_values, pixel_attention_mask, spatial_shapes.
    text = model.get_text_features(**t)    # transformers 5.x: an output object,
    image = model.get_image_features(**i)  # the embedding is ``.pooler_output``

Import cost: ``torch``/``transformers``/``tokenizers`` are imported lazily inside functions.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PretrainedConfig, PreTrainedTokenizerBase, ProcessorMixin

__all__ = [
    "ARCHS",
    "FAMILIES",
    "MAX_TEXT_LENGTH",
    "PROBE_TEXTS",
    "SAMPLE_SENTENCES",
    "ArchSpec",
    "TokenizerKind",
    "arch_config",
    "build_random_model",
    "build_tiny_model",
    "caption_corpus",
    "family_tokenizer",
    "probe_images",
    "speckled_image",
    "text_kwargs",
    "train_tokenizer",
]

TokenizerKind = Literal["clip_bpe", "metaspace_bpe", "wordpiece"]

FAMILIES: tuple[str, ...] = ("clip", "siglip", "siglip2", "chinese_clip")
"""Model families that :func:`build_tiny_model` can build."""

MAX_TEXT_LENGTH: dict[str, int] = {"clip": 77, "siglip": 64, "siglip2": 64, "chinese_clip": 52}
"""Tokenizer ``model_max_length`` (and text position budget) per family."""

_TOKENIZER_KIND: dict[str, TokenizerKind] = {
    "clip": "clip_bpe",
    "siglip": "metaspace_bpe",
    "siglip2": "metaspace_bpe",
    "chinese_clip": "wordpiece",
}
# siglip (GemmaTokenizer) is case-sensitive; siglip2 (Siglip2Tokenizer) lowercases.
_TOKENIZER_LOWERCASE: dict[str, bool] = {
    "clip": True,
    "siglip": False,
    "siglip2": True,
    "chinese_clip": True,
}

SAMPLE_SENTENCES: tuple[str, ...] = (
    "a photo of a cat",
    "a photo of a dog",
    "A small red circle on the left",
    "a large blue square at the bottom of the image",
    "two yellow birds sitting next to a green tree",
    "一只红色的猫",
    "图片左边有一个小的蓝色圆形",
    "一只狗在右边",
    "红 绿 蓝 黄 色 圆 形 方 猫 狗 一 只 的 小 大 左 右 边 在 上 下 图 片",
)
"""English and Chinese sentences used to self-check tokenizers (round trip, no all-UNK)."""

# Common Chinese characters always present in the WordPiece vocabulary (on top of the corpus).
_COMMON_CHINESE_CHARS = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后"
    "作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因"
    "只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应"
    "战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿"
    "原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太"
    "量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界"
    "达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今"
    "红绿蓝黄黑橙紫粉棕灰圆方角星心猫狗鸟鱼兔汽车房树花杯椅船苹果香蕉飞图片照张右左坐旁帽衣球草"
)

_EN_COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "pink", "brown", "gray")
_ZH_COLORS = ("红", "绿", "蓝", "黄", "黑", "白", "橙", "紫", "粉", "棕", "灰")
_EN_SHAPES = ("circle", "square", "triangle", "star", "rectangle", "heart")
_ZH_SHAPES = ("圆形", "方形", "三角形", "星形", "长方形", "心形")
_EN_SIZES = ("small", "large", "big", "tiny")
_ZH_SIZES = ("小", "大", "很小", "很大")
_EN_POSITIONS = ("left", "right", "top", "bottom", "center")
_ZH_POSITIONS = ("左边", "右边", "上边", "下边", "中间")
_EN_ANIMALS = ("cat", "dog", "bird", "fish", "horse", "rabbit")
_ZH_ANIMALS = ("猫", "狗", "鸟", "鱼", "马", "兔子")
_EN_OBJECTS = (
    "car",
    "house",
    "tree",
    "flower",
    "cup",
    "book",
    "chair",
    "boat",
    "apple",
    "banana",
    "bicycle",
    "airplane",
)
_ZH_OBJECTS = ("汽车", "房子", "树", "花", "杯子", "书", "椅子", "船", "苹果", "香蕉", "自行车", "飞机")
_EN_FIXED = (
    "a photo of a cat",
    "a photo of a dog",
    "a photo of a person",
    "a picture of a street at night",
    "an image of a red car",
    "a diagram with text and arrows",
    "a screenshot of a table with numbers",
    "a chart showing sales by month",
    "the quick brown fox jumps over the lazy dog",
    "two people walking on the beach",
    "a man riding a bicycle in the city",
    "a woman reading a book in the park",
    "a close up photo of a flower",
    "a black and white photo of a house",
    "a drawing of a tree with green leaves",
    "there are three apples on the table",
    "a plate of food with rice and vegetables",
    "an airplane flying in the blue sky",
    "a boat on the water under the sun",
    "a cup of coffee next to a laptop",
)
_ZH_FIXED = (
    "一只猫的照片",
    "一只狗的照片",
    "一个人的照片",
    "夜晚的街道",
    "一辆红色的汽车",
    "一张有文字和箭头的图",
    "桌子上有三个苹果",
    "一架飞机在蓝色的天空中飞",
    "一个男人在城市里骑自行车",
    "一个女人在公园里看书",
    "这是一张图片",
    "小猫和小狗在草地上",
)


def caption_corpus(seed: int = 0) -> list[str]:
    """Return the built-in bilingual (English + Chinese) caption-like corpus.

    The corpus is generated deterministically from colours x shapes x sizes x positions,
    animals and objects templates in both languages, plus a few fixed common phrases.
    It has a few hundred sentences per language.

    Args:
        seed: Seed of the ``random.Random`` used to sample template combinations and order.

    Returns:
        The list of sentences (deterministic for a given ``seed``).
    """
    rng = random.Random(seed)
    out: list[str] = list(_EN_FIXED) + list(_ZH_FIXED)
    n = 90
    for _ in range(n):
        s, c, sh, p = rng.choice(_EN_SIZES), rng.choice(_EN_COLORS), rng.choice(_EN_SHAPES), rng.choice(_EN_POSITIONS)
        out.append(f"a {s} {c} {sh} on the {p}")
        c2, sh2, p2 = rng.choice(_EN_COLORS), rng.choice(_EN_SHAPES), rng.choice(_EN_POSITIONS)
        out.append(f"there is a {c2} {sh2} in the {p2} of the image")
        a, c3, o = rng.choice(_EN_ANIMALS), rng.choice(_EN_COLORS), rng.choice(_EN_OBJECTS)
        out.append(f"a photo of a {c3} {a} next to a {o}")
        o2, c4 = rng.choice(_EN_OBJECTS), rng.choice(_EN_COLORS)
        out.append(f"a picture of a {c4} {o2}")
        zs, zc = rng.choice(_ZH_SIZES), rng.choice(_ZH_COLORS)
        zsh, zp = rng.choice(_ZH_SHAPES), rng.choice(_ZH_POSITIONS)
        out.append(f"图片{zp}有一个{zs}的{zc}色{zsh}")
        zc2, za = rng.choice(_ZH_COLORS), rng.choice(_ZH_ANIMALS)
        out.append(f"一只{zc2}色的{za}")
        zc3, zsh3, zp3 = rng.choice(_ZH_COLORS), rng.choice(_ZH_SHAPES), rng.choice(_ZH_POSITIONS)
        out.append(f"一个{zc3}色的{zsh3}在{zp3}")
        za4, zo4 = rng.choice(_ZH_ANIMALS), rng.choice(_ZH_OBJECTS)
        out.append(f"一张{za4}和{zo4}的照片")
    # A few capitalised variants so case-sensitive tokenizers see upper-case letters.
    out.extend(s[:1].upper() + s[1:] for s in _EN_FIXED[:10])
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte -> printable unicode table, in byte order (as CLIP's vocab starts)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


_CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
_GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


_CJK_PATTERN = (
    "[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f]"
)


def _is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a CJK ideograph (the ranges BERT's ``handle_chinese_chars`` splits)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


@functools.lru_cache(maxsize=32)
def _train_vocab(
    kind: str, corpus: tuple[str, ...], vocab_size: int, lowercase: bool
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """Train a vocabulary (and merges for BPE) whose pre-processing matches the target class.

    Returns ``(vocab_items, merges)`` as immutable tuples (cached).
    """
    import json

    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind == "clip_bpe":
        from transformers import CLIPTokenizer

        ref = CLIPTokenizer().backend_tokenizer  # same normalizer/pre-tokenizer as reload
        tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=None))
        tok.normalizer = ref.normalizer
        tok.pre_tokenizer = ref.pre_tokenizer
        alphabet = _bytes_to_unicode()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=1,
            special_tokens=[],
            initial_alphabet=alphabet,
            end_of_word_suffix="</w>",
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
        model = json.loads(tok.to_str())["model"]
        trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
        # Layout like real CLIP: 256 byte symbols, 256 "<byte></w>" symbols, merged tokens, specials.
        # Having every byte and byte+</w> guarantees there is never an UNK.
        order: list[str] = list(alphabet) + [a + "</w>" for a in alphabet]
        seen = set(order)
        for token, _ in trained:
            if token not in seen:
                order.append(token)
                seen.add(token)
        order.extend(_CLIP_SPECIALS)
        merges = tuple(tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"])
        return tuple((t, i) for i, t in enumerate(order)), merges  # type: ignore[return-value]

    if kind == "metaspace_bpe":
        # Gemma/Siglip2 pipeline: (lowercase) + replace " " by "▁", no pre-tokenizer split, BPE
        # with byte fallback. Train with a Metaspace split (prepend_scheme="never", like Gemma) so
        # that no merge crosses a word boundary: applying the merges to the unsplit string then
        # gives exactly the per-word result.
        norms = [normalizers.Lowercase()] if lowercase else []
        norms.append(normalizers.Replace(" ", "▁"))
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.normalizer = normalizers.Sequence(norms)
        # CJK ideographs are isolated during training only (no merge ever spans two of them), so
        # Chinese gets per-character pieces instead of whole-phrase tokens; since no learned merge
        # crosses those boundaries, the unsplit Gemma pipeline still reproduces them exactly.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
                pre_tokenizers.Split(Regex(_CJK_PATTERN), behavior="isolated"),
            ]
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=1,
            special_tokens=list(_GEMMA_SPECIALS),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
        model = json.loads(tok.to_str())["model"]
        trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
        # Layout like Gemma: specials, 256 byte-fallback tokens <0xNN>, then the learned pieces.
        order = list(_GEMMA_SPECIALS) + [f"<0x{b:02X}>" for b in range(256)]
        seen = set(order)
        for token, _ in trained:
            if token not in seen:
                order.append(token)
                seen.add(token)
        merges = tuple(tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"])
        return tuple((t, i) for i, t in enumerate(order)), merges  # type: ignore[return-value]

    if kind == "wordpiece":
        from transformers import BertTokenizer

        ref = BertTokenizer(do_lower_case=lowercase).backend_tokenizer
        # tokenizers' WordPieceTrainer is not deterministic across processes (hash-map order of
        # the "##" alphabet breaks merge ties differently), so build the WordPiece vocabulary
        # directly: specials, every character seen (+ "##" continuations), then whole words by
        # decreasing frequency. Unseen words fall back to characters (never UNK for ASCII).
        import string
        from collections import Counter

        counts: Counter[str] = Counter()
        for line in corpus:
            normalized = ref.normalizer.normalize_str(line)
            counts.update(w for w, _ in ref.pre_tokenizer.pre_tokenize_str(normalized))
        letters = string.ascii_lowercase + ("" if lowercase else string.ascii_uppercase) + string.digits
        chars = set(letters) | set(string.punctuation) | set(_COMMON_CHINESE_CHARS)
        for word in counts:
            chars.update(word)
        order = list(_BERT_SPECIALS) + sorted(chars)
        order += sorted("##" + c for c in chars if not _is_cjk(c))
        seen = set(order)
        budget = max(vocab_size - len(order), 0)
        for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if budget <= 0:
                break
            if word not in seen:
                order.append(word)
                seen.add(word)
                budget -= 1
        return tuple((t, i) for i, t in enumerate(order)), ()

    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'clip_bpe', 'metaspace_bpe' or 'wordpiece'")


def train_tokenizer(
    kind: TokenizerKind,
    corpus: Iterable[str] | None = None,
    *,
    vocab_size: int = 1000,
    lowercase: bool = True,
    model_max_length: int | None = None,
) -> PreTrainedTokenizerBase:
    """Train a small tokenizer locally and return it as the real transformers tokenizer class.

    The vocabulary is trained with the ``tokenizers`` library using exactly the normalizer /
    pre-tokenizer pipeline of the transformers class it is wrapped in, so that a
    ``save_pretrained`` + ``AutoTokenizer.from_pretrained`` round trip (which, in transformers 5.x,
    rebuilds these classes from vocab + merges) tokenizes identically.

    Args:
        kind: ``"clip_bpe"`` -> ``CLIPTokenizer`` (byte-level BPE, ``</w>`` suffix, lowercasing;
            all 256 bytes and byte+``</w>`` symbols are in the vocab, so there is never an UNK).
            ``"metaspace_bpe"`` -> ``Siglip2Tokenizer`` if ``lowercase`` else ``GemmaTokenizer``
            (Metaspace ``"▁"`` BPE with ``<0xNN>`` byte-fallback tokens, so never UNK; ``<pad>``=0,
            ``<eos>``=1, ``<bos>``=2, ``<unk>``=3; appends ``<eos>``, pads on the right; CJK
            characters are separate pieces).
            ``"wordpiece"`` -> ``BertTokenizer`` (BERT normalizer with CJK splitting, WordPiece;
            ASCII letters/digits/punctuation and ~380 common Chinese characters always in vocab).
        corpus: Training sentences; defaults to :func:`caption_corpus` ``(0)``.
        vocab_size: Target vocabulary size for the trainer (the final vocab also contains the
            guaranteed byte/character coverage, so it can be somewhat larger).
        lowercase: Whether the tokenizer lowercases (ignored for ``"clip_bpe"``, which always does).
        model_max_length: Tokenizer ``model_max_length`` (defaults: 77 / 64 / 52 for
            clip_bpe / metaspace_bpe / wordpiece).

    Returns:
        A transformers tokenizer instance (``TokenizersBackend`` subclass).

    Raises:
        ValueError: For an unknown ``kind``.
    """
    corpus_t = tuple(caption_corpus(0) if corpus is None else corpus)
    if kind == "clip_bpe":
        lowercase = True
    vocab_items, merges = _train_vocab(kind, corpus_t, int(vocab_size), bool(lowercase))
    vocab = dict(vocab_items)
    merges_l = [tuple(m) for m in merges]
    if kind == "clip_bpe":
        from transformers import CLIPTokenizer

        return CLIPTokenizer(vocab=vocab, merges=merges_l, model_max_length=model_max_length or 77)
    if kind == "metaspace_bpe":
        if lowercase:
            from transformers import Siglip2Tokenizer as cls
        else:
            from transformers import GemmaTokenizer as cls
        return cls(
            vocab=vocab,
            merges=merges_l,
            add_bos_token=False,
            add_eos_token=True,
            padding_side="right",
            model_max_length=model_max_length or 64,
        )
    from transformers import BertTokenizer

    return BertTokenizer(
        vocab=vocab,
        do_lower_case=lowercase,
        tokenize_chinese_chars=True,
        model_max_length=model_max_length or 52,
    )


def family_tokenizer(family: str) -> PreTrainedTokenizerBase:
    """Return the locally trained tokenizer that :func:`build_tiny_model` saves for ``family``.

    ``clip``: ``CLIPTokenizer`` (max length 77); ``siglip``: ``GemmaTokenizer`` (case-sensitive,
    64); ``siglip2``: ``Siglip2Tokenizer`` (lowercasing, 64); ``chinese_clip``: ``BertTokenizer``
    (52). All are trained on :func:`caption_corpus` ``(0)`` and are deterministic.

    Args:
        family: One of :data:`FAMILIES`.

    Returns:
        A fresh tokenizer instance (the trained vocabulary is cached).

    Raises:
        KeyError: For an unknown family.
    """
    return train_tokenizer(
        _TOKENIZER_KIND[family],
        vocab_size=1000,
        lowercase=_TOKENIZER_LOWERCASE[family],
        model_max_length=MAX_TEXT_LENGTH[family],
    )


def _verify_tokenizer_roundtrip(before: PreTrainedTokenizerBase, path: pathlib.Path) -> None:
    """Reload the tokenizer from ``path`` with AutoTokenizer and compare it to ``before``."""
    from transformers import AutoTokenizer

    after = AutoTokenizer.from_pretrained(path)
    if type(after) is not type(before):
        raise RuntimeError(f"tokenizer reloaded as {type(after).__name__}, expected {type(before).__name__}")
    for text in SAMPLE_SENTENCES:
        a = before(text)["input_ids"]
        b = after(text)["input_ids"]
        if a != b:
            raise RuntimeError(f"tokenizer round trip mismatch for {text!r}: {a} != {b}")
        tokens = after.tokenize(text)  # without specials (CLIP's unk token is also its eos/pad)
        if not tokens or before.unk_token in tokens:
            raise RuntimeError(f"tokenizer maps {text!r} to UNK: {tokens}")
    if after.model_max_length != before.model_max_length:
        raise RuntimeError("tokenizer model_max_length changed on reload")


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A real-size architecture preset (for benchmarks).

    Attributes:
        family: One of :data:`FAMILIES` (which model/processor classes are used).
        text: Text-tower config kwargs (including the real ``vocab_size``).
        vision: Vision-tower config kwargs.
        projection_dim: Joint embedding dim (``None`` for SigLIP, whose embedding dim is the
            hidden size).
        image_processor: Image-processor kwargs.
        reference: The hub checkpoint whose sizes are mirrored (never downloaded).
    """

    family: str
    text: Mapping[str, Any]
    vision: Mapping[str, Any]
    projection_dim: int | None
    image_processor: Mapping[str, Any]
    reference: str = ""


_CLIP_TEXT_B = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
_VIT_B = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
}
_SIGLIP_TOWER_B = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
_CLIP_IP_224 = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}

ARCHS: dict[str, ArchSpec] = {
    "clip-b-32": ArchSpec(
        "clip",
        _CLIP_TEXT_B,
        {**_VIT_B, "patch_size": 32, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "openai/clip-vit-base-patch32",
    ),
    "clip-b-16": ArchSpec(
        "clip",
        _CLIP_TEXT_B,
        {**_VIT_B, "patch_size": 16, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "openai/clip-vit-base-patch16",
    ),
    "clip-l-14": ArchSpec(
        "clip",
        {**_CLIP_TEXT_B, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
        {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
            "hidden_act": "quick_gelu",
        },
        768,
        _CLIP_IP_224,
        "openai/clip-vit-large-patch14",
    ),
    "siglip2-b-16-512": ArchSpec(
        "siglip",
        {**_SIGLIP_TOWER_B, "vocab_size": 256000, "max_position_embeddings": 64},
        {**_SIGLIP_TOWER_B, "image_size": 512, "patch_size": 16},
        None,
        {"size": {"height": 512, "width": 512}},
        "google/siglip2-base-patch16-512",
    ),
    "siglip-b-16-224": ArchSpec(
        "siglip",
        {**_SIGLIP_TOWER_B, "vocab_size": 32000, "max_position_embeddings": 64},
        {**_SIGLIP_TOWER_B, "image_size": 224, "patch_size": 16},
        None,
        {"size": {"height": 224, "width": 224}},
        "google/siglip-base-patch16-224",
    ),
    "chinese-clip-b-16": ArchSpec(
        "chinese_clip",
        {
            "vocab_size": 21128,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
        },
        {**_VIT_B, "patch_size": 16, "hidden_act": "quick_gelu"},
        512,
        _CLIP_IP_224,
        "OFA-Sys/chinese-clip-vit-base-patch16",
    ),
}
"""Real-size architecture presets for :func:`build_random_model` (random weights)."""


def _heads(hidden: int) -> int:
    for h in (4, 2, 1):
        if hidden % h == 0:
            return h
    return 1  # pragma: no cover


def _tiny_spec(family: str, projection_dim: int) -> ArchSpec:
    """Tiny architecture for tests (hidden 32, 2 layers, 4 heads, 32px images)."""
    hidden = 32
    tower = {"hidden_size": hidden, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    if family == "clip":
        return ArchSpec(
            "clip",
            {**tower, "max_position_embeddings": MAX_TEXT_LENGTH["clip"]},
            {**tower, "image_size": 32, "patch_size": 8},
            projection_dim,
            {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
        )
    if family == "chinese_clip":
        return ArchSpec(
            "chinese_clip",
            {**tower, "max_position_embeddings": 64, "type_vocab_size": 2},
            {**tower, "image_size": 32, "patch_size": 8},
            projection_dim,
            {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
        )
    # SigLIP has no projection: the embedding dim is the hidden size.
    stower = {
        "hidden_size": projection_dim,
        "intermediate_size": 2 * projection_dim,
        "num_hidden_layers": 2,
        "num_attention_heads": _heads(projection_dim),
    }
    if family == "siglip":
        return ArchSpec(
            "siglip",
            {**stower, "max_position_embeddings": 64},
            {**stower, "image_size": 32, "patch_size": 8},
            None,
            {"size": {"height": 32, "width": 32}},
        )
    if family == "siglip2":
        # Siglip2Processor's class-level call defaults (patch_size=16, max_num_patches=256)
        # override the image processor's own settings, so we keep exactly those values in the
        # image processor AND the vision config (patch_size=16, num_patches=256, i.e. a 16x16
        # position grid). Images are resized to at most 256 16x16 patches.
        return ArchSpec(
            "siglip2",
            {**stower, "max_position_embeddings": 64},
            {**stower, "patch_size": 16, "num_patches": 256},
            None,
            {"patch_size": 16, "max_num_patches": 256},
        )
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _make_config(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase, *, tiny: bool) -> PretrainedConfig:
    import transformers

    text = dict(spec.text)
    vision = dict(spec.vision)
    text.setdefault("vocab_size", len(tokenizer))
    if text["vocab_size"] < len(tokenizer):
        raise ValueError("text vocab_size smaller than the tokenizer")
    fam = spec.family
    if fam == "clip":
        text.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        kw: dict[str, Any] = {}
        if tiny:
            # Larger init so that tiny random models give clearly different vectors per input.
            kw["initializer_factor"] = 4.0
            text["initializer_factor"] = vision["initializer_factor"] = 4.0
        return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec.projection_dim, **kw)
    if fam == "chinese_clip":
        text.update(pad_token_id=tokenizer.pad_token_id)
        kw = {}
        if tiny:
            kw["initializer_factor"] = 4.0
            vision["initializer_factor"] = 4.0
        return transformers.ChineseCLIPConfig(
            text_config=text, vision_config=vision, projection_dim=spec.projection_dim, **kw
        )
    text.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text.setdefault("projection_size", text["hidden_size"])
    if fam == "siglip":
        return transformers.SiglipConfig(text_config=text, vision_config=vision)
    if fam == "siglip2":
        return transformers.Siglip2Config(text_config=text, vision_config=vision)
    raise ValueError(f"unknown family {fam!r}")  # pragma: no cover


def arch_config(arch: str) -> PretrainedConfig:
    """Return the transformers config :func:`build_random_model` would save for ``arch``.

    Cheap: builds only the (small, cached) tokenizer and the config object, no weights.

    Args:
        arch: A key of :data:`ARCHS`.

    Returns:
        A ``CLIPConfig`` / ``SiglipConfig`` / ``ChineseCLIPConfig`` with the real sizes.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    spec = ARCHS[arch]
    return _make_config(spec, family_tokenizer(spec.family), tiny=False)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------

_MODEL_CLASS = {
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "siglip2": "Siglip2Model",
    "chinese_clip": "ChineseCLIPModel",
}
_PROCESSOR_CLASS = {
    "clip": "CLIPProcessor",
    "siglip": "SiglipProcessor",
    "siglip2": "Siglip2Processor",
    "chinese_clip": "ChineseCLIPProcessor",
}
_IMAGE_PROCESSOR_CLASS = {
    "clip": "CLIPImageProcessor",
    "siglip": "SiglipImageProcessor",
    "siglip2": "Siglip2ImageProcessor",
    "chinese_clip": "ChineseCLIPImageProcessor",
}


def _image_processor(family: str, kwargs: Mapping[str, Any]) -> Any:
    """Instantiate the family's image processor with the backend AutoImageProcessor would pick."""
    import transformers
    from transformers.utils import is_torchvision_available

    name = _IMAGE_PROCESSOR_CLASS[family]
    if not is_torchvision_available() and hasattr(transformers, name + "Pil"):
        name += "Pil"
    return getattr(transformers, name)(**dict(kwargs))


def _make_processor(spec: ArchSpec, tokenizer: PreTrainedTokenizerBase) -> ProcessorMixin:
    import transformers

    image_processor = _image_processor(spec.family, spec.image_processor)
    return getattr(transformers, _PROCESSOR_CLASS[spec.family])(image_processor=image_processor, tokenizer=tokenizer)


_MAX_INIT_ATTEMPTS = 50
_MAX_PROBE_COSINE = 0.97
PROBE_TEXTS: tuple[str, ...] = (
    "a photo of a cat",
    "a photo of a dog",
    "a red circle",
    "a blue circle",
    "a small green square on the left",
    "一只红色的猫",
    "一只蓝色的猫",
    "红色",
    "蓝色",
    "图片右边有一个大的黄色圆形",
)
"""Texts whose tiny-model features are guaranteed pairwise cosine < 0.97 (checked at build)."""


def speckled_image(
    colour: tuple[int, int, int], seed: int = 0, *, size: int | tuple[int, int] = 40, dots: int = 30
) -> Any:
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


def probe_images() -> list[Any]:
    """Return the probe images (PIL, mixed sizes) whose tiny-model features are distinct.

    Solid red/green/blue/white/black images, a horizontal gradient and two seeded noise images;
    :func:`build_tiny_model` guarantees their pairwise feature cosine is < 0.97.

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


def _features(output: Any) -> Any:
    """``get_*_features`` may return a tensor or a model output (transformers 5.x)."""
    return output if hasattr(output, "dim") else output.pooler_output


def text_kwargs(family: str) -> dict[str, Any]:
    """Processor/tokenizer kwargs used to embed text with ``family`` (the parity recipe).

    SigLIP families were trained on text padded to 64 tokens, so they need
    ``padding="max_length", max_length=64``; the CLIP families use dynamic padding.

    Args:
        family: One of :data:`FAMILIES`.

    Returns:
        A dict such as ``{"padding": "max_length", "max_length": 64, "truncation": True}``.
    """
    if family in ("siglip", "siglip2"):
        return {"padding": "max_length", "max_length": MAX_TEXT_LENGTH[family], "truncation": True}
    return {"padding": True, "truncation": True, "max_length": MAX_TEXT_LENGTH[family]}


def _probe_max_cosine(model: Any, processor: Any, family: str) -> float:
    """Largest off-diagonal cosine between probe-text features and between probe-image features."""
    import torch

    model.eval()
    with torch.no_grad():
        t = processor(text=list(PROBE_TEXTS), return_tensors="pt", **text_kwargs(family))
        i = processor(images=probe_images(), return_tensors="pt")
        feats = [_features(model.get_text_features(**t)), _features(model.get_image_features(**i))]
    worst = -1.0
    for f in feats:
        f = torch.nn.functional.normalize(f.float(), dim=-1)
        sim = f @ f.T
        sim.fill_diagonal_(-1.0)
        if not torch.isfinite(sim).all():
            return float("inf")
        worst = max(worst, float(sim.max()))
    return worst


def _condition_tiny_weights(model: Any, family: str) -> None:
    """Re-draw some tiny-model weights so that different inputs give clearly different vectors.

    The BERT text tower of Chinese-CLIP pools the ``[CLS]`` token of a post-LayerNorm encoder;
    with the default ``initializer_range=0.02`` the ``[CLS]`` output hardly depends on the other
    tokens (cosine ~0.999 between unrelated sentences). Larger word embeddings and value/MLP
    weights make the tiny model input-sensitive. Uses the (already seeded) global torch RNG.
    """
    import torch

    if family != "chinese_clip":
        return
    text = model.text_model
    with torch.no_grad():
        emb = text.embeddings.word_embeddings
        emb.weight.normal_(0.0, 1.0)
        if emb.padding_idx is not None:
            emb.weight[emb.padding_idx].zero_()
        for name, param in text.encoder.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                std = 0.2 if (".query." in name or ".key." in name) else 0.5
                param.normal_(0.0, std)


def _attempt_seed(seed: int, attempt: int) -> int:
    """Torch seed for init attempt ``attempt`` (0 -> ``seed``; retries never collide with other seeds)."""
    if attempt == 0:
        return seed
    import hashlib

    digest = hashlib.sha256(f"mmrag-tiny:{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def _build(spec: ArchSpec, path: str | os.PathLike[str], *, seed: int, tiny: bool) -> pathlib.Path:
    import torch
    import transformers

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = family_tokenizer(spec.family)
    processor = _make_processor(spec, tokenizer)
    config = _make_config(spec, tokenizer, tiny=tiny)
    model_cls = getattr(transformers, _MODEL_CLASS[spec.family])

    rng_state = torch.random.get_rng_state()
    try:
        for attempt in range(_MAX_INIT_ATTEMPTS if tiny else 1):
            torch.manual_seed(_attempt_seed(seed, attempt))
            model = model_cls(config)
            if not tiny:
                break
            _condition_tiny_weights(model, spec.family)
            worst = _probe_max_cosine(model, processor, spec.family)
            if worst < _MAX_PROBE_COSINE:
                break
        else:
            raise RuntimeError(
                f"could not draw a non-degenerate tiny {spec.family} model (max probe cosine {worst:.4f})"
            )
    finally:
        torch.random.set_rng_state(rng_state)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if not (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists():
        raise RuntimeError(f"model was not saved as safetensors in {out}")
    _verify_tokenizer_roundtrip(tokenizer, out)
    return out


def build_tiny_model(
    family: str, path: str | os.PathLike[str], *, seed: int = 0, projection_dim: int = 32
) -> pathlib.Path:
    """Build a tiny random-weight model of ``family``, save model+processor to ``path``.

    Sizes: hidden 32, intermediate 64, 2 layers, 4 heads for both towers (SigLIP families:
    hidden = ``projection_dim``, since SigLIP has no projection); clip/siglip/chinese_clip images
    are 32x32 with patch 8; siglip2 uses patch 16 and at most 256 patches (the
    ``Siglip2Processor`` call defaults). The tokenizer is the family's locally trained tokenizer
    (~1k tokens; see :func:`train_tokenizer`). Weights are deterministic given ``seed`` (the global
    torch RNG state is restored afterwards).

    Args:
        family: One of :data:`FAMILIES`.
        path: Output directory (created if needed).
        seed: Seed for the random weights.
        projection_dim: Embedding dimension of ``get_text_features`` / ``get_image_features``.

    Returns:
        ``pathlib.Path(path)``, loadable with ``AutoModel`` / ``AutoProcessor.from_pretrained``.

    Raises:
        ValueError: For an unknown family.
        RuntimeError: If the saved tokenizer does not reload identically.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    return _build(_tiny_spec(family, projection_dim), path, seed=seed, tiny=True)


def build_random_model(arch: str, path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a real-size architecture (see :data:`ARCHS`) with random weights, for benchmarks.

    The text embedding keeps the real ``vocab_size`` (so parameter count, memory and load time
    are realistic) but the tokenizer is the small locally trained one, so ids stay small.
    Note the files are large (e.g. ~600 MB for ``clip-b-32``, ~1.5 GB for ``siglip2-b-16-512``
    because of its 256k-token embedding).

    Args:
        arch: A key of :data:`ARCHS`.
        path: Output directory.
        seed: Seed for the random weights.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    return _build(ARCHS[arch], path, seed=seed, tiny=False)


# --------------------------------------------------------------------------------------------
# Rerankers: BLIP / BLIP-2 image-text matching and text cross-encoders (appended for mmrag.rerank)
# --------------------------------------------------------------------------------------------
#
# Same rules as above: real transformers classes, locally trained tokenizer, random weights,
# ``save_pretrained`` so that ``BlipForImageTextRetrieval`` / ``Blip2ForImageTextRetrieval`` /
# ``AutoModelForSequenceClassification`` / ``AutoProcessor`` / ``AutoTokenizer.from_pretrained(path)``
# load them exactly as they load hub checkpoints. Parity recipes (what mmrag.rerank must equal)::
#
#     # BLIP:   p = model(**processor(images=ims, text=txts, padding=True, return_tensors="pt"),
#     #                   use_itm_head=True).itm_score.softmax(-1)[:, 1]
#     # BLIP-2: p = model(**processor(images=ims, text=txts, padding=True, return_tensors="pt"),
#     #                   use_image_text_matching_head=True).logits_per_image.softmax(-1)[:, 1]
#     # cross-encoder: logits = model(**tokenizer(queries, passages, padding=True, truncation=True,
#     #                                           return_tensors="pt")).logits

RERANKER_KINDS: tuple[str, ...] = ("blip_itm", "blip2_itm", "cross_encoder")
"""Reranker kinds the builders below produce (as :func:`mmrag.rerank.reranker_kind` names them)."""

_RERANK_PROBE_STD = 0.03
_RERANK_MIN_GAP = 1e-4


@dataclasses.dataclass(frozen=True)
class RerankerArchSpec:
    """A reranker architecture (tiny for tests, real sizes for benchmarks).

    Attributes:
        kind: One of :data:`RERANKER_KINDS`.
        config: Keyword arguments of the transformers config (``BlipConfig``, ``Blip2Config``
            or ``BertConfig``/``XLMRobertaConfig``); ``vocab_size``/``pad_token_id`` entries
            left out are taken from the tokenizer.
        image_size: Side of the square images the image processor produces (ITM kinds).
        model_type: ``"bert"`` or ``"xlm-roberta"`` for cross-encoders.
        reference: The hub checkpoint whose sizes are mirrored (never downloaded).
    """

    kind: str
    config: Mapping[str, Any]
    image_size: int = 0
    model_type: str = "bert"
    reference: str = ""


def _tower(hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, int]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": intermediate}  # fmt: skip


_VIT_B_384 = {**_tower(768, 12, 12, 3072), "image_size": 384, "patch_size": 16}
_BERT_B = {**_tower(768, 12, 12, 3072), "max_position_embeddings": 512}
_QFORMER_B = {**_BERT_B, "cross_attention_frequency": 2, "use_qformer_text_input": True}
_XLMR_B = {**_tower(768, 12, 12, 3072), "max_position_embeddings": 514, "type_vocab_size": 1,
           "vocab_size": 250002}  # fmt: skip
_XLMR_L = {**_XLMR_B, **_tower(1024, 24, 16, 4096)}

RERANKER_ARCHS: dict[str, RerankerArchSpec] = {
    "blip-itm-base": RerankerArchSpec(
        "blip_itm",
        {"vision_config": _VIT_B_384, "text_config": {**_BERT_B, "vocab_size": 30524}, "image_text_hidden_size": 256},
        384, reference="Salesforce/blip-itm-base-coco",
    ),
    "blip-itm-large": RerankerArchSpec(
        "blip_itm",
        {"vision_config": {**_VIT_B_384, **_tower(1024, 24, 16, 4096)},
         "text_config": {**_BERT_B, "vocab_size": 30524}, "image_text_hidden_size": 256},
        384, reference="Salesforce/blip-itm-large-coco",
    ),
    "blip2-itm-vit-g": RerankerArchSpec(
        "blip2_itm",
        {"vision_config": {**_tower(1408, 39, 16, 6144), "image_size": 224, "patch_size": 14},
         "qformer_config": {**_QFORMER_B, "vocab_size": 30523, "encoder_hidden_size": 1408},
         "num_query_tokens": 32, "image_text_hidden_size": 256},
        224, reference="Salesforce/blip2-itm-vit-g",
    ),
    "blip2-itm-vit-b": RerankerArchSpec(
        "blip2_itm",
        {"vision_config": {**_tower(768, 12, 12, 3072), "image_size": 224, "patch_size": 16},
         "qformer_config": {**_QFORMER_B, "vocab_size": 30523, "encoder_hidden_size": 768},
         "num_query_tokens": 32, "image_text_hidden_size": 256},
        224, reference="Salesforce/blip2-itm-vit-g with a ViT-B/16 vision tower (CPU-sized)",
    ),
    "bge-reranker-base": RerankerArchSpec(
        "cross_encoder", {**_XLMR_B, "num_labels": 1}, model_type="xlm-roberta", reference="BAAI/bge-reranker-base"
    ),
    "bge-reranker-large": RerankerArchSpec(
        "cross_encoder", {**_XLMR_L, "num_labels": 1}, model_type="xlm-roberta", reference="BAAI/bge-reranker-large"
    ),
    "bge-reranker-v2-m3": RerankerArchSpec(
        "cross_encoder", {**_XLMR_L, "max_position_embeddings": 8194, "num_labels": 1}, model_type="xlm-roberta",
        reference="BAAI/bge-reranker-v2-m3",
    ),
}  # fmt: skip
"""Real-size reranker architectures for :func:`build_random_reranker` (random weights, benchmarks)."""

_TINY_TOWER = _tower(32, 2, 4, 64)


def _tiny_reranker_spec(kind: str, *, model_type: str = "bert", num_labels: int = 1) -> RerankerArchSpec:
    if kind == "blip_itm":
        return RerankerArchSpec(
            kind,
            {"vision_config": {**_TINY_TOWER, "image_size": 32, "patch_size": 8},
             "text_config": {**_TINY_TOWER, "max_position_embeddings": 64},
             "image_text_hidden_size": 16, "projection_dim": 16},
            32,
        )  # fmt: skip
    if kind == "blip2_itm":
        return RerankerArchSpec(
            kind,
            {"vision_config": {**_TINY_TOWER, "image_size": 32, "patch_size": 8},
             "qformer_config": {**_TINY_TOWER, "max_position_embeddings": 64, "encoder_hidden_size": 32,
                                "cross_attention_frequency": 1, "use_qformer_text_input": True},
             "num_query_tokens": 4, "image_text_hidden_size": 16},
            32,
        )  # fmt: skip
    if kind == "cross_encoder":
        if model_type not in ("bert", "xlm-roberta"):
            raise ValueError(f"cross-encoder model_type must be 'bert' or 'xlm-roberta', got {model_type!r}")
        if num_labels not in (1, 2):
            raise ValueError(f"num_labels must be 1 or 2, got {num_labels!r}")
        positions = 66 if model_type == "xlm-roberta" else 64  # RoBERTa positions start after padding_idx
        return RerankerArchSpec(
            kind,
            {**_TINY_TOWER, "max_position_embeddings": positions, "num_labels": num_labels,
             "type_vocab_size": 1 if model_type == "xlm-roberta" else 2},
            model_type=model_type,
        )  # fmt: skip
    raise ValueError(f"unknown reranker kind {kind!r}; expected one of {RERANKER_KINDS}")


def _reranker_tokenizer(spec: RerankerArchSpec) -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer (like BLIP's and BLIP-2's), trained on the caption corpus.

    BLIP adds ``[DEC]`` as BOS and ``[ENC]``; an XLM-RoBERTa cross-encoder gets no
    ``token_type_ids`` (its real tokenizer returns none and its type vocabulary has one entry).
    """
    tokenizer = train_tokenizer("wordpiece", vocab_size=1000, lowercase=True, model_max_length=512)
    if spec.kind == "blip_itm":
        tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if spec.kind == "cross_encoder" and spec.model_type == "xlm-roberta":
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
        tokenizer.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    return tokenizer


def _blip_image_processor(size: int) -> Any:
    import transformers
    from transformers.utils import is_torchvision_available

    name = "BlipImageProcessor" if is_torchvision_available() else "BlipImageProcessorPil"
    return getattr(transformers, name)(size={"height": size, "width": size})


def _reranker_parts(spec: RerankerArchSpec, *, image_tokens: bool) -> tuple[Any, Any, Any]:
    """``(config, model class, processor or tokenizer)`` for ``spec``."""
    import transformers

    tokenizer = _reranker_tokenizer(spec)
    config = {key: dict(value) if isinstance(value, Mapping) else value for key, value in spec.config.items()}
    if spec.kind == "blip_itm":
        processor = transformers.BlipProcessor(
            image_processor=_blip_image_processor(spec.image_size), tokenizer=tokenizer
        )
        text = config["text_config"]
        text.setdefault("vocab_size", len(tokenizer))
        text.update(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                    sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id)  # fmt: skip
        return transformers.BlipConfig(**config), transformers.BlipForImageTextRetrieval, processor
    if spec.kind == "blip2_itm":
        processor = transformers.Blip2Processor(
            image_processor=_blip_image_processor(spec.image_size), tokenizer=tokenizer,
            num_query_tokens=config["num_query_tokens"] if image_tokens else None,
        )  # fmt: skip
        qformer = config["qformer_config"]
        qformer.setdefault("vocab_size", len(tokenizer))
        qformer["pad_token_id"] = tokenizer.pad_token_id
        if image_tokens:
            config["image_token_index"] = tokenizer.convert_tokens_to_ids("<image>")
        return transformers.Blip2Config(**config), transformers.Blip2ForImageTextRetrieval, processor
    config.setdefault("vocab_size", len(tokenizer))
    config["pad_token_id"] = tokenizer.pad_token_id
    if spec.model_type == "xlm-roberta":
        cls = transformers.XLMRobertaForSequenceClassification
        return transformers.XLMRobertaConfig(**config), cls, tokenizer
    return transformers.BertConfig(**config), transformers.BertForSequenceClassification, tokenizer


def _spread_weights(model: Any) -> None:
    """Re-draw weights at unit-variance scale so tiny random models tell inputs apart.

    The default initialisers (std 0.02, and 1e-10 for BLIP's vision tower) make a tiny model's
    match logits nearly constant. Linear/conv weights get std ``1/sqrt(fan_in)``, embeddings and
    free parameters (class/position embeddings, BLIP-2 query tokens) std 1, biases std 0.1;
    layer norms keep their identity init. Uses the (already seeded) global torch RNG.
    """
    import math

    import torch

    with torch.no_grad():
        for module in model.modules():
            own = dict(module.named_parameters(recurse=False))
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = own["weight"][0].numel()
                own["weight"].normal_(0.0, 1.0 / math.sqrt(fan_in))
                if own.get("bias") is not None:
                    own["bias"].normal_(0.0, 0.1)
            elif isinstance(module, torch.nn.Embedding):
                own["weight"].normal_(0.0, 1.0)
                if module.padding_idx is not None:
                    own["weight"][module.padding_idx].zero_()
            elif not isinstance(module, torch.nn.LayerNorm):
                for param in own.values():
                    param.normal_(0.0, 1.0)


def reranker_probe_log_odds(model: Any, processor: Any, kind: str) -> Any:
    """Log-odds of the probe pairs, computed with plain transformers (the parity recipe).

    ITM kinds: the first 4 :data:`PROBE_TEXTS` x the first 4 :func:`probe_images`; cross-encoders:
    the first 3 probe texts as queries x all probe texts as passages.

    Args:
        model: A loaded reranker model of ``kind``.
        processor: Its processor (ITM) or tokenizer (cross-encoder).
        kind: One of :data:`RERANKER_KINDS`.

    Returns:
        A float64 numpy array of shape ``(queries, candidates)``.
    """
    import torch

    model.eval()
    if kind == "cross_encoder":
        queries, passages = list(PROBE_TEXTS[:3]), list(PROBE_TEXTS)
        pairs = [(q, p) for q in queries for p in passages]
        inputs = processor([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True,
                           return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            logits = model(**inputs).logits.double()
        values = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
        return values.reshape(len(queries), len(passages)).numpy()
    texts, images = list(PROBE_TEXTS[:4]), probe_images()[:4]
    inputs = processor(images=[im for _ in texts for im in images], text=[t for t in texts for _ in images],
                       padding=True, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        if kind == "blip_itm":
            logits = model(**inputs, use_itm_head=True).itm_score
        else:
            logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
    logits = logits.double()
    return (logits[:, 1] - logits[:, 0]).reshape(len(texts), len(images)).numpy()


def _probe_is_discriminative(values: Any) -> bool:
    """Both the query and the candidate must move the score, and no two probe pairs may tie."""
    import numpy as np

    if not np.isfinite(values).all():
        return False
    flat = np.sort(values.reshape(-1))
    return (
        float(values.std(axis=0).min()) > _RERANK_PROBE_STD
        and float(values.std(axis=1).min()) > _RERANK_PROBE_STD
        and float(np.diff(flat).min()) > _RERANK_MIN_GAP
    )


def _build_reranker(
    spec: RerankerArchSpec, path: str | os.PathLike[str], *, seed: int, tiny: bool, image_tokens: bool = False
) -> pathlib.Path:
    import torch

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config, model_cls, processor = _reranker_parts(spec, image_tokens=image_tokens)
    rng_state = torch.random.get_rng_state()
    try:
        for attempt in range(_MAX_INIT_ATTEMPTS if tiny else 1):
            torch.manual_seed(_attempt_seed(seed, attempt))
            model = model_cls(config)
            if not tiny:
                break
            _spread_weights(model)
            if _probe_is_discriminative(reranker_probe_log_odds(model, processor, spec.kind)):
                break
        else:
            raise RuntimeError(f"could not draw a discriminative tiny {spec.kind} reranker")
    finally:
        torch.random.set_rng_state(rng_state)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if not (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists():
        raise RuntimeError(f"model was not saved as safetensors in {out}")
    tokenizer = processor if spec.kind == "cross_encoder" else processor.tokenizer
    _verify_tokenizer_roundtrip(tokenizer, out)
    return out


def build_tiny_blip_itm(path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a tiny random ``BlipForImageTextRetrieval`` + ``BlipProcessor`` in ``path``.

    Vision: ViT hidden 32, 2 layers, 32 px images, patch 8. Text: BLIP's BERT with cross-attention,
    hidden 32, 2 layers, 64 positions; tokenizer: ``BertTokenizer`` WordPiece (~640 tokens, ``[DEC]``
    BOS and ``[ENC]`` like the real checkpoints). Weights are re-drawn until the ITM log-odds of the
    probe pairs depend on both text and image (see :func:`reranker_probe_log_odds`).

    Args:
        path: Output directory (created if needed).
        seed: Seed for the random weights (the global torch RNG state is restored).

    Returns:
        ``pathlib.Path(path)``.
    """
    return _build_reranker(_tiny_reranker_spec("blip_itm"), path, seed=seed, tiny=True)


def build_tiny_blip2_itm(path: str | os.PathLike[str], *, seed: int = 0, image_tokens: bool = False) -> pathlib.Path:
    """Build a tiny random ``Blip2ForImageTextRetrieval`` + ``Blip2Processor`` in ``path``.

    Vision hidden 32 (2 layers, 32 px, patch 8); Q-Former hidden 32, 2 layers, cross-attention every
    layer, ``use_qformer_text_input=True``, 4 query tokens; WordPiece ``BertTokenizer``.

    Args:
        path: Output directory.
        seed: Seed for the random weights.
        image_tokens: Save the processor with ``num_query_tokens`` and the config with
            ``image_token_index``, so the processor prepends ``<image>`` tokens that the model strips
            (the newer hub layout); ``False`` gives the older layout without them.

    Returns:
        ``pathlib.Path(path)``.
    """
    return _build_reranker(_tiny_reranker_spec("blip2_itm"), path, seed=seed, tiny=True, image_tokens=image_tokens)


def build_tiny_cross_encoder(
    path: str | os.PathLike[str], *, seed: int = 0, model_type: str = "bert", num_labels: int = 1
) -> pathlib.Path:
    """Build a tiny random text cross-encoder (``*ForSequenceClassification``) in ``path``.

    Hidden 32, 2 layers, 64 text positions, WordPiece ``BertTokenizer``.

    Args:
        path: Output directory.
        seed: Seed for the random weights.
        model_type: ``"bert"`` (``BertForSequenceClassification``) or ``"xlm-roberta"``
            (``XLMRobertaForSequenceClassification``, the bge-reranker architecture; the tokenizer
            then returns no ``token_type_ids``).
        num_labels: 1 (a relevance logit, like bge-reranker) or 2 (no match / match).

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        ValueError: Unknown ``model_type`` or ``num_labels``.
    """
    spec = _tiny_reranker_spec("cross_encoder", model_type=model_type, num_labels=num_labels)
    return _build_reranker(spec, path, seed=seed, tiny=True)


def build_random_reranker(arch: str, path: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Build a real-size reranker architecture (see :data:`RERANKER_ARCHS`) with random weights.

    For benchmarks: speed does not depend on weight values. Vocabulary sizes are real (so memory
    and load time are), the tokenizer is the small WordPiece one. Files are large (~0.9 GB for
    ``blip-itm-base``, ~1.1 GB for ``bge-reranker-base``, ~4.6 GB for ``blip2-itm-vit-g``).

    Args:
        arch: A key of :data:`RERANKER_ARCHS`.
        path: Output directory.
        seed: Seed for the random weights.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        KeyError: For an unknown ``arch``.
    """
    if arch not in RERANKER_ARCHS:
        raise KeyError(f"unknown reranker arch {arch!r}; expected one of {sorted(RERANKER_ARCHS)}")
    return _build_reranker(RERANKER_ARCHS[arch], path, seed=seed, tiny=False)


__all__ += [
    "RERANKER_ARCHS",
    "RERANKER_KINDS",
    "RerankerArchSpec",
    "build_random_reranker",
    "build_tiny_blip2_itm",
    "build_tiny_blip_itm",
    "build_tiny_cross_encoder",
    "reranker_probe_log_odds",
]
