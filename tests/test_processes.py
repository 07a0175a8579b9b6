"""Stopping what a test started ends exactly that: its process group and descendants, never a bystander.

The bystanders stand for what issue 18 saw die: a server in pytest's own process group (moto was one)
and a `ragtrail` CLI a test runs, next to another test's component in a group of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import procs
import psutil
import pytest
from conftest import ingest, run_cli, write_corpus

# A leader with a child in its group and a grandchild that moved to a group of its own (as Airflow's task
# runners do); it writes their PIDs to the file it is given. "stubborn": leader and task ignore SIGTERM.
FAMILY = r"""
import os, signal, subprocess, sys, time
stubborn = sys.argv[2] == "stubborn"
if stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
task = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                         + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); " if stubborn else "") + "time.sleep(300)"],
                        process_group=0)
open(sys.argv[1], "w").write(f"{kid.pid} {task.pid}")
time.sleep(300)
"""


def _sleeper(**kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], **kwargs)


def _wait_file(path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.1)
    return path.read_text()


def _dead(proc) -> bool:
    """Exited: gone, or a zombie its new parent (init) has not reaped yet."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _entry(name: str, pid: int, dt: float = 0) -> dict:
    return {"name": name, "pid": pid, "create_time": psutil.Process(pid).create_time() + dt}


@pytest.fixture()
def bystanders():
    """A process in pytest's own group and one in a session of its own; both must outlive every stop."""
    same_group, own_group = _sleeper(), _sleeper(start_new_session=True)
    yield same_group, own_group
    for proc in (same_group, own_group):
        assert proc.poll() is None, f"bystander {proc.pid} was killed (exit {proc.returncode})"
        proc.kill()
        proc.wait()


def test_a_proc_stops_its_group_and_strays_and_nothing_else(tmp_path, bystanders):
    pids = tmp_path / "pids"
    leader = procs.Proc([sys.executable, "-c", FAMILY, str(pids), "stubborn"], name="family")
    kid, task = (psutil.Process(int(p)) for p in _wait_file(pids).split())
    assert os.getpgid(leader.pid) == leader.pid and os.getpgid(kid.pid) == leader.pid != os.getpgid(task.pid)
    leader.stop(timeout=2)  # leader and task ignore SIGTERM: SIGKILL after the timeout
    assert leader.exit_code() == -signal.SIGKILL
    assert _dead(kid) and _dead(task)
    leader.stop()  # a second stop is a no-op, not a signal to a recycled PID


def test_ui_stop_touches_only_what_it_recorded_and_can_vouch_for(tmp_path, bystanders):
    """A state file naming a process that is not what `ui start` recorded (other create time: the PID was
    reused), or one that leads no group of its own, is skipped; a recorded leader ends with its family, and
    a recorded leader that died leaves nothing behind in its group."""
    same_group, own_group = bystanders
    families = []
    for name in ("scheduler", "dead"):
        pids = tmp_path / name
        leader = subprocess.Popen([sys.executable, "-c", FAMILY, str(pids), "polite"], start_new_session=True)
        families.append((leader, [psutil.Process(int(p)) for p in _wait_file(pids).split()]))
    (scheduler, (kid, task)), (dead, (orphan, dead_task)) = families
    entries = [_entry("scheduler", scheduler.pid), _entry("dead", dead.pid),
               _entry("recycled", own_group.pid, dt=-50), _entry("not-a-leader", same_group.pid)]
    dead.kill()
    dead.wait()  # its child `orphan` is still in its group
    home = tmp_path / "home"
    (home / "ui").mkdir(parents=True)
    (home / "ui" / "state.json").write_text(json.dumps({"processes": entries}))
    try:
        proc = run_cli("ui", "stop", env={"RAGTRAIL_HOME": str(home)})
        assert proc.returncode == 0, proc.stderr
        assert scheduler.wait(10) == -signal.SIGTERM
        assert _dead(kid) and _dead(task) and _dead(orphan)
    finally:
        scheduler.kill()  # a no-op once it is reaped
        scheduler.wait()
        with contextlib.suppress(psutil.NoSuchProcess):
            dead_task.kill()  # it left the dead leader's group and tree: nothing can tell it is ours


def test_an_in_process_dag_run_leaves_sigterm_as_it_was(tmp_path):
    """Airflow's in-process task runner installs a SIGTERM handler (call on_kill, carry on) and never removes
    it; the caller — `ragtrail ingest`, or pytest itself — must still die of SIGTERM afterwards, or a group
    SIGTERM kills every helper of a test run (its moto server, its CLI runs) while pytest limps on."""
    before = signal.getsignal(signal.SIGTERM)
    summary = ingest({"source": str(write_corpus(tmp_path / "c", {"a.md": "One small document."})),
                      "product": "sigterm"})
    assert summary["status"] == "FINISHED", summary
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_session_guard_finds_a_left_over_process_and_the_test_that_started_it():
    """What conftest's session-end guard reports: found by the session token even outside pytest's tree."""
    stray = _sleeper(start_new_session=True)
    try:
        found = {proc.pid: (cmd, test) for proc, cmd, test in procs.survivors()}
        assert stray.pid in found and "time.sleep(300)" in found[stray.pid][0]
        assert found[stray.pid][1] == os.environ["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
    finally:
        stray.kill()
        stray.wait()
    assert stray.pid not in {proc.pid for proc, _, _ in procs.survivors()}
