"""The docker-compose stack as processes on loopback: CeleryExecutor on PostgreSQL + Redis, two Celery
workers, an MLflow tracking server on PostgreSQL with its artifacts in S3.

The two workers share no folder: each has its own ``RAGTRAIL_HOME``, Airflow home, log folder and
``TMPDIR`` (under ``home/<worker>``), as on two hosts. Stage files cross through the work store
(``work_url``, S3); ``worker1`` alone also serves the store queue (``RAGTRAIL_STORE_QUEUE``), so the
plan, index and evaluate tasks find the local-mode Qdrant store in its home.

PostgreSQL and Redis are the machine's (127.0.0.1:5432, user postgres, trust auth; 127.0.0.1:6379): the
cluster gets fresh databases (dropped at :meth:`LiveCluster.stop`) and its own Celery queue and Redis
DB, so clusters of concurrent sessions never see each other's work. Everything else is started here
as a :class:`procs.Proc` and stopped by its handle.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from live_airflow import BIN, LiveAirflow
from procs import Proc
from servers import free_port, wait_http

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
POOL, POOL_SLOTS = "ragtrail_cpu", 2


def services_missing() -> str | None:
    """Why the machine cannot host a cluster (PostgreSQL or Redis not answering), or ``None``."""
    for name, addr in (("PostgreSQL", (PG["host"], PG["port"])), ("Redis", REDIS)):
        try:
            socket.create_connection(addr, timeout=2).close()
        except OSError as err:
            return f"{name} not reachable at {addr[0]}:{addr[1]}: {err}"
    return None


def _pg(sql: str, dbname: str = "postgres") -> None:
    import psycopg2

    con = psycopg2.connect(dbname=dbname, **PG)
    con.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with con.cursor() as cur:
            cur.execute(sql)
    finally:
        con.close()


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


class LiveCluster(LiveAirflow):
    """Airflow (api-server, scheduler, dag-processor, two Celery workers) + an MLflow server."""

    def __init__(self, home: Path, s3_endpoint: str, s3_keys: tuple[str, str], artifact_bucket: str,
                 extra_env: dict[str, str] | None = None, work_url: str | None = None):
        tag = uuid.uuid4().hex[:10]
        self.airflow_db, self.mlflow_db = f"ragtrail_ci_{tag}", f"ragtrail_ci_{tag}_mlflow"
        self.queue, self.store_queue = f"ragtrail_ci_{tag}", f"ragtrail_ci_{tag}_store"
        self.work_url = work_url
        self.mlflow_port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        self.s3_env = {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": s3_keys[0],
                       "AWS_SECRET_ACCESS_KEY": s3_keys[1], "AWS_DEFAULT_REGION": "us-east-1"}
        self.artifact_bucket = artifact_bucket
        self.created_dbs: list[str] = []
        pg_url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.airflow_db}"
        super().__init__(home, {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{int(tag, 16) % 15 + 1}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "ragtrail_airflow.celery_config.CELERY_CONFIG",  # as compose
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CORE__PARALLELISM": "4",
            # A dead worker's tasks are found within seconds, not Airflow's 5 minutes: a running task instance
            # whose supervisor stopped heartbeating (every 5 s at most) for 30 s is failed and retried, after
            # RAGTRAIL_RETRY_DELAY_S. A task whose Celery message a dead worker took but never started stays
            # queued (acks_late: the message is restored only after the broker's visibility timeout) until
            # task_queued_timeout requeues it.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "150",
            "RAGTRAIL_TASK_RETRIES": "1",  # the product's default (the test session's is 0)
            "RAGTRAIL_RETRY_DELAY_S": "2",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "RAGTRAIL_CPU_POOL": POOL,
            "RAGTRAIL_STORE_QUEUE": self.store_queue,
            **({"RAGTRAIL_WORK_URL": work_url, "RAGTRAIL_WORK_CONN_ID": "aws_default"} if work_url else {}),
            **(extra_env or {}),
        })
        # A real login through the simple auth manager, not all-admins.
        self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
        self.api = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None

    def start(self, dag_id: str, timeout: float = 420) -> LiveCluster:
        for db in (self.airflow_db, self.mlflow_db):
            _pg(f'CREATE DATABASE "{db}"')
            self.created_dbs.append(db)
        self._start_mlflow()
        self._airflow("db", "migrate")
        self._airflow("pools", "set", POOL, str(POOL_SLOTS), "chunk/embed tasks")
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1")
        self._wait_up(None, timeout, poll_s=2, what="the cluster's API server")  # before anything runs a task
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        for name, queues in (("worker1", f"{self.queue},{self.store_queue}"), ("worker2", self.queue)):
            # Both workers on one host: distinct Celery names and no log server (they would share its port).
            self.procs[name] = Proc([str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h",
                                     "--concurrency", "1", "--queues", queues, "--skip-serve-logs"],
                                    name=name, log=self.home / f"{name}.log", env=self.worker_env(name))
        return self._wait_up(dag_id, timeout, poll_s=2, what="cluster")

    def worker_home(self, name: str) -> Path:
        """The one folder a worker writes (its RAGTRAIL_HOME, Airflow home, logs, temp files)."""
        return self.home / name

    def worker_env(self, name: str) -> dict[str, str]:
        home = self.worker_home(name)
        (home / "airflow" / "plugins").mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir(exist_ok=True)
        return {**self.env, "RAGTRAIL_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "airflow" / "plugins"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "airflow" / "logs"), "TMPDIR": str(home / "tmp")}

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a worker as if its host died: its process group and every descendant (each Airflow task runs
        in a group of its own), no chance to clean up. Returns the PIDs killed."""
        import psutil

        proc = self.procs[name]
        family = [proc.process, *proc.process.children(recursive=True)]
        os.killpg(proc.pid, signal.SIGKILL)
        for member in family[1:]:  # psutil checks each one's create time: never a recycled PID
            try:
                member.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.popen.wait(30)
        return [m.pid for m in family]

    def _airflow(self, *args: str) -> None:
        proc = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")

    def _start_mlflow(self, timeout: float = 180) -> None:
        self.procs["mlflow-server"] = Proc(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port), "--workers", "1",
             "--backend-store-uri", f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.mlflow_db}",
             "--serve-artifacts", "--artifacts-destination", f"s3://{self.artifact_bucket}/"],
            name="mlflow-server", log=self.home / "mlflow-server.log",
            env={**os.environ, **self.s3_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        wait_http(f"{self.mlflow_url}/health", self.procs["mlflow-server"], timeout)

    def _login(self) -> str:
        if self.token is None:
            passwords = json.loads(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
            self.token = _http("POST", f"{self.api}/auth/token",
                               {"username": "admin", "password": passwords["admin"]})["access_token"]
        return self.token

    def rest(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call Airflow's REST API (``/api/v2/…``) with a JWT from ``POST /auth/token``."""
        return _http(method, f"{self.api}/api/v2{path}", body, self._login())

    def _dag_parsed(self, dag_id: str) -> bool:
        try:
            return self.rest("GET", f"/dags/{dag_id}")["dag_id"] == dag_id
        except (urllib.error.URLError, OSError, FileNotFoundError, KeyError, json.JSONDecodeError):
            return False

    def trigger(self, dag_id: str, conf: dict) -> str:
        run_id = f"cluster__{time.time_ns()}"
        self.rest("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
        return run_id

    def wait(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout}s: " + self.logs())

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"):
        """A task's XCom (by default its return value) as the REST API shows it."""
        return self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                f"{key}?map_index={map_index}")["value"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]

    def worker_log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text()

    def stop(self) -> None:
        super().stop()
        for db in self.created_dbs:
            _pg(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
            _pg(f'DROP DATABASE IF EXISTS "{db}"')
        self.created_dbs.clear()
