"""Walk a local folder without ever failing on what lies in it.

Whatever the file system holds — symlink loops, dangling links, links out of the root, FIFOs,
sockets, devices, folders that cannot be listed, names in any encoding — the walk yields an item
(with a ``skip_reason`` when it must not be read) or counts a skip; it never raises for one entry.
It uses ``lstat`` (``os.scandir``) and never follows a folder symlink, so a loop cannot recurse;
real folders are remembered by ``(st_dev, st_ino)`` so a bind mount that loops is walked once.
Only a root that does not exist (or cannot be read at all) is an error.

Skip reasons: ``symlink_loop``, ``dangling_symlink``, ``symlink_outside_root``, ``not_a_regular_file``
(FIFO, socket, device) and ``unreadable`` (``lstat``/listing failed, or the file vanished).
Counted, not yielded: hidden entries (``.git``), folder symlinks inside the root (their files are
listed under their real path) and folders already walked.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symlink"}


class NotRegularFile(OSError):
    """Raised by :func:`open_regular` when the path is not (or no longer) a regular file."""


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def doc_id_of(rel: str) -> str:
    """A document id that is valid UTF-8 whatever the bytes of the name: undecodable bytes become ``\\xNN``."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:  # surrogate-escaped bytes of a name in a legacy encoding
        return os.fsencode(rel).decode("utf-8", "backslashreplace")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a file for reading only if it is a regular file; never blocks on a FIFO.

    ``O_NONBLOCK`` makes opening a FIFO return at once, ``O_NOFOLLOW`` refuses a last component that
    became a symlink since the listing, and ``fstat`` on the open descriptor settles what was opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "became a symlink after it was listed", str(path)) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"{kind_of(mode)}, not a regular file", str(path))
    return os.fdopen(fd, "rb")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def iter_local_items(root: Path, skipped: Counter | None = None) -> Iterator:
    """Yield a :class:`~ragtrail.sources.SourceItem` per file under ``root`` (resolved), folder by folder, sorted.

    Files of a folder come before its subfolders (like ``os.walk`` top-down).
    """
    from ragtrail.sources import SourceItem

    skipped = skipped if skipped is not None else Counter()
    top = str(root)

    def rel(path: str) -> str:  # every path here is top + "/" + …: no os.path.relpath per file
        return doc_id_of(path[len(top.rstrip(os.sep)) + 1:].replace(os.sep, "/"))

    def item(path: str, st: os.stat_result, real: str | None = None) -> SourceItem:
        mtime = datetime.fromtimestamp(st.st_mtime, UTC).isoformat()
        return SourceItem(rel(path), Path(path).as_uri(), st.st_size, str(st.st_mtime_ns), Path(real or path),
                          mtime=mtime)

    def skip(path: str, reason: str, note: str) -> SourceItem:
        return SourceItem(rel(path), Path(path).as_uri(), 0, "", None, reason, note=note)

    try:
        st = os.stat(top)
    except FileNotFoundError:
        raise FileNotFoundError(f"source folder does not exist: {root}") from None
    if not stat.S_ISDIR(st.st_mode):  # the source names one file
        top = os.path.dirname(top)
        yield item(str(root), st) if stat.S_ISREG(st.st_mode) else skip(
            str(root), "not_a_regular_file", f"{kind_of(st.st_mode)}, not a regular file")
        return
    visited = {(st.st_dev, st.st_ino)}
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            yield skip(folder, "unreadable", f"cannot list the folder: {err.strerror or err}")
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                skipped["hidden"] += 1
                continue
            path = entry.path
            try:
                lst = entry.stat(follow_symlinks=False)
            except OSError as err:  # vanished since listed, or an lstat the kernel refuses
                yield skip(path, "unreadable", f"cannot stat: {err.strerror or err}")
                continue
            if stat.S_ISLNK(lst.st_mode):
                found = _symlink(path, top)
                if isinstance(found, tuple) and found[0] == "folder":
                    skipped["symlinked_folder"] += 1
                elif isinstance(found, tuple):
                    yield skip(path, found[0], found[1])
                else:
                    yield item(path, found.st, found.real)
            elif stat.S_ISDIR(lst.st_mode):
                if (lst.st_dev, lst.st_ino) in visited:
                    skipped["folder_seen_twice"] += 1
                    continue
                visited.add((lst.st_dev, lst.st_ino))
                subfolders.append(path)
            elif stat.S_ISREG(lst.st_mode):
                yield item(path, lst)
            else:
                yield skip(path, "not_a_regular_file", f"{kind_of(lst.st_mode)}, not a regular file")
        stack.extend(reversed(subfolders))


class _Target:
    __slots__ = ("st", "real")

    def __init__(self, st: os.stat_result, real: str):
        self.st, self.real = st, real


def _symlink(path: str, top: str) -> _Target | tuple[str, str]:
    """Where a symlink leads: a regular file inside the root, or ``(reason, note)``; ``("folder", …)`` to skip."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink_loop", "the symlink leads back to itself (a loop)"
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return "dangling_symlink", f"the symlink's target does not exist: {target!r}"[:300]
        return "unreadable", f"cannot follow the symlink: {err.strerror or err}"
    real = os.path.realpath(path)
    if not _within(real, top):
        return "symlink_outside_root", "the symlink leads outside the source folder: not followed"
    if stat.S_ISDIR(st.st_mode):
        return "folder", ""
    if not stat.S_ISREG(st.st_mode):
        return "not_a_regular_file", f"the symlink leads to {kind_of(st.st_mode)}"
    return _Target(st, real)
