"""Cross-process locks and fail points.

Qdrant's local mode lets one process open a store at a time and *fails* the second; ragtrail waits
instead, so a search during an index run, or two tasks on one worker, queue up rather than crash.
The same lock file serialises writers of one product (see docs/pipeline.md, "Crash and retry safety").
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtrail.core import env

DEFAULT_TIMEOUT_S = env.LOCK_TIMEOUT_S.get()


@contextmanager
def file_lock(path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``filelock``'s ``flock``), waiting up to ``timeout_s`` for it.

    The kernel drops an ``flock`` when its holder dies, SIGKILL included: no stale locks to clean up.
    So the soft (marker-file) fallback is refused, and the lock file is kept rather than unlinked (an
    unlink races a waiter that already opened it). Raises ``TimeoutError`` after ``timeout_s``.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=timeout_s, poll_interval=0.2, thread_local=False, fallback_to_soft=False,
                    preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise TimeoutError(f"waited {timeout_s:.0f} s for {path}; another ragtrail process holds it") from None
    try:
        yield
    finally:
        lock.release()


def failpoint(name: str, workdir: str | Path) -> None:
    """Crash here (SIGKILL, once per work folder) when ``RAGTRAIL_FAILPOINTS`` names this point.

    Used by the fault-matrix tests to kill a real task at a precise step; free when the variable is unset.
    """
    wanted = env.FAILPOINTS.get()
    if not wanted or name not in wanted.split(","):
        return
    marker = Path(workdir) / ".failpoints" / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:  # created exclusively: of two writers reaching the point at once, only one dies
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
