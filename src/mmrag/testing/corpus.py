"""The built-in texts: a bilingual caption corpus, tokenizer self-check sentences and probe texts.

Everything here is plain data or a pure function of a seed (no imports beyond the standard library).
"""

from __future__ import annotations

import random

__all__ = ["COMMON_CHINESE_CHARS", "PROBE_TEXTS", "SAMPLE_SENTENCES", "caption_corpus"]

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

COMMON_CHINESE_CHARS = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后"
    "作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因"
    "只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应"
    "战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿"
    "原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太"
    "量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界"
    "达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今"
    "红绿蓝黄黑橙紫粉棕灰圆方角星心猫狗鸟鱼兔汽车房树花杯椅船苹果香蕉飞图片照张右左坐旁帽衣球草"
)
"""Common Chinese characters always present in the WordPiece vocabulary (on top of the corpus)."""

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
"""Texts whose tiny dual-encoder features have pairwise cosine < 0.97 (checked at build)."""

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
