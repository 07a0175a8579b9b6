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


def _table() -> dict[int, tuple]:
    """pid → (psutil process, ppid, pgid) of every live process, from one pass over /proc."""
    import psutil

    table = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE:
                table[proc.pid] = (proc, proc.info["ppid"], os.getpgid(proc.pid))
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return table


def orphaned_group(pgid: int, create_time: float) -> bool:
    """Whether ``pgid`` is still the group that the leader started at ``create_time`` made, now that the
    leader is gone: a group id can only be created by the process whose PID it is, so while no *other*
    process holds that PID, whoever is left in the group was started by that leader."""
    import psutil

    try:
        return abs(psutil.Process(pgid).create_time() - create_time) <= 1
    except psutil.NoSuchProcess:
        return True


class _Family:
    """Everything seen so far in some process groups and in the trees below them, by (pid, create time)."""

    def __init__(self, leaders: list, groups: set[int]):
        self.leaders = leaders
        self.groups = groups | {leader.pid for leader in leaders}
        self.members: dict[tuple[int, float], object] = {}

    def collect(self) -> None:
        import psutil

        table = _table()
        found = [proc for proc, _, pgid in table.values() if pgid in self.groups]
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [p.pid for p in [*self.leaders, *found, *self.members.values()] if _running(p)]
        while stack:  # descendants that left the group (a task in a group of its own) are ours too
            for pid in children.pop(stack.pop(), []):
                found.append(table[pid][0])
                stack.append(pid)
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


def stop_groups(leaders: list, timeout: float = 20, grace: float = 5, orphaned: set[int] = frozenset(),
                child_grace: float = 6) -> list[str]:
    """End the groups these leaders lead, and all their descendants. Returns what survived (normally none).

    ``orphaned``: ids of groups whose leader is gone, checked with :func:`orphaned_group`; what is left
    in them ends too. SIGTERM to all; the leaders' children and descendants get ``child_grace`` seconds
    (then SIGKILL), a leader ``timeout`` seconds to exit; once it has, or then, SIGKILL for every process
    left in its group and tree, which get ``grace`` seconds to vanish.
    """
    leaders = [p for p in leaders if _is_leader(p)]
    leader_pids = {p.pid for p in leaders}
    family = _Family(leaders, set(orphaned))
    family.collect()
    family.signal(signal.SIGTERM)
    start = time.monotonic()
    while any(_running(p) for p in leaders) and time.monotonic() < start + timeout:
        time.sleep(0.2)
        before = set(family.members)
        family.collect()
        if set(family.members) - before:  # started after the first round (a respawned worker, a task)
            family.signal(signal.SIGTERM)
        if time.monotonic() > start + child_grace:
            # An idle LocalExecutor worker ignores SIGTERM, and its scheduler waits for it.
            _kill([p for p in family.members.values() if p.pid not in leader_pids])
    family.collect()
    family.signal(signal.SIGKILL)
    deadline = time.monotonic() + grace
    while family.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        family.collect()
        family.signal(signal.SIGKILL)
    return [f"pid {p.pid}: {' '.join(_cmdline(p))[:200]}" for p in family.alive()]


def _kill(procs: list) -> None:
    import psutil

    for proc in procs:
        try:
            if _running(proc):
                proc.kill()  # psutil: only if the PID still names that process
        except psutil.NoSuchProcess:
            pass


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return ["?"]
