"""Stop process groups we started, and nothing else.

Every long-running process ragtrail starts (``ragtrail ui start``, the test harness) is started in
a new session, so it leads its own process group (PGID = its PID). :func:`stop_groups` ends such a
group and every descendant of its leader, also those that moved to a group of their own (Airflow
runs each task in one):

- the caller vouches for each leader: a ``psutil.Process`` made from a PID it recorded, whose
  create time it checked (``psutil`` re-checks it before every signal, so a recycled PID is never
  signalled), or a child it has not reaped yet (its PID cannot be recycled);
- ``killpg`` is used only while the leader is still that process, so the group id is still ours;
  after that, every member and descendant seen so far is signalled one by one through psutil;
- SIGTERM first; once a leader is gone, or after ``timeout``, SIGKILL for whatever is left.

Nothing here looks processes up by name or port. Nothing imports Airflow.
"""

from __future__ import annotations

import os
import signal
import time


def _running(proc) -> bool:
    """Alive and still the same process; a zombie has exited (its parent just did not reap it)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_leader(proc) -> bool:
    """Still the process we started (psutil checks the create time) and the leader of its group."""
    import psutil

    try:
        return proc.is_running() and os.getpgid(proc.pid) == proc.pid
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def group_members(pgid: int) -> list:
    """The live processes whose process group is ``pgid``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


class _Family:
    """Everything seen so far in the groups and trees of some leaders, by (pid, create time)."""

    def __init__(self, leaders: list):
        self.leaders = leaders
        self.members: dict[tuple[int, float], object] = {}

    def collect(self) -> None:
        import psutil

        for leader in self.leaders:
            found = list(group_members(leader.pid))
            if _running(leader):
                try:
                    found += leader.children(recursive=True)
                except psutil.NoSuchProcess:
                    pass
            for proc in found:
                try:
                    self.members.setdefault((proc.pid, proc.create_time()), proc)
                except psutil.NoSuchProcess:
                    pass

    def signal(self, sig: int) -> None:
        import psutil

        for leader in self.leaders:
            if _is_leader(leader):
                try:
                    os.killpg(leader.pid, sig)
                except ProcessLookupError:
                    pass
        for proc in self.members.values():
            try:
                proc.send_signal(sig)  # psutil: only if the PID still names that process
            except psutil.NoSuchProcess:
                pass

    def alive(self) -> list:
        return [p for p in [*self.leaders, *self.members.values()] if _running(p)]


def stop_groups(leaders: list, timeout: float = 20, grace: float = 5) -> list[str]:
    """End the groups these leaders lead, and all their descendants. Returns what survived (normally none).

    SIGTERM to all; a leader gets ``timeout`` seconds to exit; once it has, or then, SIGKILL for every
    process left in its group and tree, which get ``grace`` seconds to vanish.
    """
    leaders = [p for p in leaders if _is_leader(p)]
    family = _Family(leaders)
    family.collect()
    family.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in leaders) and time.monotonic() < deadline:
        time.sleep(0.2)
        before = set(family.members)
        family.collect()
        if set(family.members) - before:  # started after the first round (a respawned worker, a task)
            family.signal(signal.SIGTERM)
    family.collect()
    family.signal(signal.SIGKILL)
    deadline = time.monotonic() + grace
    while family.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        family.collect()
        family.signal(signal.SIGKILL)
    return [f"pid {p.pid}: {' '.join(_cmdline(p))[:200]}" for p in family.alive()]


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return ["?"]
