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
import hashlib
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote_from_bytes

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


def iter_local_items(root: Path, skipped: Counter | None = None, key_range: KeyRange | None = None) -> Iterator:
    """Yield a :class:`~ragtrail.sources.listing.SourceItem` per file under ``root`` (resolved), in key order.

    Key order is the order of the relative paths (document ids) as strings, the order S3 lists keys in:
    ``a.md`` < ``a/b.md`` < ``b.md``. The ingest stage merges the listing against the stored source state
    in this order (:mod:`ragtrail.stages.sync_state`). ``key_range`` (one shard of the source): only keys
    inside it; a subfolder wholly before the range is not entered, and the walk ends at the first key past it.
    """
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise FileNotFoundError(f"source folder does not exist: {root}") from None
    one_file = not stat.S_ISDIR(st.st_mode)  # the source names one file: its folder is the top
    walk = _Walk(os.path.dirname(str(root)) if one_file else str(root), skipped if skipped is not None else Counter(),
                 key_range or KeyRange())
    if one_file:
        yield walk.item(str(root), st) if stat.S_ISREG(st.st_mode) else walk.skip(
            str(root), "not_a_regular_file", f"{kind_of(st.st_mode)}, not a regular file")
        return
    walk.visited.add((st.st_dev, st.st_ino))
    stack = [walk.folder(walk.top)]
    span = walk.key_range
    while stack:  # depth first, a folder's entries in key order: a subfolder is walked where its name sorts
        found = next(stack[-1], None)
        if found is None:
            stack.pop()
        elif isinstance(found, str):
            prefix = walk.rel(found) + "/"
            if span.past(prefix):
                return  # every key from here on sorts after the range
            if not span.before_all(prefix):
                stack.append(walk.folder(found))
        elif span.past(found.doc_id):
            return
        elif span.holds(found.doc_id):
            yield found


@dataclass(frozen=True)
class KeyRange:
    """One shard of a source: the keys (document ids, as strings) ``after < key <= upto``; ``None``: unbounded.

    Example::

        KeyRange("b.md", "d.md").holds("c/x.md")  # True
    """

    after: str | None = None
    upto: str | None = None

    @property
    def whole(self) -> bool:
        return self.after is None and self.upto is None

    def holds(self, key: str) -> bool:
        return (self.after is None or key > self.after) and (self.upto is None or key <= self.upto)

    def past(self, key: str) -> bool:
        """``key`` (and every key that sorts after it) is beyond the range."""
        return self.upto is not None and key > self.upto

    def before_all(self, prefix: str) -> bool:
        """Every key starting with ``prefix`` sorts at or before ``after``: a folder the range never enters."""
        return self.after is not None and prefix <= self.after and not self.after.startswith(prefix)


@dataclass(frozen=True)
class SourceItem:
    """One object found in a source, before it is read.

    ``path`` is set for local files; remote objects carry a ``fetch`` that downloads them into a
    folder the caller owns (see :meth:`local_file`).
    """

    doc_id: str
    uri: str
    size: int
    version: str  # mtime (local) or ETag (S3): changes when the object changes
    path: str | None = None  # a local file's path (a string: no ``Path`` per listed file; see :meth:`local_file`)
    skip_reason: str | None = None  # set when the item must be quarantined without reading it
    etag: str | None = None
    mtime: str | None = None  # ISO 8601, UTC
    fetch: Callable[[Path], None] | None = None
    note: str | None = None  # why it is skipped, in words, when ``skip_reason`` is set

    def read_bytes(self) -> bytes:
        assert self.path is not None
        with open_regular(self.path) as fh:
            return fh.read()

    def local_file(self, scratch: Path) -> Path:
        """The item's bytes as a local file: the file itself, or a download into ``scratch``.

        Downloads are named after a hash of the URI, never after the key, so no key can choose
        where its bytes land.
        """
        if self.path is not None:
            return Path(self.path)
        assert self.fetch is not None, "item has neither a path nor a fetch"
        suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(self.doc_id).suffix)[:16]
        dest = scratch / (hashlib.sha256(self.uri.encode()).hexdigest()[:32] + suffix)
        scratch.mkdir(parents=True, exist_ok=True)
        self.fetch(dest)
        return dest


class _Walk:
    """One walk under ``top``: the items it yields, the skips it counts, the real folders it has seen."""

    def __init__(self, top: str, skipped: Counter, key_range: KeyRange):
        self.top, self.skipped, self.key_range = top, skipped, key_range
        self._cut, self._top_uri = len(top.rstrip(os.sep)) + 1, Path(top).as_uri().rstrip("/")
        self.visited: set[tuple[int, int]] = set()

    def rel(self, path: str) -> str:  # every path here is top + "/" + …: no os.path.relpath per file
        return doc_id_of(path[self._cut:].replace(os.sep, "/"))

    def uri(self, path: str) -> str:
        """``Path(path).as_uri()``, without building a ``Path`` per file (a third of a re-ingest's listing time):
        the top's URI once, the rest quoted as ``as_uri`` quotes it."""
        rest = path[self._cut:]
        return f"{self._top_uri}/{quote_from_bytes(os.fsencode(rest))}" if rest else Path(path).as_uri()

    def item(self, path: str, st: os.stat_result, real: str | None = None):
        mtime = datetime.fromtimestamp(st.st_mtime, UTC).isoformat()
        return SourceItem(self.rel(path), self.uri(path), st.st_size, str(st.st_mtime_ns), real or path,
                          mtime=mtime)

    def skip(self, path: str, reason: str, note: str):
        return SourceItem(self.rel(path), self.uri(path), 0, "", None, reason, note=note)

    def folder(self, folder: str) -> Iterator:
        """The items of one folder in key order (a subfolder sorts as ``name/``); a subfolder to walk as its path."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_sort_key)
        except OSError as err:
            yield self.skip(folder, "unreadable", f"cannot list the folder: {err.strerror or err}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                self.skipped["hidden"] += 1
            else:
                yield from self._entry(entry)

    def _entry(self, entry: os.DirEntry) -> Iterator:
        path = entry.path
        try:
            lst = entry.stat(follow_symlinks=False)
        except OSError as err:  # vanished since listed, or an lstat the kernel refuses
            yield self.skip(path, "unreadable", f"cannot stat: {err.strerror or err}")
            return
        if stat.S_ISLNK(lst.st_mode):
            yield from self._link(path)
        elif stat.S_ISDIR(lst.st_mode):
            yield from self._subfolder(path, lst)
        elif stat.S_ISREG(lst.st_mode):
            yield self.item(path, lst)
        else:
            yield self.skip(path, "not_a_regular_file", f"{kind_of(lst.st_mode)}, not a regular file")

    def _link(self, path: str) -> Iterator:
        found = _symlink(path, self.top)
        if isinstance(found, _Target):
            yield self.item(path, found.st, found.real)
        elif found[0] == "folder":
            self.skipped["symlinked_folder"] += 1
        else:
            yield self.skip(path, *found)

    def _subfolder(self, path: str, lst: os.stat_result) -> Iterator[str]:
        if (lst.st_dev, lst.st_ino) in self.visited:
            self.skipped["folder_seen_twice"] += 1
        else:
            self.visited.add((lst.st_dev, lst.st_ino))
            yield path


def _sort_key(entry: os.DirEntry) -> str:
    """Where an entry sorts among its siblings so that the walk yields relative paths in string order."""
    try:
        folder = entry.is_dir(follow_symlinks=False)
    except OSError:
        folder = False
    return doc_id_of(entry.name) + ("/" if folder else "")


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
