"""Where documents come from: list a source lazily, one item at a time.

A source is a local folder (``/path`` or ``file:///path``). Listing streams: a folder of 100k files
is never held in memory. Items know their document id (path relative to the source root) and how to
read their bytes; symlinks are never followed out of the root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class SourceItem:
    """One object found in a source, before it is read."""

    doc_id: str
    uri: str
    size: int
    version: str  # mtime (local) or ETag (S3): changes when the object changes
    path: Path | None = None
    skip_reason: str | None = None  # set when the item must be quarantined without reading it

    def read_bytes(self) -> bytes:
        assert self.path is not None
        return self.path.read_bytes()


def local_root(source: str) -> Path:
    """Return the folder a local source string names (plain path or ``file://`` URI)."""
    if source.startswith("file://"):
        source = urlparse(source).path
    return Path(source).expanduser().resolve()


def iter_local(source: str) -> Iterator[SourceItem]:
    """Yield every regular file under a local folder in a stable (sorted) order.

    Hidden files and folders (``.git``, ``.DS_Store``) are skipped. A symlink whose target lies outside
    the root is yielded with a ``skip_reason`` instead of being followed.
    """
    root = local_root(source)
    if not root.exists():
        raise FileNotFoundError(f"source folder does not exist: {root}")
    if root.is_file():
        yield _local_item(root.parent, root)
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            yield _local_item(root, Path(dirpath) / name)


def _local_item(root: Path, path: Path) -> SourceItem:
    doc_id = path.relative_to(root).as_posix()
    uri = path.as_uri()
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            return SourceItem(doc_id, uri, 0, "", None, "symlink_outside_root")
        path = target
    if not path.is_file():
        return SourceItem(doc_id, uri, 0, "", None, "not_a_regular_file")
    stat = path.stat()
    return SourceItem(doc_id, uri, stat.st_size, str(stat.st_mtime_ns), path)


def iter_source(source: str) -> Iterator[SourceItem]:
    """Yield the items of any supported source string."""
    scheme = urlparse(source).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        return iter_local(source)
    raise ValueError(f"unsupported source {source!r}: use a local folder or file:// URI")
