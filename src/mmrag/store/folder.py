"""``index_folder``: walk a folder, read what changed, embed and write it, and drop what is gone.

Change detection
    Every record written from a folder keeps the folder, its file's size and
    modification time. A re-run skips files whose size and time are the same,
    re-embeds changed ones (a new record replaces the old) and deletes the
    records of files that are gone. An interrupted run, run again, finishes with
    no duplicates: record ids derive from the content and the path.

Pipeline
    Files go in chunks of ``encoder.batch_size``, one modality per chunk. Two
    :class:`~mmrag.prefetch.Prefetcher` threads overlap the three stages:
    reading (and decoding) chunk ``i + 1`` runs while chunk ``i`` is embedded,
    and chunk ``i - 1`` is written meanwhile; writes stay in order. A file that
    cannot be read is a ``failed`` entry; an exception in embedding or writing
    propagates once both threads have stopped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.errors import ImageInputError
from mmrag.inputs import IMAGE_EXTENSIONS, Modality, resolve_image
from mmrag.prefetch import Prefetcher
from mmrag.store.collection_pair import CollectionPair
from mmrag.store.records import INTERNAL_PREFIX, MODALITIES, IndexReport, Pending, pixel_digest, record_id, text_digest

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__ = ["TEXT_EXTENSIONS"]

TEXT_EXTENSIONS = frozenset({".txt", ".md"})
"""File endings ``index_folder`` reads as texts (UTF-8)."""


@dataclass(frozen=True)
class FolderRecord:
    """What the store knows about one file it indexed before."""

    id: str
    modality: Modality
    mtime_ns: int
    size: int

    def unchanged(self, stat: os.stat_result) -> bool:
        """Whether the file still has the recorded size and modification time."""
        return self.mtime_ns == int(stat.st_mtime_ns) and self.size == int(stat.st_size)


@dataclass(frozen=True)
class _Todo:
    file: Path
    modality: Modality
    stat: os.stat_result
    previous: FolderRecord | None


@dataclass(frozen=True)
class _Loaded:
    todo: _Todo
    pending: Pending | None  # None when reading failed
    error: str | None


@dataclass(frozen=True)
class _Embedded:
    items: list[Pending]
    vectors: dict[Modality, np.ndarray]  # row i of vectors[m] belongs to the i-th item of modality m
    replaced: list[FolderRecord]  # records of changed files whose new record has another id


@dataclass(frozen=True)
class FolderIndexer:
    """Indexes folders into one store's collections with one encoder.

    Args:
        collections: The store's collections.
        encoder: The store's encoder (embeds, and sets the chunk size).
        model_key: What record ids are derived from besides content and source.
    """

    collections: CollectionPair
    encoder: Encoder
    model_key: str

    def index(self, root: Path, *, recursive: bool, show_progress: bool | None) -> IndexReport:
        """Bring the store in sync with the folder ``root`` (an absolute directory)."""
        files = sorted(walk(root, recursive), key=lambda entry: (entry[1], entry[0]))  # one modality per chunk
        report = IndexReport()
        known = self.known_files(root)
        on_disk = {str(file) for file, _ in files}
        stale = [record for source, record in known.items() if source not in on_disk]
        todo: list[_Todo] = []
        for file, modality in files:
            try:
                stat = file.stat()
            except OSError as exc:
                report.failed.append((str(file), f"cannot read: {exc.strerror or exc}"))
                continue
            record = known.get(str(file))
            if record is not None and record.unchanged(stat) and record.modality == modality:
                report.skipped += 1
                report.ids.append(record.id)
                continue
            if record is not None and record.modality != modality:
                stale.append(record)
                record = None
            todo.append(_Todo(file, modality, stat, record))

        size = self.encoder.batch_size
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        progress = _progress(len(todo), show_progress, desc=f"indexing {root.name or root}")
        try:
            with Prefetcher("mmrag-read") as reader, Prefetcher("mmrag-write") as writer:
                loaded = reader.run(chunks, lambda chunk: self.read_chunk(chunk, root))
                embedded = (self._embed_chunk(chunk, report, progress) for chunk in loaded)
                for _ in writer.run(embedded, lambda chunk: write_chunk(self.collections, chunk)):
                    pass
        finally:
            progress.close()

        for modality in MODALITIES:
            self.collections.delete(modality, [record.id for record in stale if record.modality == modality])
        report.removed = len(stale)
        return report

    def known_files(self, root: Path) -> dict[str, FolderRecord]:
        """The records indexed from ``root`` before, by file path."""
        records: dict[str, FolderRecord] = {}
        for modality in MODALITIES:
            for found_id, meta in self.collections.metadata_where(modality, {f"{INTERNAL_PREFIX}folder": str(root)}):
                records[str(meta.get("source", ""))] = FolderRecord(
                    found_id,
                    modality,
                    int(meta.get(f"{INTERNAL_PREFIX}mtime_ns", -1)),
                    int(meta.get(f"{INTERNAL_PREFIX}size", -1)),
                )
        return records

    def read_chunk(self, chunk: list[_Todo], root: Path) -> list[_Loaded]:
        """Read and decode one chunk's files; a file that fails carries its reason instead."""
        loaded = []
        for item in chunk:
            file, modality, stat = item.file, item.modality, item.stat
            try:
                payload: Any
                if modality == "image":
                    payload = resolve_image(file, limits=self.encoder.image_limits)
                    digest = pixel_digest(payload)
                    document = None
                else:
                    payload = read_text(file)
                    digest = text_digest(payload)
                    document = payload
            except (ImageInputError, OSError, ValueError) as exc:  # ValueError: not UTF-8, or an empty text
                reason = exc.reason if isinstance(exc, ImageInputError) else failure_reason(exc)
                loaded.append(_Loaded(item, None, reason))
                continue
            internal = {
                "source": str(file),
                f"{INTERNAL_PREFIX}folder": str(root),
                f"{INTERNAL_PREFIX}mtime_ns": int(stat.st_mtime_ns),
                f"{INTERNAL_PREFIX}size": int(stat.st_size),
            }
            new_id = record_id(self.model_key, modality, digest, str(file))
            loaded.append(_Loaded(item, Pending(new_id, modality, document, internal, {}, payload), None))
        return loaded

    def _embed_chunk(self, loaded: list[_Loaded], report: IndexReport, progress: Any) -> _Embedded:
        items: list[Pending] = []
        replaced: list[FolderRecord] = []
        for item in loaded:
            previous = item.todo.previous
            if item.pending is None:
                report.failed.append((str(item.todo.file), item.error or "unreadable"))
                continue
            items.append(item.pending)
            report.ids.append(item.pending.id)
            if previous is None:
                report.added += 1
            else:
                report.updated += 1
                if previous.id != item.pending.id:
                    replaced.append(previous)
        vectors: dict[Modality, np.ndarray] = {}
        for modality in MODALITIES:
            payloads = [item.payload for item in items if item.modality == modality]
            if payloads:
                embed = self.encoder.embed_images if modality == "image" else self.encoder.embed_texts
                vectors[modality] = embed(payloads)
        report.embedded += len(items)
        progress.update(len(loaded))
        return _Embedded(items, vectors, replaced)


