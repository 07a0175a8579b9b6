"""Cross-process locks and fail points.

Qdrant's local mode lets one process open a store at a time and *fails* the second; ragtrail waits
instead, so a search during an index run, or two tasks on one worker, queue up rather than crash.
The same lock file serialises writers of one product (see docs/pipeline.md, "Crash and retry safety").
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_TIMEOUT_S = float(os.environ.get("RAGTRAIL_LOCK_TIMEOUT_S", "900"))


@contextmanager
def file_lock(path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting up to ``timeout_s`` for it.

    The kernel drops the lock when the holder dies, SIGKILL included: no stale locks to clean up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout_s:.0f} s for {path}; another ragtrail process holds it") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def failpoint(name: str, workdir: str | Path) -> None:
    """Crash here (SIGKILL, once per work folder) when ``RAGTRAIL_FAILPOINTS`` names this point.

    Used by the fault-matrix tests to kill a real task at a precise step; free when the variable is unset.
    """
    wanted = os.environ.get("RAGTRAIL_FAILPOINTS")
    if not wanted or name not in wanted.split(","):
        return
    marker = Path(workdir) / ".failpoints" / name
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)
