"""The sandboxed parser's child process as a process: is it alive, reap it, and why it died.

Both checks keep the child's resource usage readable: liveness is asked with ``waitid(WNOWAIT)`` (``Popen.poll``
would reap a dead child and lose it), and the reaping is ``wait4``, which returns the child's peak RSS. That
peak tells a child that died at its memory budget from one that crashed: a native parser (PDFium) aborts when
an allocation fails under ``RLIMIT_AS`` and leaves no ``MemoryError`` to report (measured: a PDF bomb's child
aborted with exit code -6 at a peak of 244 / 394 / 794 MB under budgets of 250 / 400 / 800 MB). Linux keeps a
process's RSS high-water mark across ``exec``: a child starts with the one of the parent's forked copy, which
the child reports when it is ready, and only a peak above it is the child's own (:class:`.SandboxedParser`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from ragtrail.sources.parsed import ParseError, memory_limit

AT_BUDGET = 0.9  # a peak RSS within 10 % of the budget: the child ran out of memory


def alive(proc: subprocess.Popen) -> bool:
    """Whether the child still runs, without reaping it if it does not."""
    if proc.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def reap(proc: subprocess.Popen) -> tuple[int | None, float]:
    """Kill the child if it runs, reap it; its exit code and peak RSS in MB (0 when reaped elsewhere)."""
    if proc.returncode is not None:  # reaped already: its pid may be another process's by now
        return proc.returncode, 0.0
    with contextlib.suppress(ProcessLookupError):  # not proc.kill(): its poll() would reap the child first
        os.kill(proc.pid, signal.SIGKILL)  # a child that died is a zombie until reaped here: a no-op
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def died(code: int | None, peak_mb: float, max_memory_mb: int) -> ParseError:
    """Why the child died on a file: its memory budget when it died of a signal at that budget, else a crash."""
    if code is not None and code < 0 and peak_mb >= AT_BUDGET * max_memory_mb:
        return memory_limit(max_memory_mb, f"; the parser stopped at {peak_mb:.0f} MB, exit code {code}")
    return ParseError("parse_crashed", f"the parser process died on this file (exit code {code})")
