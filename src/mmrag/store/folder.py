"""``index_folder``: walk a folder, read what changed, embed and write it, and drop what is gone.

Change detection
    Every record written from a folder keeps the folder, its file's exact
    path, size and modification time. A re-run skips files whose size and time
    are the same, re-embeds changed ones (a new record replaces the old) and
    deletes the records of files that are gone.

Reconciliation (crash safety)
    A run finds every record of each (folder, file) and keeps exactly one: the
    one that matches the file, or the new one it writes. Any other record of
    that file is deleted, whatever left it there: a crash between writing a
    changed file's new record and deleting its old one, or a kill at any other
    point, leaves at most leftovers that the next run removes. Nothing is
    deleted before its replacement is written.

Failures
    Every per-file problem is a ``failed`` entry naming the file (readably; see
    :mod:`mmrag.store.names`) while the rest is indexed: an unreadable, corrupt
    or empty file, text that is not UTF-8, a FIFO or device with an indexed
    ending. A file that changed and can no longer be indexed loses its old
    record (the store never answers with content the folder no longer has); a
    file or folder that cannot be reached at all keeps its records. Links that
    are not followed are listed in ``skipped_links`` (see :mod:`mmrag.store.walk`).

Pipeline
    Files go in chunks of ``encoder.batch_size``, one modality per chunk.
    :class:`~mmrag.prefetch.Prefetcher` threads overlap the stages: reading
    chunk ``i + 2`` runs while two chunks are embedded at once (the decoding of
    one on the image workers overlaps the forward pass of the other; the
    encoder runs one forward at a time), and an earlier chunk is written
    meanwhile; counting and writes stay in chunk order. An
    exception in embedding or writing propagates once all these threads have stopped.
    The same steps are public for other runners (``mmrag.ray``):
    :meth:`FolderIndexer.plan`, then :meth:`FolderIndexer.index_chunk` for
    chunks of ``plan.todo`` (anywhere, in any order), then :meth:`FolderIndexer.finish`.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.errors import ImageInputError
from mmrag.inputs import Modality, probe_image, read_image_bytes
from mmrag.logs import logger
from mmrag.prefetch import Prefetcher
from mmrag.progress import progress_bar
from mmrag.store.collection_pair import CollectionPair
from mmrag.store.names import path_key, printable, recorded_path, source_metadata
from mmrag.store.records import INTERNAL_PREFIX, MODALITIES, IndexReport, Pending, file_digest, record_id, text_digest
from mmrag.store.walk import TEXT_EXTENSIONS, scan_folder

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder
    from mmrag.store.store import MultimodalStore

__all__ = ["TEXT_EXTENSIONS", "FileTodo", "FolderIndexer", "FolderPlan", "FolderRecord"]

_log = logger("store")

FOLDER_KEY = f"{INTERNAL_PREFIX}folder"


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
class FileTodo:
    """One file a run reads, embeds and writes.

    Attributes:
        file: The file's absolute path.
        modality: What its ending makes it.
        stat: Its ``stat`` (size and modification time are recorded with it).
        previous: Every record of this file (of this modality) found before;
            those other than its new record are deleted once it is written.
    """

    file: Path
    modality: Modality
    stat: os.stat_result
    previous: tuple[FolderRecord, ...]


@dataclass
class FolderPlan:
    """What a run over one folder has to do, found before anything is embedded.

    Attributes:
        root: The folder (absolute, resolved).
        report: The report so far: failures of the walk, skipped links, and
            the files skipped as unchanged (with their ids).
        todo: The files to read, embed and write, one modality after the other.
        stale: Records to delete at the end (files gone, leftovers of an
            interrupted run); deleted by :meth:`FolderIndexer.finish`.
    """

    root: Path
    report: IndexReport
    todo: list[FileTodo]
    stale: list[FolderRecord]


@dataclass(frozen=True)
class _Loaded:
    todo: FileTodo
    pending: Pending | None  # None when reading failed
    error: str | None


@dataclass(frozen=True)
class _Embedded:
    items: list[Pending]
    vectors: dict[Modality, np.ndarray]  # row i of vectors[m] belongs to the i-th item of modality m
    replaced: list[FolderRecord]  # records of changed files other than their new record: deleted after the write


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

    @classmethod
    def for_store(cls, store: MultimodalStore) -> FolderIndexer:
        """The indexer ``store.index_folder`` uses: the store's collections, encoder and record-id key."""
        return cls(store._collections, store.encoder, store._model_key)

    def index(self, root: Path, *, recursive: bool, follow_links: bool, show_progress: bool | None) -> IndexReport:
        """Bring the store in sync with the folder ``root`` (an absolute, resolved directory)."""
        plan = self.plan(root, recursive=recursive, follow_links=follow_links)
        report, todo = plan.report, plan.todo
        size = self.encoder.batch_size
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        progress = progress_bar(len(todo), show=show_progress, desc=f"indexing {root.name or root}", unit="file")
        try:
            with (
                Prefetcher("mmrag-read") as reader,
                Prefetcher("mmrag-embed", ahead=2) as embedder,
                Prefetcher("mmrag-write") as writer,
            ):
                loaded = reader.run(chunks, lambda chunk: self.read_chunk(chunk, root))
                vectors = embedder.run(loaded, self._vectors)  # decoding chunk i + 1 overlaps the forward of chunk i
                embedded = (self._account(chunk, report, progress) for chunk in vectors)
                for _ in writer.run(embedded, lambda chunk: write_chunk(self.collections, chunk)):
                    pass
        finally:
            progress.close()
        return self.finish(plan)

    def plan(self, root: Path, *, recursive: bool, follow_links: bool) -> FolderPlan:
        """Walk ``root`` (absolute, resolved) and sort its files into skipped (unchanged), to do, and stale records."""
        scan = scan_folder(root, recursive=recursive, follow_links=follow_links)
        report = IndexReport(failed=list(scan.failed), skipped_links=list(scan.skipped_links))
        files = sorted(scan.files, key=lambda entry: (entry[1], str(entry[0])))  # one modality per chunk
        known = self.known_files(root)
        on_disk = {str(file) for file, _ in files}
        stale = [
            record
            for source, records in known.items()
            if source not in on_disk and not scan.keeps(source)
            for record in records
        ]
        todo: list[FileTodo] = []
        for file, modality in files:
            records = known.get(str(file), [])
            try:
                info = file.stat()
            except OSError as exc:  # its records stay: the file may be reachable again next time
                report.failed.append((printable(str(file)), f"cannot read: {exc.strerror or exc}"))
                continue
            if not stat_module.S_ISREG(info.st_mode):
                report.failed.append((printable(str(file)), f"not a regular file ({file_kind(info)})"))
                stale += records
                continue
            same = [record for record in records if record.modality == modality]
            stale += [record for record in records if record.modality != modality]
            keep = next((record for record in same if record.unchanged(info)), None)
            if keep is not None:
                report.skipped += 1
                report.ids.append(keep.id)
                stale += [record for record in same if record is not keep]  # leftovers of an interrupted run
                continue
            todo.append(FileTodo(file, modality, info, tuple(same)))
        return FolderPlan(root, report, todo, stale)

    def index_chunk(self, chunk: list[FileTodo], root: Path, report: IndexReport) -> None:
        """Read, embed and write one chunk of a plan's files (no overlap), counting them in ``report``."""
        progress = progress_bar(0, show=False, desc="")
        write_chunk(self.collections, self._embed_chunk(self.read_chunk(chunk, root), report, progress))

    def finish(self, plan: FolderPlan) -> IndexReport:
        """Delete the plan's stale records (once every file is written) and return its report."""
        for modality in MODALITIES:
            self.collections.delete(modality, [record.id for record in plan.stale if record.modality == modality])
        plan.report.removed += len(plan.stale)
        for failed_path, reason in plan.report.failed:
            _log.warning("skipped %s: %s", failed_path, reason)
        _log.info("indexed %s: %s", printable(str(plan.root)), plan.report.summary())
        return plan.report

    def known_files(self, root: Path) -> dict[str, list[FolderRecord]]:
        """Every record indexed from ``root`` before, by its file's exact path (more than one after a crash)."""
        records: dict[str, list[FolderRecord]] = {}
        for modality in MODALITIES:
            for found_id, meta in self.collections.metadata_where(modality, {FOLDER_KEY: path_key(str(root))}):
                records.setdefault(recorded_path(meta), []).append(
                    FolderRecord(
                        found_id,
                        modality,
                        int(meta.get(f"{INTERNAL_PREFIX}mtime_ns", -1)),
                        int(meta.get(f"{INTERNAL_PREFIX}size", -1)),
                    )
                )
        return records

    def read_chunk(self, chunk: list[FileTodo], root: Path) -> list[_Loaded]:
        """Read one chunk's files (images stay encoded bytes); a file that fails carries its reason instead."""
        loaded = []
        for item in chunk:
            file, modality, stat = item.file, item.modality, item.stat
            try:
                payload: Any
                if modality == "image":
                    payload = read_image_bytes(file, limits=self.encoder.image_limits)
                    probe_image(payload, self.encoder.image_limits)  # not an image: fails here, with no model
                    digest = file_digest(payload)
                    document = None
                else:
                    payload = read_text(file)
                    digest = text_digest(payload)
                    document = payload
            except (ImageInputError, OSError, ValueError) as exc:  # ValueError: not UTF-8, or an empty text
                reason = exc.reason if isinstance(exc, ImageInputError) else failure_reason(exc)
                loaded.append(_Loaded(item, None, printable(reason)))
                continue
            internal = {
                **source_metadata(str(file)),
                FOLDER_KEY: path_key(str(root)),
                f"{INTERNAL_PREFIX}mtime_ns": int(stat.st_mtime_ns),
                f"{INTERNAL_PREFIX}size": int(stat.st_size),
            }
            new_id = record_id(self.model_key, modality, digest, path_key(str(file)))
            loaded.append(_Loaded(item, Pending(new_id, modality, document, internal, {}, payload), None))
        return loaded

    def _embed_chunk(self, loaded: list[_Loaded], report: IndexReport, progress: Any) -> _Embedded:
        return self._account(self._vectors(loaded), report, progress)

    def _vectors(self, loaded: list[_Loaded]) -> tuple[list[_Loaded], dict[Modality, np.ndarray]]:
        """Embed one chunk (images that do not decode become failures); safe to run for two chunks at once."""
        loaded, image_vectors = self._embed_image_files(loaded)
        vectors: dict[Modality, np.ndarray] = {}
        if image_vectors is not None:
            vectors["image"] = image_vectors
        pending = [item.pending for item in loaded if item.pending is not None]
        texts = [item.payload for item in pending if item.modality == "text"]
        if texts:
            vectors["text"] = self.encoder.embed_texts(texts)
        return loaded, vectors

    def _account(
        self, embedded: tuple[list[_Loaded], dict[Modality, np.ndarray]], report: IndexReport, progress: Any
    ) -> _Embedded:
        """Count one embedded chunk in ``report`` (in chunk order) and say what to write and delete."""
        loaded, vectors = embedded
        items: list[Pending] = []
        replaced: list[FolderRecord] = []
        for item in loaded:
            previous = item.todo.previous
            if item.pending is None:
                report.failed.append((printable(str(item.todo.file)), item.error or "unreadable"))
                replaced += previous  # it changed and cannot be indexed: its old content is gone
                report.removed += len(previous)
                continue
            items.append(item.pending)
            report.ids.append(item.pending.id)
            if previous:
                report.updated += 1
            else:
                report.added += 1
            replaced += [record for record in previous if record.id != item.pending.id]
        report.embedded += len(items)
        progress.update(len(loaded))
        return _Embedded(items, vectors, replaced)

    def _embed_image_files(self, loaded: list[_Loaded]) -> tuple[list[_Loaded], np.ndarray | None]:
        """Embed the chunk's encoded image files; one that does not decode becomes a failure, the rest are embedded."""
        while True:
            images = [item for item in loaded if item.pending is not None and item.pending.modality == "image"]
            if not images:
                return loaded, None
            try:
                return loaded, self.encoder.embed_images([item.pending.payload for item in images if item.pending])
            except ImageInputError as exc:
                if exc.index is None or not 0 <= exc.index < len(images):
                    raise
                bad = images[exc.index]
                failed = _Loaded(bad.todo, None, printable(exc.reason))
                loaded = [failed if item is bad else item for item in loaded]


def write_chunk(collections: CollectionPair, chunk: _Embedded) -> None:
    """Write one embedded chunk, then delete the records its changed files replace (never before)."""
    for modality, matrix in chunk.vectors.items():
        collections.upsert(modality, [item for item in chunk.items if item.modality == modality], matrix)
    for modality in MODALITIES:
        replaced = [record.id for record in chunk.replaced if record.modality == modality]
        if replaced:
            collections.delete(modality, replaced)


def file_kind(info: os.stat_result) -> str:
    """What a non-regular file is, in words (``"a FIFO"``, ``"a socket"``, ...)."""
    mode = info.st_mode
    kinds = (
        (stat_module.S_ISFIFO, "a FIFO"),
        (stat_module.S_ISSOCK, "a socket"),
        (stat_module.S_ISCHR, "a character device"),
        (stat_module.S_ISBLK, "a block device"),
        (stat_module.S_ISDIR, "a folder"),
    )
    return next((name for check, name in kinds if check(mode)), "not a file")


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
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)
