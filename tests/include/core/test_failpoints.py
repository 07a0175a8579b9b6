"""A failpoint kills one process per work folder, also when two reach it at once (two embedded-store writers of
different parts run side by side now, and the fault matrix counts one kill per point)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ragtrail.core import locks


def test_of_two_writers_reaching_one_failpoint_at_once_only_one_is_killed(tmp_path, monkeypatch):
    """Two threads stand for two processes: both are held together just before the marker is made (the folder's
    ``mkdir``), where a check-then-create let both through, so both were killed."""
    monkeypatch.setenv("RAGTRAIL_FAILPOINTS", "write.start")
    kills: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append(sig))
    together = threading.Barrier(2, timeout=10)
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kw):
        if self.name == ".failpoints":
            together.wait()
        return real_mkdir(self, *args, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    threads = [threading.Thread(target=locks.failpoint, args=("write.start", tmp_path)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(kills) == 1 and (tmp_path / ".failpoints" / "write.start").exists()
