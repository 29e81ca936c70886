"""Encoders built from stored configs, kept so a reopened collection loads its model once.

Chroma rebuilds a collection's embedding function from the stored config on
every ``add`` and ``query`` of a collection opened without
``embedding_function=``. Without a cache each call would load the model again.
Two tables answer ``build_from_config``:

* encoders of live :class:`~mmrag.chroma.MultimodalEmbeddingFunction` objects
  with the same config (weakly held: they go when their owners go);
* the last few encoders handed out for a config, loaded or found live
  (strongly held, so a reopened collection keeps its model between calls;
  see :func:`clear_encoder_cache`).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

from mmrag.encoders import Encoder

__all__ = ["EncoderCache", "clear_encoder_cache", "encoder_cache"]


class EncoderCache:
    """A small thread-safe cache of loaded encoders keyed by config.

    Args:
        capacity: Most encoders held strongly (the last ones handed out).
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._live: weakref.WeakValueDictionary[Hashable, Encoder] = weakref.WeakValueDictionary()
        self._kept: OrderedDict[Hashable, Encoder] = OrderedDict()

    def remember(self, key: Hashable, encoder: Encoder) -> None:
        """Offer a live embedding function's encoder for reuse while it lives.

        Args:
            key: The owner's config key.
            encoder: Its encoder.
        """
        with self._lock:
            self._live.setdefault(key, encoder)

    def get_or_load(self, key: Hashable, load: Callable[[], Encoder]) -> Encoder:
        """The encoder for ``key``, loading it with ``load`` the first time.

        Args:
            key: A config key.
            load: Loads the encoder when neither table has one.

        Returns:
            A loaded encoder.
        """
        with self._lock:
            encoder = self._kept.get(key)
            if encoder is None:
                encoder = self._live.get(key)
            if encoder is None:
                encoder = load()
                self._live[key] = encoder
            self._kept[key] = encoder
            self._kept.move_to_end(key)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
            return encoder

    def clear(self) -> None:
        """Drop the strongly held encoders (live owners keep theirs)."""
        with self._lock:
            self._kept.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(set(self._kept) | set(self._live))


encoder_cache = EncoderCache()
"""The process-wide cache behind ``MultimodalEmbeddingFunction.build_from_config``."""


def clear_encoder_cache() -> None:
    """Release the encoders kept for collections reopened from their stored config.

    The next query of such a collection loads its model again. Embedding
    functions you made yourself keep their encoders.
    """
    encoder_cache.clear()
