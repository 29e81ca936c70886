"""A warning when texts are longer than the model's text window and so are cut before embedding.

LlamaIndex puts a node's metadata (``file_path: ...``) before its text; with a
short window (32 tokens for ``demo``, 77 for CLIP) the text itself may not fit
at all, and every caption then embeds alike. The warning is logged on the
``"mmrag"`` logger, once per call site (the first frame outside mmrag, LlamaIndex
and the standard library's async machinery), so a long ingestion logs it once.

SHIM: the encoder does not report truncation yet. Until it does (the hook
asked for is ``Encoder.count_truncated(texts) -> int`` next to
``Encoder.max_text_length``), :func:`count_truncated` tokenizes the texts once
more with the encoder's own tokenizer. Swap its body for the core hook then.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from mmrag.encoders import Encoder

__all__ = ["count_truncated", "warn_if_truncated"]

logger = logging.getLogger("mmrag")

_INTERNAL = frozenset({"mmrag", "asyncio", "concurrent", "threading", "contextlib", "functools", "wrapt", "tqdm"})
_FRAMEWORKS = ("llama_index", "langchain")  # and their companion packages (llama_index_instrumentation...)
_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()


def count_truncated(encoder: Encoder, texts: Sequence[str]) -> tuple[int, int] | None:
    """How many of ``texts`` the encoder cuts, and its text window in tokens.

    Args:
        encoder: The encoder that embeds the texts.
        texts: The texts, as they are embedded.

    Returns:
        ``(truncated, window)``, or ``None`` when the encoder cannot tell (no
        tokenizer or no known window).
    """
    hook = getattr(encoder, "count_truncated", None)  # the core hook, once it exists
    window = getattr(encoder, "max_text_length", None)
    if callable(hook) and isinstance(window, int):
        return int(hook(list(texts))), window
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None or not isinstance(window, int) or not callable(tokenizer):
        return None
    # A text of n UTF-8 bytes is at most 2n + 2 tokens (byte-level BPE or byte-fallback
    # SentencePiece, plus the special tokens): shorter ones cannot be cut and are not tokenized.
    candidates = [text for text in texts if 2 * len(text.encode("utf-8")) + 2 > window]
    if not candidates:
        return 0, window
    ids = tokenizer(candidates, truncation=False, padding=False, verbose=False)["input_ids"]
    return sum(len(row) > window for row in ids), window


def warn_if_truncated(encoder: Encoder, texts: Sequence[str]) -> None:
    """Log once per call site when some of ``texts`` are longer than the encoder's text window.

    Args:
        encoder: The encoder that embeds the texts.
        texts: The texts, as they are embedded (metadata included).
    """
    counted = count_truncated(encoder, texts)
    if counted is None or counted[0] == 0:
        return
    site = _call_site()
    with _warned_lock:
        if site in _warned:
            return
        _warned.add(site)
    truncated, window = counted
    logger.warning(
        "%d of %d texts are longer than the text window of %s (%d tokens) and were cut before embedding "
        "(call site %s:%d). LlamaIndex puts node metadata such as 'file_path: ...' before the text: keep it out "
        "with excluded_embed_metadata_keys, build the index with mmrag.llama_index.multimodal_index, or split "
        "texts shorter (SentenceSplitter(chunk_size=...)).",
        truncated,
        len(texts),
        encoder.model_id,
        window,
        *site,
    )


def _call_site() -> tuple[str, int]:
    """The file and line of the first caller outside mmrag, LlamaIndex and the async machinery."""
    frame: FrameType | None = sys._getframe(1)
    outermost = sys._getframe(1)
    while frame is not None:
        top = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if top not in _INTERNAL and not top.startswith(_FRAMEWORKS):
            return frame.f_code.co_filename, frame.f_lineno
        outermost = frame
        frame = frame.f_back
    return outermost.f_code.co_filename, outermost.f_lineno
