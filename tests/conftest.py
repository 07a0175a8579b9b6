"""Test session set-up: one throw-away RAGTRAIL_HOME, an embedded Airflow, and shared pipeline runs.

Everything here is real: Airflow runs the DAG with ``dag.test``, the model is the bundled MiniLM,
Qdrant is local mode and MLflow a SQLite store. Expensive runs are session-scoped and shared.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

# Airflow reads its configuration at import: point it at a private home before anything imports it.
TEST_HOME = Path(tempfile.mkdtemp(prefix="ragtrail-tests-"))
os.environ["RAGTRAIL_HOME"] = str(TEST_HOME)
os.environ["RAGTRAIL_TASK_RETRIES"] = "0"
for var in ("MLFLOW_TRACKING_URI", "RAGTRAIL_TRACKING", "RAGTRAIL_QDRANT_URL", "AIRFLOW__CORE__DAGS_FOLDER"):
    os.environ.pop(var, None)

from ragtrail.airflow_home import prepare  # noqa: E402
from ragtrail.settings import SAMPLE_CORPUS, load  # noqa: E402

prepare()

REPO = Path(__file__).resolve().parents[1]
RAGTRAIL_BIN = str(Path(sys.executable).parent / "ragtrail")


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failed promise: turn any skip into a failing session."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and skipped:
        reporter.write_line(f"CI=true: {skipped} test(s) were skipped; failing the run", red=True)
        session.exitstatus = 1
    if exitstatus == 0:
        shutil.rmtree(TEST_HOME, ignore_errors=True)


def write_corpus(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create a small corpus: relative path → text or bytes."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``ragtrail`` command the way a user does."""
    return subprocess.run([RAGTRAIL_BIN, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd or REPO, timeout=600)


def ingest(conf: dict) -> dict:
    """Run rag_ingest in this process (``dag.test``) and return the roll-up summary."""
    from ragtrail.cli import run_ingest

    return run_ingest({"version": "v1", **conf})


@pytest.fixture(scope="session")
def settings():
    return load()


@pytest.fixture(scope="session")
def mlflow_client(settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.mlflow_tracking_uri)


# Small batches so that one sample run fans out over 3 chunk and 3 embed tasks.
HANDBOOK_CONF = {"source": str(SAMPLE_CORPUS), "product": "handbook", "docs_per_batch": 12, "texts_per_batch": 100}


@pytest.fixture(scope="session")
def handbook_run():
    """The sample corpus ingested once as product ``handbook``; many tests read it."""
    summary = ingest(HANDBOOK_CONF)
    assert summary["status"] == "FINISHED", summary
    return summary


@pytest.fixture(scope="session")
def qdrant(settings):
    """Open the local store only for the duration of a block (one client per folder at a time)."""
    from ragtrail.store import open_store

    return lambda: open_store(settings.qdrant_path)


def child_runs_of(client, summary: dict) -> list:
    return client.search_runs([summary["experiment_id"]], f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API on loopback (moto's server, started here, stopped by PID), reachable through the
    ``aws_default`` Airflow connection defined by ``AIRFLOW_CONN_AWS_DEFAULT``."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(TEST_HOME / "moto_server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {(TEST_HOME / 'moto_server.log').read_text()}") from None
            time.sleep(0.2)
    access_key, secret = "AKIARAGTRAILTEST", f"moto-secret-{uuid.uuid4().hex}"
    conn = {"conn_type": "aws", "login": access_key, "password": secret,
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    saved = os.environ.get("AIRFLOW_CONN_AWS_DEFAULT")
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(conn)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                          aws_secret_access_key=secret)
    try:
        yield SimpleNamespace(endpoint=endpoint, client=client, secret=secret, access_key=access_key)
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = saved
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def put_objects(client, bucket: str, objects: dict[str, bytes | str]) -> None:
    """Create ``bucket`` if needed and upload key → content (a few threads: moto answers one call at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)

    def put(kv):
        key, body = kv
        client.put_object(Bucket=bucket, Key=key, Body=body if isinstance(body, bytes) else body.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, objects.items()))
