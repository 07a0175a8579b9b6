"""``make ui`` / ``make stop``: Airflow and the MLflow UI on loopback, started and stopped by PID.

Starts, each in its own process group with its log under ``$RAGTRAIL_HOME/ui/logs/``:

- ``mlflow server`` on the data folder's MLflow store (the UI the "MLflow run" links open);
- Airflow's ``api-server`` (UI, REST API, the ragtrail plugin), ``scheduler`` (LocalExecutor, low
  parallelism), ``dag-processor`` and ``triggerer``, on the embedded SQLite home with the simple auth
  manager.

The PIDs (with their start times, so a recycled PID is never mistaken for ours) go to
``$RAGTRAIL_HOME/ui/state.json``; ``stop`` ends each recorded process's group and descendants,
politely first (SIGTERM) and by force (SIGKILL) only after a timeout, and nothing it did not record
(see :mod:`ragtrail.cli.processes`). Nothing here imports Airflow.

Example::

    RAGTRAIL_UI_AIRFLOW_PORT=8081 ragtrail ui start
    ragtrail ui stop
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ragtrail.core import env as core_env
from ragtrail.core import env_kit
from ragtrail.core.settings import load as load_settings

HOST = "127.0.0.1"


def _state_file() -> Path:
    return load_settings().home / "ui" / "state.json"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _alive(entry: dict):
    """The psutil process of a recorded entry, or ``None`` when it is gone (or the PID was reused)."""
    import psutil

    try:
        proc = psutil.Process(entry["pid"])
        if abs(proc.create_time() - entry["create_time"]) > 1 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(proc.args[:3])} exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our own loopback URL
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s (log: {log})")


def status() -> dict | None:
    """The recorded stack with each process's liveness, or ``None`` when none was started."""
    path = _state_file()
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    for entry in state["processes"]:
        entry["alive"] = _alive(entry) is not None
    return state


def password_file() -> Path:
    """Where the simple auth manager keeps the generated passwords (see ``airflow_home``)."""
    return load_settings().home / "airflow" / "simple_auth_manager_passwords.json"


def _password() -> str | None:
    path = password_file()
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


def start(airflow_port: int | None = None, mlflow_port: int | None = None, timeout: float = 180) -> dict:
    """Start the stack (or report the running one) and wait until both UIs answer.

    Returns:
        ``{"airflow_url", "mlflow_url", "processes", "logs"}`` (the login is in :func:`password_file`).
    """
    from ragtrail.cli.airflow_home import prepare

    current = status()
    if current and all(p["alive"] for p in current["processes"]):
        return current
    if current:
        stop()
    airflow_port = airflow_port or env_kit.UI_AIRFLOW_PORT.get()
    mlflow_port = mlflow_port or env_kit.UI_MLFLOW_PORT.get()
    for name, port, var in (("Airflow", airflow_port, env_kit.UI_AIRFLOW_PORT),
                            ("MLflow", mlflow_port, env_kit.UI_MLFLOW_PORT)):
        if not _port_free(port):
            raise RuntimeError(f"port {port} for {name} is in use on {HOST}; set {var.name} to a free one")
    airflow_url, mlflow_url = f"http://{HOST}:{airflow_port}", f"http://{HOST}:{mlflow_port}"
    prepare()
    settings = load_settings()
    env = {**os.environ, core_env.MLFLOW_UI_URL.name: mlflow_url,  # the links open the UI started here
           "AIRFLOW__API__BASE_URL": airflow_url,
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
           # MLflow 3's server also starts a pool of job workers (GenAI jobs) we never use.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           # The scheduler's and triggerer's log servers default to fixed ports (8793, 8794): another
           # Airflow on this machine would make them fail to bind, an ERROR in a healthy stack.
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())}
    Path(settings.mlflow_artifact_root).mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    commands = {
        "mlflow": [str(bin_dir / "mlflow"), "server", "--backend-store-uri", settings.mlflow_tracking_uri,
                   "--default-artifact-root", settings.mlflow_artifact_root,
                   "--artifacts-destination", settings.mlflow_artifact_root, "--host", HOST,
                   "--port", str(mlflow_port), "--workers", "1"],
        "api-server": [str(bin_dir / "airflow"), "api-server", "--host", HOST, "--port", str(airflow_port),
                       "--workers", "1"],
        "scheduler": [str(bin_dir / "airflow"), "scheduler"],
        "dag-processor": [str(bin_dir / "airflow"), "dag-processor"],
        # Deferred tasks need it, and the UI marks a missing triggerer unhealthy.
        "triggerer": [str(bin_dir / "airflow"), "triggerer"],
    }
    logs = settings.home / "ui" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    import psutil

    state = {"airflow_url": airflow_url, "mlflow_url": mlflow_url, "processes": [], "logs": str(logs)}
    procs = {}

    def launch(name: str) -> None:
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(commands[name], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=settings.home)
        procs[name] = proc
        state["processes"].append({"name": name, "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(),
                                   "log": str(logs / f"{name}.log")})
        _state_file().write_text(json.dumps(state, indent=1))

    try:
        launch("mlflow")
        launch("api-server")
        _wait_http(f"{mlflow_url}/health", procs["mlflow"], timeout, logs / "mlflow.log")
        _wait_http(f"{airflow_url}/api/v2/monitor/health", procs["api-server"], timeout, logs / "api-server.log")
        # Only now the scheduler: a task it starts reports to the API server's execution API at once, and a
        # scheduled run queued while that server was still starting failed ("Connection refused").
        state["api_ready_at"] = time.time()
        for name in ("scheduler", "dag-processor", "triggerer"):
            launch(name)
        for name in ("scheduler", "dag-processor", "triggerer"):
            if procs[name].poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {procs[name].returncode}; see {logs / name}.log")
    except Exception:
        stop()
        raise
    return state


