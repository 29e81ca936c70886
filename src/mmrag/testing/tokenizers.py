"""Small tokenizers trained locally, returned as the real transformers tokenizer classes.

The vocabulary is trained with the ``tokenizers`` library on :func:`~mmrag.testing.caption_corpus`
using exactly the normalizer / pre-tokenizer pipeline of the transformers class it is wrapped in,
so a ``save_pretrained`` + ``AutoTokenizer.from_pretrained`` round trip tokenizes identically
(:func:`verify_tokenizer_roundtrip` checks that for every saved model). ``tokenizers`` and
``transformers`` are imported inside the functions.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from mmrag.testing.corpus import COMMON_CHINESE_CHARS, SAMPLE_SENTENCES, caption_corpus
from mmrag.testing.families import MAX_TEXT_LENGTH

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TokenizerKind", "family_tokenizer", "train_tokenizer", "verify_tokenizer_roundtrip"]

TokenizerKind = Literal["clip_bpe", "metaspace_bpe", "wordpiece"]

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


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    """A BPE merge as ``(left, right)``: ``tokenizers`` serialises it as ``"left right"`` or a list."""
    left, right = merge.split(" ") if isinstance(merge, str) else merge
    return left, right


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
        return tuple((t, i) for i, t in enumerate(order)), tuple(_merge_pair(m) for m in model["merges"])

    if kind == "metaspace_bpe":
        # Gemma/Siglip2 pipeline: (lowercase) + replace " " by "▁", no pre-tokenizer split, BPE
        # with byte fallback. Train with a Metaspace split (prepend_scheme="never", like Gemma) so
        # that no merge crosses a word boundary: applying the merges to the unsplit string then
        # gives exactly the per-word result.
        norms: list[normalizers.Normalizer] = [normalizers.Lowercase()] if lowercase else []
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
        return tuple((t, i) for i, t in enumerate(order)), tuple(_merge_pair(m) for m in model["merges"])

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
        chars = set(letters) | set(string.punctuation) | set(COMMON_CHINESE_CHARS)
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
    # transformers annotates ``merges`` as ``list[str]``, but the BPE model takes (left, right) pairs.
    pairs: list[tuple[str, str]] = list(merges)
    if kind == "clip_bpe":
        from transformers import CLIPTokenizer

        return CLIPTokenizer(
            vocab=vocab,
            merges=pairs,  # type: ignore[arg-type]  # BPE takes (left, right) pairs, see above
            model_max_length=model_max_length or 77,
        )
    if kind == "metaspace_bpe":
        from transformers import GemmaTokenizer, Siglip2Tokenizer

        cls: type[GemmaTokenizer | Siglip2Tokenizer] = Siglip2Tokenizer if lowercase else GemmaTokenizer
        return cls(
            vocab=vocab,
            merges=pairs,  # type: ignore[arg-type]  # BPE takes (left, right) pairs, see above
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
    """Return the locally trained tokenizer that :func:`~mmrag.testing.build_tiny_model` saves for ``family``.

    ``clip``: ``CLIPTokenizer`` (max length 77); ``siglip``: ``GemmaTokenizer`` (case-sensitive,
    64); ``siglip2``: ``Siglip2Tokenizer`` (lowercasing, 64); ``chinese_clip``: ``BertTokenizer``
    (52). All are trained on :func:`~mmrag.testing.caption_corpus` ``(0)`` and are deterministic.

    Args:
        family: One of :data:`~mmrag.testing.FAMILIES`.

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


def verify_tokenizer_roundtrip(before: PreTrainedTokenizerBase, path: str | pathlib.Path) -> None:
    """Reload the tokenizer saved in ``path`` with ``AutoTokenizer`` and check it equals ``before``.

    Args:
        before: The tokenizer that was saved.
        path: The directory it was saved to.

    Raises:
        RuntimeError: The reloaded tokenizer has another class or ``model_max_length``, tokenizes
            a :data:`~mmrag.testing.SAMPLE_SENTENCES` sentence differently, or maps one to UNK.
    """
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
