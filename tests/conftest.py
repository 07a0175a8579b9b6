"""Test session set-up: one throw-away RAGTRAIL_HOME, an embedded Airflow, and shared pipeline runs.

Everything here is real: Airflow runs the DAG with ``dag.test``, the model is the bundled MiniLM,
Qdrant is local mode and MLflow a SQLite store. Expensive runs are session-scoped and shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import procs
import pytest
import schema_memo
from servers import moto_server

# Airflow reads its configuration at import: point it at a private home before anything imports it.
TEST_HOME = Path(tempfile.mkdtemp(prefix="ragtrail-tests-"))
os.environ["RAGTRAIL_HOME"] = str(TEST_HOME)
os.environ["RAGTRAIL_TASK_RETRIES"] = "0"
# Every data folder a test makes shares one ONNX export of the model (it takes a minute to make).
os.environ.setdefault("RAGTRAIL_MODEL_CACHE", str(TEST_HOME / "models"))
for var in ("MLFLOW_TRACKING_URI", "RAGTRAIL_TRACKING", "RAGTRAIL_QDRANT_URL", "AIRFLOW__CORE__DAGS_FOLDER"):
    os.environ.pop(var, None)
# Every process this session starts, by any route, inherits the token: the end-of-session guard finds them by it.
os.environ[procs.SESSION_VAR] = procs.SESSION


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# SIGTERM (a CI cancel, a timeout) stops the session like Ctrl-C: fixtures tear down, servers stop, the guard runs.
signal.signal(signal.SIGTERM, _interrupt)
schema_memo.install()  # the in-process dag.test runs: each Param schema checked against the metaschema once

from ragtrail.cli.airflow_home import prepare  # noqa: E402
from ragtrail.core.settings import SAMPLE_CORPUS, load  # noqa: E402

prepare()

REPO = Path(__file__).resolve().parents[1]
RAGTRAIL_BIN = str(Path(sys.executable).parent / "ragtrail")


# With several workers (make test: pytest-xdist, whole files each) the longest files start first, so that none
# is left running alone at the end; the trail tests lead (they share the session's MLflow store with CLI
# processes and stay clear of the in-process runs). Within a file the order is the file's own.
FIRST = ("tests/include/trail/", "tests/test_incremental.py", "tests/test_local_ui.py", "tests/test_lifecycle_live.py",
         "tests/test_fault_matrix.py", "tests/test_provider_wheel.py", "tests/test_cluster.py", "tests/test_cli.py",
         "tests/test_pipeline.py", "tests/test_evaluate.py", "tests/test_mlflow_outage.py",
         "tests/test_work_store_pipeline.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, prefix in enumerate(FIRST) if path.startswith(prefix)), len(FIRST))

    items.sort(key=rank)  # stable: the rest keep their collection order


@pytest.hookimpl(trylast=True)  # after the runner has torn down the session fixtures
def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a test left a process running, or (in CI) if any test was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    _fail_on_leftover_processes(session, reporter)
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and skipped:
        reporter.write_line(f"CI=true: {skipped} test(s) were skipped; failing the run", red=True)
        session.exitstatus = 1
    if session.exitstatus == 0:
        shutil.rmtree(TEST_HOME, ignore_errors=True)


def _fail_on_leftover_processes(session, reporter) -> None:
    """A process started by a test (by any route) still alive: name it and the test, fail, then end it."""
    import psutil

    left = procs.survivors()
    if not left:
        return
    lines = [f"{len(left)} process(es) started by tests outlived the session:"]
    lines += [f"  pid {p.pid} started by {test}: {cmd}" for p, cmd, test in left]
    if reporter:
        reporter.ensure_newline()
    for line in lines:
        if reporter:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    session.exitstatus = 1
    for proc, _, _ in left:  # ours by the session token in their environment; psutil re-checks the create time
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs([p for p, _, _ in left], timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


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
    from ragtrail.cli.main import run_ingest

    return run_ingest({"version": "v1", **conf})


@pytest.fixture(scope="session")
def settings():
    return load()


@pytest.fixture(scope="session")
def mlflow_client(settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.mlflow_tracking_uri)


# Small batches so that one sample run fans out over 3 chunk and 3 embed tasks.
HANDBOOK_CONF = {"source": str(SAMPLE_CORPUS), "product": "handbook", "docs_per_batch": 12, "texts_per_batch": 60}


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


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API on loopback (moto's server, a :class:`procs.Proc` stopped by its handle), reachable through the
    ``aws_default`` Airflow connection defined by ``AIRFLOW_CONN_AWS_DEFAULT``."""
    import boto3

    server = moto_server(TEST_HOME).start()
    endpoint = server.url
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
        server.stop()


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
