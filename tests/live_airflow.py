"""A real Airflow on loopback for tests: api-server + scheduler + dag-processor + triggerer, LocalExecutor, SQLite.

Tasks run in their own processes, exactly as in production, so a test can SIGKILL one and watch the
scheduler retry it. Each component is a :class:`procs.Proc` (own process group, stopped by its handle),
with its own Airflow home, SQLite database and API port.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from procs import Proc, stop_all
from servers import free_port

from ragtrail.cli.airflow_home import airflow_env

BIN = Path(sys.executable).parent


class LiveAirflow:
    """Start with :meth:`start`, trigger DAG runs, wait for them, :meth:`stop`."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None, bin_dir: Path = BIN):
        self.home = home
        self.bin = bin_dir  # another venv's bin: Airflow with ragtrail installed from its wheel
        self.token: str | None = None
        self.port = free_port()
        self.env = {**os.environ, **airflow_env(home), **(extra_env or {})}
        self.env.update({
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "ragtrail-tests-only",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__PARALLELISM": "2",
            # The log servers default to fixed ports; another Airflow on the machine would hold them.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        })
        self.procs: dict[str, Proc] = {}
        self.db = Path(self.env["AIRFLOW_HOME"]) / "airflow.db"

    def _spawn(self, name: str, *args: str) -> None:
        self.procs[name] = Proc([str(self.bin / "airflow"), *args], name=name, log=self.home / f"{name}.log",
                                env=self.env, cwd=self.home)

    def start(self, dag_id: str, timeout: float = 240) -> LiveAirflow:
        subprocess.run([str(self.bin / "airflow"), "db", "migrate"], env=self.env, check=True, capture_output=True,
                       cwd=self.home)
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1")
        # The scheduler only once the API server listens: the tasks it starts report there at once.
        self._wait_up(None, timeout, poll_s=1, what="Airflow's API server")
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        self._spawn("triggerer", "triggerer")  # deferred tasks and asset watchers
        return self._wait_up(dag_id, timeout, poll_s=1, what="Airflow")

    def _wait_up(self, dag_id: str | None, timeout: float, poll_s: float, what: str) -> LiveAirflow:
        """Wait until the API server answers and (unless ``dag_id`` is None) the DAG is parsed; fail fast if a
        process exits.

        On failure everything started so far is stopped before the error propagates."""
        try:
            return self._wait(dag_id, timeout, poll_s, what)
        except BaseException:
            self.stop()
            raise

    def _wait(self, dag_id: str | None, timeout: float, poll_s: float, what: str) -> LiveAirflow:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if not proc.running:
                    raise RuntimeError(f"{name} exited with {proc.exit_code()}: {proc.tail()}")
            if self._api_up() and (dag_id is None or self._dag_parsed(dag_id)):
                return self
            time.sleep(poll_s)
        raise TimeoutError(f"{what} did not come up: " + self.logs())

    def _api_up(self) -> bool:
        """Our api-server listens on its port (not another session's server that took the port meanwhile)."""
        return self.procs["api-server"].listens_on(self.port)

    def _dag_parsed(self, dag_id: str) -> bool:
        if not self.db.exists():
            return False
        with sqlite3.connect(self.db) as con:
            try:
                return con.execute("select count(*) from dag where dag_id=?", (dag_id,)).fetchone()[0] > 0
            except sqlite3.OperationalError:
                return False

    def cli(self, *args: str) -> str:
        """Run ``airflow <args>`` against this Airflow; its stdout."""
        return subprocess.run([str(BIN / "airflow"), *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def trigger(self, dag_id: str, conf: dict) -> str:
        run_id = f"test__{time.time_ns()}"
        subprocess.run([str(self.bin / "airflow"), "dags", "trigger", dag_id, "--run-id", run_id, "--conf",
                        json.dumps(conf)], env=self.env, check=True, capture_output=True, cwd=self.home)
        return run_id

    def wait(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(self.db) as con:
                row = con.execute("select state from dag_run where dag_id=? and run_id=?", (dag_id, run_id)).fetchone()
            if row and row[0] in ("success", "failed"):
                return row[0]
            time.sleep(2)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout}s: " + self.logs())

    def task_tries(self, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str, int]]:
        with sqlite3.connect(self.db) as con:
            rows = con.execute("select task_id, map_index, state, try_number from task_instance "
                               "where dag_id=? and run_id=?", (dag_id, run_id)).fetchall()
        return {(t, m): (s, n) for t, m, s, n in rows}

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call the API server (``/api/v2/…``, or a plugin's ``/ragtrail/…``). With
        ``SIMPLE_AUTH_MANAGER_ALL_ADMINS`` (the default here) every request is an admin's; otherwise a JWT
        comes from ``POST /auth/token`` with the generated admin password."""
        import urllib.request

        def call(url: str, data: dict | None, token: str | None, verb: str) -> dict:
            req = urllib.request.Request(url, method=verb, data=None if data is None else json.dumps(data).encode(),
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")

        base = f"http://127.0.0.1:{self.port}"
        passwords = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        if self.token is None and passwords.exists():
            login = {"username": "admin", "password": json.loads(passwords.read_text())["admin"]}
            self.token = call(f"{base}/auth/token", login, None, "POST")["access_token"]
        return call(base + (path if path.startswith("/ragtrail") else f"/api/v2{path}"), body, self.token, method)

    def wait_deferral_drained(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """Wait until the scheduler has taken in the executor's event for the process that deferred ``task_id``.

        Airflow 3.3.2 fails a resumed task when that (stale) event is drained only after the resumed attempt
        is queued or running (apache/airflow#72716, fix open in #72767): answering an approval within seconds
        on a loaded machine hits it. Answer after this returns.
        """
        needle = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
        log = self.home / "scheduler.log"
        deadline = time.monotonic() + timeout
        while needle not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the scheduler never took in {task_id}'s deferral of {run_id}:\n" + self.logs())
            time.sleep(0.5)

    def report(self, dag_id: str, run_id: str, tail: int = 3000) -> str:
        """What a failed run left: each task's state and try, and the log tail of every task that did not succeed."""
        tries = self.task_tries(dag_id, run_id)
        lines = [f"{dag_id} {run_id}:"] + [f"  {t}[{m}] {s} (try {n})" for (t, m), (s, n) in sorted(tries.items())]
        folder = Path(self.env["AIRFLOW_HOME"]) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        for (task, _m), (state, _n) in sorted(tries.items()):
            if state in ("success", "skipped"):
                continue
            for log in sorted((folder / f"task_id={task}").rglob("*.log")):
                lines.append(f"--- {log.relative_to(folder)}\n" + log.read_text(errors="replace")[-tail:])
        return "\n".join(lines)

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n" + (self.home / f"{n}.log").read_text()[-1500:] for n in self.procs)

    def wait_for(self, what: str, fn, timeout: float = 240, poll: float = 1.0):
        """``fn()``'s first truthy value, asked every ``poll`` seconds; past ``timeout`` a TimeoutError naming
        ``what``, with the components' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"{what} after {timeout} s:\n" + self.logs())

    def stop(self) -> None:
        """Stop every component (their shutdowns overlap), each with its group and descendants."""
        stop_all(list(self.procs.values()))
