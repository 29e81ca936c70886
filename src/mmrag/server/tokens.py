"""Texts cut to the model's window before tokenising, and token counts for the OpenAI ``usage`` field.

A tokenizer reads a whole text before it truncates it, so a 10 MB text
would cost seconds and a gigabyte however small the model's window is.
:meth:`TokenCounter.bounded` cuts each long text to a prefix that still
holds the window plus :data:`MARGIN_TOKENS` tokens (found by tokenising
growing prefixes, at most about twice the prefix it returns), so the model
sees the same tokens as for the whole text and the work is bounded by the
window. (The one exception is contrived: a single "word" of more than
:data:`MARGIN_TOKENS` tokens straddling the cut.)

The count is what the model sees: the encoder's tokenizer with its
truncation (``max_text_length``), special tokens included. Both use a
private copy of the tokenizer behind a lock, because a fast tokenizer that
is called with other truncation settings from two threads at once fails
("Already borrowed"), and the batching thread is using the encoder's own.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["MARGIN_TOKENS", "SHORT_TEXT_CHARS", "TokenCounter"]

SHORT_TEXT_CHARS = 4096
"""Texts up to this many characters are passed whole (tokenising them is cheap)."""
MARGIN_TOKENS = 16
"""Tokens a cut text keeps beyond the model's window."""


class TokenCounter:
    """Cuts texts to the model's window and counts their tokens, for one encoder, safely from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._source: Any = None

    def count(self, encoder: Any, texts: Sequence[str]) -> int:
        """Total tokens of ``texts`` as ``encoder`` would see them.

        Args:
            encoder: The encoder (its ``tokenizer`` and ``max_text_length``
                are used when it has them).
            texts: The texts.

        Returns:
            The token count; whitespace-separated words when the encoder has
            no tokenizer or tokenizing fails.
        """
        with self._lock:
            tokenizer = self._tokenizer_for(encoder)
            if tokenizer is not None:
                limit = getattr(encoder, "max_text_length", None)
                try:
                    ids = tokenizer(list(texts), truncation=limit is not None, max_length=limit)["input_ids"]
                    return sum(len(row) for row in ids)
                except Exception:  # usage is informational: never fail a request over it
                    pass
        return sum(len(text.split()) for text in texts)

    def bounded(self, encoder: Any, texts: Sequence[str]) -> list[str]:
        """The texts, each long one cut to a prefix the model sees the same tokens of.

        Args:
            encoder: The encoder (its ``tokenizer`` and ``max_text_length``).
            texts: The texts.

        Returns:
            One text per input: as given when it is at most
            :data:`SHORT_TEXT_CHARS` long (or the encoder has no tokenizer),
            else its shortest tried prefix holding ``max_text_length +``
            :data:`MARGIN_TOKENS` tokens.
        """
        window = getattr(encoder, "max_text_length", None)
        if not isinstance(window, int) or all(len(text) <= SHORT_TEXT_CHARS for text in texts):
            return list(texts)
        with self._lock:
            tokenizer = self._tokenizer_for(encoder)
            if tokenizer is None:
                return list(texts)
            return [self._prefix(tokenizer, text, window + MARGIN_TOKENS) for text in texts]

    @staticmethod
    def _prefix(tokenizer: Any, text: str, wanted: int) -> str:
        size = max(SHORT_TEXT_CHARS, wanted * 16)
        while size < len(text):
            prefix = text[:size]
            try:
                ids = tokenizer(prefix, add_special_tokens=False, truncation=True, max_length=wanted)["input_ids"]
            except Exception:  # a tokenizer that cannot do this: pass the text whole, as before
                return text
            if len(ids) >= wanted:
                return prefix
            size *= 2
        return text

    def _tokenizer_for(self, encoder: Any) -> Any:
        source = getattr(encoder, "tokenizer", None)
        if source is not self._source:
            self._source = source
            try:
                self._tokenizer = copy.deepcopy(source) if source is not None else None
            except Exception:  # some tokenizers cannot be copied: count words instead
                self._tokenizer = None
        return self._tokenizer
