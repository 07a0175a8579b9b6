"""Nothing on disk can fail an ingest: real symlink loops, dangling links, FIFOs, sockets, devices, folders that
cannot be listed, undecodable names and folders named like files are quarantined or counted, never raised,
and nothing hangs (a FIFO with no writer would block a plain open forever)."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
from collections import Counter
from contextlib import contextmanager

import pyarrow.parquet as pq
import pytest
from conftest import write_corpus

from ragtrail.core.recorder import Recorder
from ragtrail.sources.listing import iter_local
from ragtrail.sources.walk import NotRegularFile, open_regular
from ragtrail.stages.ingest import ingest_source

GOOD = "A perfectly fine document about Qdrant aliases."


@contextmanager
def no_hang(seconds: int = 120):
    """Fail (instead of hanging the suite) if the block blocks, e.g. on opening a FIFO."""
    def alarm(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def make_device(path) -> bool:
    """A character device node (like /dev/null); root in a container may still be refused mknod."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        return True
    except PermissionError:
        return False


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    outside = write_corpus(tmp_path / "outside", {"secret.md": "never read me"})
    root = write_corpus(tmp_path / "corpus", {"good.md": GOOD, "a.pdf/inside.md": "A folder named like a PDF.",
                                              "sub/deeper/ok.txt": "Nested and fine.", ".hidden/x.md": "hidden"})
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    (root / "self").symlink_to(root / "self")
    (root / "dangling.md").symlink_to(root / "no-such-file.md")
    (root / "leak.md").symlink_to(outside / "secret.md")
    (root / "sub" / "up").symlink_to(root)  # a folder loop through a symlink: not followed, counted
    (root / "alias.md").symlink_to(root / "good.md")
    os.mkfifo(root / "pipe.txt")  # nothing ever writes to it
    monkeypatch.chdir(root)  # AF_UNIX paths are short: bind by relative name
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("socket.md")
    device = make_device(root / "device.txt")
    with open(os.path.join(os.fsencode(root), "caf\xe9-latin1-name.txt".encode("latin-1")), "wb") as fh:
        fh.write("Café menu, named in Latin-1.".encode())
    yield root, device
    sock.close()


def test_listing_never_raises_and_says_why(hostile):
    root, device = hostile
    skipped = Counter()
    with no_hang():
        items = {i.doc_id: i for i in iter_local(str(root), skipped)}
    reasons = {k: i.skip_reason for k, i in items.items()}
    expected = {"good.md": None, "alias.md": None, "a.pdf/inside.md": None, "sub/deeper/ok.txt": None,
                "caf\\xe9-latin1-name.txt": None, "loop-a": "symlink_loop", "loop-b": "symlink_loop",
                "self": "symlink_loop", "dangling.md": "dangling_symlink", "leak.md": "symlink_outside_root",
                "pipe.txt": "not_a_regular_file", "socket.md": "not_a_regular_file"}
    if device:
        expected["device.txt"] = "not_a_regular_file"
    assert reasons == expected
    assert "FIFO" in items["pipe.txt"].note and "socket" in items["socket.md"].note
    assert skipped == {"hidden": 1, "symlinked_folder": 1}
    assert items["alias.md"].read_bytes() == GOOD.encode()