def write_chunk(collections: CollectionPair, chunk: _Embedded) -> None:
    """Write one embedded chunk, then delete the records its changed files replace."""
    for modality, matrix in chunk.vectors.items():
        collections.upsert(modality, [item for item in chunk.items if item.modality == modality], matrix)
    for modality in MODALITIES:
        replaced = [record.id for record in chunk.replaced if record.modality == modality]
        if replaced:
            collections.delete(modality, replaced)


def walk(root: Path, recursive: bool) -> Iterator[tuple[Path, Modality]]:
    """The image and text files under ``root`` (hidden files and folders skipped)."""
    entries: Iterable[Path] = root.rglob("*") if recursive else root.iterdir()
    for entry in entries:
        relative = entry.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        suffix = entry.suffix.lower()
        if suffix in IMAGE_EXTENSIONS and entry.is_file():
            yield entry, "image"
        elif suffix in TEXT_EXTENSIONS and entry.is_file():
            yield entry, "text"


def read_text(file: Path) -> str:
    """A text file's content (UTF-8, a BOM dropped).

    Raises:
        ValueError: The file holds only whitespace.
    """
    text = file.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError("empty text file")
    return text


def failure_reason(exc: BaseException) -> str:
    """A short reason for a file that could not be read."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _progress(total: int, show: bool | None, *, desc: str) -> Any:
    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, desc=desc, unit="file", disable=not enabled or total == 0, leave=False)
