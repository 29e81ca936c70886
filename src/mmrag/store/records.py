"""What a store holds and returns: records, hits, reports; the checks and digests behind record ids.

Every stored item carries its ``modality``, its ``source`` (except a text
added directly, whose source is its text, read from its document) and the
caller's metadata. The keys ``modality``, ``source`` and ``mmrag_*`` belong to mmrag;
:func:`user_metadata` strips them before a record goes back to the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mmrag.inputs import Modality

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Hit", "IndexReport", "Modality", "Record", "StoredModality"]

StoredModality = Literal["image", "text", "pair"]
"""What a store record is: an image, a text, or an image-text pair (one fused vector, see ``add_pairs``)."""

MODALITIES: tuple[Modality, ...] = ("image", "text")
"""Both single modalities, in the order a store walks them (what ``index_folder`` writes)."""

STORED_MODALITIES: tuple[StoredModality, ...] = ("image", "text", "pair")
"""Every kind of record, in the order a store walks them (the pair collection only where it exists)."""

RESERVED_KEYS = frozenset({"modality", "source"})
INTERNAL_PREFIX = "mmrag_"
"""Metadata keys starting with this belong to mmrag (signatures, folder bookkeeping)."""


@dataclass(frozen=True)
class Record:
    """One stored item.

    Attributes:
        id: The record id.
        modality: ``"image"``, ``"text"`` or ``"pair"`` (an image with its
            text, stored as one fused vector by ``add_pairs``).
        source: The image's path or URL (also of a pair), or the text file's
            path; for texts added directly, the text itself. ``None`` for
            images given as pixels or bytes. Always valid UTF-8: bytes of a
            file name that are not UTF-8 show as ``\\xNN`` (the store keeps
            the exact name).
        text: The text of a text or pair record; ``None`` for images.
        metadata: The caller's metadata (without mmrag's own keys).
    """

    id: str
    modality: StoredModality
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

    def _repr_html_(self) -> str:
        """The hit as a card with its thumbnail or text (what Jupyter shows)."""
        from mmrag.store.hits import hit_html  # hits imports this module

        return hit_html(self)


@dataclass
class IndexReport:
    """What an add or index call did.

    Attributes:
        added: New records written.
        updated: Existing records rewritten (changed file, new metadata, or an
            explicit id given again).
        skipped: Items already stored unchanged (no embedding was computed).
        removed: Records deleted because their file is gone (or changed and
            can no longer be indexed), and leftovers of an interrupted run.
        failed: ``(source, reason)`` for every item that could not be stored,
            and every folder that could not be read.
        ids: The record id of every stored or skipped item, in input order.
        embedded: Items embedded by this call (``0`` on an unchanged re-run).
        skipped_links: ``(link, reason)`` for every symbolic link
            ``index_folder`` did not follow (leaving the folder, dangling, a loop).

    Sources in ``failed`` and ``skipped_links`` are readable: bytes of a file
    name that are not UTF-8 show as ``\\xNN``.
    """

    added: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    embedded: int = 0
    skipped_links: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: ``added 3, updated 1, skipped 10, removed 0, failed 1`` (and ``, skipped links 2`` if any)."""
        line = (
            f"added {self.added}, updated {self.updated}, skipped {self.skipped}, "
            f"removed {self.removed}, failed {len(self.failed)}"
        )
        return f"{line}, skipped links {len(self.skipped_links)}" if self.skipped_links else line

    def __str__(self) -> str:
        return self.summary()


@dataclass
class Pending:
    """An item about to be written: its id, what Chroma stores, and what is embedded."""

    id: str
    modality: StoredModality
    document: str | None
    internal: dict[str, Any]
    user_metadata: dict[str, Any]
    payload: Any  # the text, image, image file's bytes or (image, text) pair to embed (None once embedded elsewhere)

    def chroma_metadata(self) -> dict[str, Any]:
        """The metadata written to Chroma: the caller's, then mmrag's own keys."""
        return {**self.user_metadata, **self.internal, "modality": self.modality}


def user_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without mmrag's own keys."""
    return {k: v for k, v in meta.items() if k not in RESERVED_KEYS and not k.startswith(INTERNAL_PREFIX)}


def stored_source(modality: StoredModality, meta: Mapping[str, Any], document: str | None) -> str | None:
    """A record's ``source``: its ``source`` metadata, else (a text added directly) its text.

    A text added directly is stored without a ``source`` key (its document is
    the text); records written before that carry the text in ``source`` too.
    """
    if "source" in meta:
        return str(meta["source"]) or None
    return (document or None) if modality == "text" else None


def to_record(record_id: str, modality: StoredModality, meta: Mapping[str, Any], document: str | None) -> Record:
    """A :class:`Record` from what Chroma returned."""
    return Record(record_id, modality, stored_source(modality, meta, document), document, user_metadata(meta))


def to_hit(
    record_id: str, modality: StoredModality, meta: Mapping[str, Any], document: str | None, score: float
) -> Hit:
    """A :class:`Hit` from what Chroma returned."""
    source = stored_source(modality, meta, document)
    return Hit(record_id, modality, source, document, user_metadata(meta), score)


def text_digest(text: str) -> str:
    """SHA-256 of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(data: bytes) -> str:
    """SHA-256 of a file's bytes (how ``index_folder`` keys an image file: no decode needed)."""
    return hashlib.sha256(data).hexdigest()


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 of an image's mode, size and pixels (the same for any input type)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def record_id(model_key: str, modality: StoredModality, digest: str, source: str | None) -> str:
    """The content-derived id: the same model, modality, content and source give the same id."""
    key = f"{model_key}|{modality}|{digest}|{source or ''}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