def test_ingest_of_a_hostile_folder_finishes_with_reasons(hostile, tmp_path):
    root, device = hostile
    rec = Recorder()
    with no_hang():
        out = ingest_source(str(root), tmp_path / "work", recorder=rec)
    assert out["docs"] == 5
    quarantine = {q["doc_id"]: q["reason"] for q in json.loads((tmp_path / "work" / "quarantine.json").read_text())}
    assert quarantine == {"loop-a": "symlink_loop", "loop-b": "symlink_loop", "self": "symlink_loop",
                          "dangling.md": "dangling_symlink", "leak.md": "symlink_outside_root",
                          "pipe.txt": "not_a_regular_file", "socket.md": "not_a_regular_file",
                          **({"device.txt": "not_a_regular_file"} if device else {})}
    docs = dict(zip(*pq.read_table(tmp_path / "work" / "docs.parquet", columns=["doc_id", "text"]).to_pydict().values(),
                    strict=True))
    assert docs["caf\\xe9-latin1-name.txt"] == "Café menu, named in Latin-1."
    assert docs["a.pdf/inside.md"] == "A folder named like a PDF."
    assert not any("never read me" in t for t in docs.values())
    assert rec.metrics["skipped_hidden"] == 1 and rec.metrics["quarantined_symlink_loop"] == 3


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "p")
    with no_hang(30), pytest.raises(NotRegularFile, match="FIFO"):
        open_regular(tmp_path / "p")
    (tmp_path / "link").symlink_to(tmp_path / "p")
    with no_hang(30), pytest.raises(NotRegularFile):
        open_regular(tmp_path / "link")  # O_NOFOLLOW: a last component that is a link


def test_a_file_swapped_for_a_fifo_after_listing_is_quarantined(tmp_path):
    """Listed as a regular file, replaced by a FIFO before it is read: quarantined, not a hang."""
    root = write_corpus(tmp_path / "c", {"a.md": GOOD, "b.md": "Will become a FIFO."})
    from ragtrail.stages import ingest as ingest_module

    real = ingest_module.iter_source

    def swapping(source, **kw):
        for item in real(source, **kw):
            if item.doc_id == "b.md":
                os.unlink(item.path)
                os.mkfifo(item.path)
            yield item

    ingest_module.iter_source = swapping
    try:
        with no_hang():
            ingest_source(str(root), tmp_path / "work")
    finally:
        ingest_module.iter_source = real
    (entry,) = json.loads((tmp_path / "work" / "quarantine.json").read_text())
    assert entry["doc_id"] == "b.md" and entry["reason"] == "not_a_regular_file" and "FIFO" in entry["message"]


def test_unreadable_and_vanished_files_are_quarantined(tmp_path, monkeypatch):
    """A file deleted after listing is real; permission denied cannot be provoked as root (tests run as
    root in CI), so that one error path is simulated on os.open."""
    root = write_corpus(tmp_path / "c", {"a.md": GOOD, "gone.md": "About to vanish.", "locked.md": "No access."})
    from ragtrail.stages import ingest as ingest_module

    real_iter, real_open = ingest_module.iter_source, os.open

    def vanishing(source, **kw):
        for item in real_iter(source, **kw):
            if item.doc_id == "gone.md":
                os.unlink(item.path)
            yield item

    def denying(path, flags, *args, **kw):
        if str(path).endswith("locked.md"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(ingest_module, "iter_source", vanishing)
    monkeypatch.setattr(os, "open", denying)
    out = ingest_source(str(root), tmp_path / "work")
    quarantine = {q["doc_id"]: (q["reason"], q["message"]) for q in
                  json.loads((tmp_path / "work" / "quarantine.json").read_text())}
    assert out["docs"] == 1 and set(quarantine) == {"gone.md", "locked.md"}
    assert quarantine["gone.md"][0] == quarantine["locked.md"][0] == "unreadable"
    assert "Permission denied" in quarantine["locked.md"][1]


def test_a_folder_that_cannot_be_listed_is_one_entry(tmp_path, monkeypatch):
    """As root a mode-000 folder is still listable, so listing failure is simulated on os.scandir."""
    root = write_corpus(tmp_path / "c", {"a.md": GOOD, "private/x.md": "hidden by permissions"})
    real = os.scandir

    def scandir(path):
        if str(path).endswith("private"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = {i.doc_id: i.skip_reason for i in iter_local(str(root))}
    assert items == {"a.md": None, "private": "unreadable"}


def test_a_missing_source_folder_is_still_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_local(str(tmp_path / "nope")))
