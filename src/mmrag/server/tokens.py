"""Token counts for the OpenAI ``usage`` field.

The count is what the model sees: the encoder's tokenizer with its
truncation (``max_text_length``), special tokens included. Counting uses a
private copy of the tokenizer behind a lock, because a fast tokenizer that
is called with other truncation settings from two threads at once fails
("Already borrowed"), and the batching thread is using the encoder's own.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["TokenCounter"]


class TokenCounter:
    """Counts tokens of texts for one encoder, safely from any thread."""

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

    def _tokenizer_for(self, encoder: Any) -> Any:
        source = getattr(encoder, "tokenizer", None)
        if source is not self._source:
            self._source = source
            try:
                self._tokenizer = copy.deepcopy(source) if source is not None else None
            except Exception:  # some tokenizers cannot be copied: count words instead
                self._tokenizer = None
        return self._tokenizer
