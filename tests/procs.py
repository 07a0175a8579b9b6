"""The one handle for every process a test starts: servers, Airflow components, workers, browsers.

A :class:`Proc` runs its command in a new session (its own process group, PGID = PID) and is
stopped only through that handle: :func:`ragtrail.cli.processes.stop_groups` on a leader that is our
unreaped child, so neither its PID nor its group id can have been recycled; descendants that left
the group (Airflow puts each task in a group of its own) are signalled through psutil, which checks
each one's create time first. Nothing is ever looked up by name, port or a PID we did not start.

Every process the test session starts, by any route, inherits ``RAGTRAIL_TEST_SESSION`` (set by
``conftest``) and ``PYTEST_CURRENT_TEST`` (the test that was running), so :func:`survivors` finds
what is still alive at the end, even a process that was re-parented out of our tree, and names
the test that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

SESSION_VAR = "RAGTRAIL_TEST_SESSION"
SESSION = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


# Resolved here, not in the forked child (which must not import anything before exec).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
PR_SET_PDEATHSIG = 1


def _die_with_pytest() -> None:
    """In the child before exec: SIGTERM when the thread that started it (pytest's main thread) dies, so a
    killed test run cannot leave servers behind in their own sessions."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" (", 1)[0]


class Proc:
    """One started process (and the group it leads). ``env`` is the whole environment (default: ours)."""

    def __init__(self, cmd: list[str], *, name: str | None = None, log: Path | None = None, env: dict | None = None,
                 cwd: str | Path | None = None):
        import psutil

        self.cmd = [str(c) for c in cmd]
        self.name = name or Path(self.cmd[0]).name
        self.log = log
        self.started_by = current_test()
        env = {**(os.environ if env is None else env), SESSION_VAR: SESSION}
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds its own copy
        try:
            main = threading.current_thread() is threading.main_thread()  # a worker thread may end first
            self.popen = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=_die_with_pytest if main else None)
        finally:
            if log:
                out.close()
        self.pid = self.popen.pid
        self.process = psutil.Process(self.pid)  # unreaped until stop(): the PID stays ours

    def exit_code(self) -> int | None:
        """``None`` while it runs; else its exit code (negative: killed by that signal). Does not reap it."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    @property
    def running(self) -> bool:
        return self.exit_code() is None

    def stop(self, timeout: float = 20) -> None:
        """End the process, its group and its descendants; then reap it. Idempotent."""
        stop_all([self], timeout)

    def listens_on(self, port: int) -> bool:
        """Whether this process or a descendant listens on ``port``: a free port picked earlier may have been
        taken by someone else's server meanwhile, and answering health checks is not proof it is ours."""
        import psutil

        try:
            family = [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        for proc in family:
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in proc.net_connections("tcp")):
                    return True
            except psutil.Error:
                pass
        return False

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log and self.log.exists() else ""

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid {self.pid} started by {self.started_by}>"


def stop_all(procs: list[Proc], timeout: float = 20) -> None:
    """Stop several handles at once (their shutdowns overlap); raise if anything outlived SIGKILL."""
    from ragtrail.cli.processes import stop_groups

    live = [p for p in procs if p.popen.returncode is None]
    left = stop_groups([p.process for p in live], timeout)
    for proc in live:
        proc.popen.wait(10)
    if left:
        raise RuntimeError(f"still running after stopping {[p.name for p in procs]}: {left}")


def survivors(exclude: set[int] = frozenset()) -> list[tuple[object, str, str]]:
    """Processes of this test session still alive: ``(psutil process, command line, test that started it)``.

    Found by the session token in their environment, so a process that was re-parented away from
    pytest (a daemon, an orphaned worker) is found too. This pytest process itself is left out.
    """
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid() or proc.pid in exclude:
            continue
        try:
            env = proc.environ()
            if env.get(SESSION_VAR) != SESSION or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append((proc, " ".join(proc.cmdline())[:300],
                          env.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]))
        except psutil.Error:
            pass
    return found
