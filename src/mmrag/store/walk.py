"""Walking a folder for ``index_folder``: which entries are files to index, and which links are skipped.

Rules
    - Hidden entries (names starting with ``.``) are left out, and so is every
      file whose ending is not an image or text ending.
    - Folders are walked (when recursive), whatever their name: a folder named
      ``x.png`` is a folder.
    - A symbolic link is followed only when its target lies inside the indexed
      folder, unless ``follow_links=True``: a link that leaves the folder
      (``passwd.txt -> /etc/passwd``) is not read. A linked folder inside the
      folder is not walked twice (it is indexed under its own path), and a
      folder reached again through links (a loop) is walked once. Every link
      that is not followed, including dangling links and link loops, is listed
      in ``skipped_links`` with the reason.
    - A folder that cannot be read is a ``failed`` entry, and the records of
      files under it are kept (their files may still be there).

The walk only names candidates; ``index_folder`` checks that each is a regular
file (a FIFO named ``x.txt`` is a ``failed`` entry, never opened).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmrag.inputs import IMAGE_EXTENSIONS, Modality
from mmrag.store.names import printable

__all__ = ["TEXT_EXTENSIONS"]

TEXT_EXTENSIONS = frozenset({".txt", ".md"})
"""File endings ``index_folder`` reads as texts (UTF-8)."""


@dataclass
class FolderScan:
    """What a walk found.

    Attributes:
        files: ``(path, modality)`` of every candidate file, in walk order.
        skipped_links: ``(link, reason)`` of every link not followed (readable names).
        failed: ``(folder, reason)`` of every folder that could not be read.
        unreadable: The folders that could not be read (their records are kept).
    """

    files: list[tuple[Path, Modality]] = field(default_factory=list)
    skipped_links: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)

    def keeps(self, source: str) -> bool:
        """Whether ``source`` lies in a folder that could not be read (so its record must stay)."""
        return any(source.startswith(str(folder) + os.sep) for folder in self.unreadable)


def modality_of(name: str) -> Modality | None:
    """The modality a file name's ending makes it, or ``None`` when it is not indexed."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    return None


def scan_folder(root: Path, *, recursive: bool, follow_links: bool) -> FolderScan:
    """Walk ``root`` (an absolute, resolved directory) by the rules above.

    Raises:
        OSError: ``root`` itself cannot be read.
    """
    scan = FolderScan()
    walker = _Walker(root, recursive, follow_links, scan)
    info = root.stat()
    walker.visited.add((info.st_dev, info.st_ino))
    walker.walk()
    return scan


@dataclass
class _Walker:
    root: Path
    recursive: bool
    follow_links: bool
    scan: FolderScan
    visited: set[tuple[int, int]] = field(default_factory=set)  # folders walked or about to be

    def walk(self) -> None:
        pending = [self.root]
        while pending:
            current = pending.pop()
            try:
                with os.scandir(current) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError as exc:
                if current == self.root:
                    raise
                self.scan.failed.append((printable(str(current)), f"cannot read folder: {exc.strerror or exc}"))
                self.scan.unreadable.append(current)
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = current / entry.name
                try:
                    subfolder = self._entry(entry, path)
                except OSError as exc:
                    self.scan.failed.append((printable(str(path)), f"cannot read: {exc.strerror or exc}"))
                    continue
                if subfolder is not None:
                    subfolders.append(subfolder)
            pending.extend(reversed(subfolders))  # walk in name order

    def _entry(self, entry: os.DirEntry[str], path: Path) -> Path | None:
        """Record one entry; a folder to walk next is returned."""
        if entry.is_symlink():
            return self._link(path)
        if entry.is_dir(follow_symlinks=False):
            return path if self.recursive and self._first_visit(entry.stat(follow_symlinks=False)) else None
        modality = modality_of(entry.name)
        if modality is not None:
            self.scan.files.append((path, modality))
        return None

    def _link(self, link: Path) -> Path | None:
        modality = modality_of(link.name)
        try:
            target = link.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            self._skip(link, "a symbolic link loop")
            return None
        except OSError as exc:
            dangling = "a dangling link (its target does not exist)"
            reason = "a symbolic link loop" if exc.errno == errno.ELOOP else dangling
            self._skip(link, reason)
            return None
        inside = target == self.root or target.is_relative_to(self.root)
        if target.is_dir():
            if not self.recursive:
                return None
            if inside:
                self._skip(link, f"links to a folder inside the indexed folder ({printable(str(target))})")
                return None
            if not self.follow_links:
                self._skip(link, "leaves the indexed folder (pass follow_links=True to follow it)")
                return None
            if not self._first_visit(target.stat()):
                self._skip(link, f"links to a folder walked already ({printable(str(target))})")
                return None
            return link
        if modality is None:
            return None
        if not inside and not self.follow_links:
            self._skip(link, "leaves the indexed folder (pass follow_links=True to follow it)")
            return None
        self.scan.files.append((link, modality))
        return None

    def _first_visit(self, info: os.stat_result) -> bool:
        identity = (info.st_dev, info.st_ino)
        if identity in self.visited:
            return False  # reached again through a followed link
        self.visited.add(identity)
        return True

    def _skip(self, link: Path, reason: str) -> None:
        self.scan.skipped_links.append((printable(str(link)), reason))
