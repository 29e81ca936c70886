"""What a store holds and returns: records, hits, reports; the checks and digests behind record ids.

Every stored item carries its ``modality``, its ``source`` and the caller's
metadata. The keys ``modality``, ``source`` and ``mmrag_*`` belong to mmrag;
:func:`user_metadata` strips them before a record goes back to the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrag.inputs import Modality

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Hit", "IndexReport", "Modality", "Record"]

MODALITIES: tuple[Modality, ...] = ("image", "text")
"""Both modalities, in the order a store walks them."""

RESERVED_KEYS = frozenset({"modality", "source"})
INTERNAL_PREFIX = "mmrag_"
"""Metadata keys starting with this belong to mmrag (signatures, folder bookkeeping)."""


@dataclass(frozen=True)
class Record:
    """One stored item.

    Attributes:
        id: The record id.
        modality: ``"image"`` or ``"text"``.
        source: The image's path or URL, or the text file's path; for texts
            added directly, the text itself. ``None`` for images given as
            pixels or bytes.
        text: The text of a text record; ``None`` for images.
        metadata: The caller's metadata (without mmrag's own keys).
    """

    id: str
    modality: Modality
    source: str | None
    text: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Hit(Record):
    """A search result: a :class:`Record` plus its similarity to the query.

    Attributes:
        score: Cosine similarity between query and item (higher is better).
    """

    score: float = 0.0


@dataclass
class IndexReport:
    """What an add or index call did.

    Attributes:
        added: New records written.
        updated: Existing records rewritten (changed file, new metadata, or an
            explicit id given again).
        skipped: Items already stored unchanged (no embedding was computed).
        removed: Records deleted because their file is gone.
        failed: ``(source, reason)`` for every item that could not be stored.
        ids: The record id of every stored or skipped item, in input order.
        embedded: Items embedded by this call (``0`` on an unchanged re-run).
    """

    added: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    embedded: int = 0

    def summary(self) -> str:
        """One line: ``added 3, updated 1, skipped 10, removed 0, failed 1``."""
        return (
            f"added {self.added}, updated {self.updated}, skipped {self.skipped}, "
            f"removed {self.removed}, failed {len(self.failed)}"
        )

    def __str__(self) -> str:
        return self.summary()


@dataclass
class Pending:
    """An item about to be written: its id, what Chroma stores, and what is embedded."""

    id: str
    modality: Modality
    document: str | None
    internal: dict[str, Any]
    user_metadata: dict[str, Any]
    payload: Any  # the text or decoded image to embed (None once embedded elsewhere)

    def chroma_metadata(self) -> dict[str, Any]:
        """The metadata written to Chroma: the caller's, then mmrag's own keys."""
        return {**self.user_metadata, **self.internal, "modality": self.modality}


def user_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without mmrag's own keys."""
    return {k: v for k, v in meta.items() if k not in RESERVED_KEYS and not k.startswith(INTERNAL_PREFIX)}


def to_record(record_id: str, modality: Modality, meta: Mapping[str, Any], document: str | None) -> Record:
    """A :class:`Record` from what Chroma returned."""
    return Record(record_id, modality, meta.get("source") or None, document, user_metadata(meta))


def to_hit(record_id: str, modality: Modality, meta: Mapping[str, Any], document: str | None, score: float) -> Hit:
    """A :class:`Hit` from what Chroma returned."""
    return Hit(record_id, modality, meta.get("source") or None, document, user_metadata(meta), score)


def check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int) -> list[dict[str, Any]]:
    """One checked metadata dict per item (empty where ``None``).

    Raises:
        ValueError: Not one per item, a reserved or non-string key, or a value
            that is not str, int, float or bool (the message names the item).
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    metas = list(metadatas)
    if len(metas) != n:
        raise ValueError(f"got {len(metas)} metadatas for {n} items; pass one per item (or None)")
    checked = []
    for index, meta in enumerate(metas):
        meta = dict(meta or {})
        for key, value in meta.items():
            if not isinstance(key, str) or key in RESERVED_KEYS or key.startswith(INTERNAL_PREFIX):
                raise ValueError(
                    f"metadata of item {index}: key {key!r} is reserved or not a string "
                    "('modality', 'source' and 'mmrag_*' belong to mmrag)"
                )
            if not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"metadata of item {index}: value of {key!r} must be str, int, float or bool, "
                    f"got {type(value).__name__}"
                )
        checked.append(meta)
    return checked


def check_ids(ids: Sequence[str] | None, n: int) -> list[str] | None:
    """The caller's record ids, checked; ``None`` when none were given.

    Raises:
        ValueError: Not one per item, an empty or non-string id, or duplicates.
    """
    if ids is None:
        return None
    chosen = list(ids)
    if len(chosen) != n:
        raise ValueError(f"got {len(chosen)} ids for {n} items; pass one per item")
    for index, record_id in enumerate(chosen):
        if not isinstance(record_id, str) or not record_id:
            raise ValueError(f"id of item {index} must be a non-empty string, got {record_id!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError("ids must be unique within one call")
    return chosen


def text_digest(text: str) -> str:
    """SHA-256 of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 of an image's mode, size and pixels (the same for any input type)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def record_id(model_key: str, modality: Modality, digest: str, source: str | None) -> str:
    """The content-derived id: the same model, modality, content and source give the same id."""
    key = f"{model_key}|{modality}|{digest}|{source or ''}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