def stop(timeout: float = 20) -> list[str]:
    """Stop the recorded processes, each with its process group and descendants. Returns what ended.

    Only what this data folder's ``start`` recorded and can still vouch for is touched: a PID whose
    create time no longer matches (the process is gone and the number reused) is skipped, and the
    rest is stopped by :func:`ragtrail.cli.processes.stop_groups`, with what a dead component left in its
    group — never by name or port.
    """
    from ragtrail.cli.processes import orphaned_group, stop_groups

    path = _state_file()
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    ours = [(entry, proc) for entry in reversed(state["processes"]) if (proc := _alive(entry)) is not None]
    # A component that died may have left workers behind in its group: they end too.
    orphaned = {e["pid"] for e in state["processes"] if _alive(e) is None and orphaned_group(e["pid"], e["create_time"])}
    left = stop_groups([proc for _, proc in ours], timeout, orphaned=orphaned)
    if left:
        raise RuntimeError("still running after SIGKILL: " + "; ".join(left))
    path.unlink()
    return [f"{entry['name']} (pid {entry['pid']})" for entry, _ in ours]


def main(argv: list[str]) -> int:
    """``ragtrail ui start|stop|status``."""
    action = argv[0] if argv else "start"
    if action == "start":
        try:
            state = start()
        except RuntimeError as err:
            print(f"ragtrail ui: {err}", file=sys.stderr)
            return 1
        print(f"Airflow  {state['airflow_url']}   (login: admin / {_password() or 'see ' + str(password_file())})")
        # the classic (model training) layout, as every link ragtrail makes (ragtrail.trail.names.CLASSIC_VIEW)
        print(f"MLflow   {state['mlflow_url']}/#/experiments?workflowType=machine_learning")
        print(f"Metrics  {state['airflow_url']}/ragtrail/metrics   (also Browse → RAG metrics in Airflow)")
        print(f"Logs     {state['logs']}")
        print("Stop with: make stop")
        return 0
    if action == "stop":
        try:
            ended = stop()
        except RuntimeError as err:
            print(f"ragtrail ui: {err}", file=sys.stderr)
            return 1
        print("stopped: " + (", ".join(ended) if ended else "nothing was running"))
        return 0
    if action == "status":
        state = status()
        if not state:
            print("not running")
            return 1
        for p in state["processes"]:
            print(f"{p['name']:<14} pid {p['pid']:<8} {'running' if p['alive'] else 'gone'}")
        return 0 if all(p["alive"] for p in state["processes"]) else 1
    print("usage: ragtrail ui start|stop|status", file=sys.stderr)
    return 2
