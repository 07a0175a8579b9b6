"""Speak MLflow: experiments per product, one parent run per DAG run, one child run per task try.

This module is the only one in ragtrail that imports ``mlflow`` (always inside functions, so parsing a
DAG or starting the CLI stays cheap). Everything goes through ``MlflowClient`` with explicit run ids
rather than the fluent API's process-global "active run", because one process may serve many tasks.

Example::

    from ragtrail_airflow.tracking import TaskRun
    with TaskRun(dag_id="rag_ingest", run_id="manual__1", task_id="chunk", product="handbook",
                 version="v1") as run:
        run.recorder.metric(chunk_count=42)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from ragtrail.recorder import Recorder
from ragtrail.settings import load as load_settings

ROLE_TAG, DAG_TAG, RUN_TAG, TASK_TAG = "ragtrail.role", "airflow.dag_id", "airflow.run_id", "airflow.task_id"
TRY_TAG, MAP_TAG, STAGE_TAG = "airflow.try_number", "airflow.map_index", "ragtrail.stage"
PRODUCT_TAG, VERSION_TAG, STATUS_TAG = "ragtrail.product", "ragtrail.version", "ragtrail.status"
PARENT_TAG = "mlflow.parentRunId"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|auth", re.I)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def redact(key: str, value: Any) -> str:
    """Never let a secret reach a param or tag: mask secret-looking keys and URI credentials."""
    if _SECRET_KEY.search(key):
        return "***"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _configure_client_env() -> None:
    # A dead tracking server must not stall a task for minutes (MLflow's default retries take ~4 min).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def get_client():
    """An ``MlflowClient`` on the configured store (``MLFLOW_TRACKING_URI`` or the data folder's SQLite)."""
    _configure_client_env()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=load_settings().mlflow_tracking_uri)


def experiment_name(product: str) -> str:
    return f"{load_settings().experiment_prefix}/{product}"


def get_or_create_experiment(client, product: str) -> str:
    """Return the product's experiment id, creating it with an explicit artifact location."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(product)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = load_settings().mlflow_artifact_root.rstrip("/")
    try:
        return client.create_experiment(name, artifact_location=f"{root}/{product}",
                                        tags={"ragtrail.product": product})
    except MlflowException:  # another task created it a moment ago
        return client.get_experiment_by_name(name).experiment_id


def _q(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_parent(client, experiment_id: str, dag_id: str, run_id: str):
    """The parent run of a DAG run, or ``None``; if a race made two, the oldest one wins."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE_TAG}` = 'parent' and tags.`{DAG_TAG}` = {_q(dag_id)} and tags.`{RUN_TAG}` = {_q(run_id)}",
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else None


# How long a freshly created parent may still lose to a concurrent twin whose insert is not yet
# visible. Only the first task(s) of a DAG run ever wait for it.
PARENT_SETTLE_S = float(os.environ.get("RAGTRAIL_PARENT_SETTLE_S", "0.3"))


def _settled_parent(client, experiment_id: str, dag_id: str, run_id: str):
    """Find the parent; if the oldest candidate is younger than the settle window, wait and look again."""
    found = find_parent(client, experiment_id, dag_id, run_id)
    if found is not None:
        age = time.time() - found.info.start_time / 1000
        if age < PARENT_SETTLE_S:
            time.sleep(PARENT_SETTLE_S - age)
            found = find_parent(client, experiment_id, dag_id, run_id)
    return found


def find_or_create_parent(client, experiment_id: str, *, dag_id: str, run_id: str, tags: dict,
                          params: dict | None = None) -> str:
    """Return the run id of the DAG run's parent run, creating it once.

    Idempotent across retries and processes: the parent is found by its tags. Tasks racing to create
    it may each create one; every caller then waits out a short settle window, re-reads, and all agree
    on the oldest (start time, then run id); the losers delete their own. :func:`merge_parents` mends
    whatever a slower race left behind.
    """
    found = _settled_parent(client, experiment_id, dag_id, run_id)
    if found is not None:
        return found.info.run_id
    run = client.create_run(experiment_id, run_name=f"{dag_id} {run_id}",
                            tags={**tags, ROLE_TAG: "parent", DAG_TAG: dag_id, RUN_TAG: run_id})
    winner = _settled_parent(client, experiment_id, dag_id, run_id)
    if winner is not None and winner.info.run_id != run.info.run_id:
        client.delete_run(run.info.run_id)
        return winner.info.run_id
    log_recorder(client, run.info.run_id, Recorder(params={k: redact(k, v) for k, v in (params or {}).items()}))
    return run.info.run_id


def merge_parents(client, experiment_id: str, dag_id: str, run_id: str) -> str | None:
    """Fold duplicate parents of one DAG run into the oldest: re-point their children, delete them."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE_TAG}` = 'parent' and tags.`{DAG_TAG}` = {_q(dag_id)} and tags.`{RUN_TAG}` = {_q(run_id)}",
        max_results=100,
    )
    if not runs:
        return None
    winner, *losers = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
    for loser in losers:
        for child in child_runs(client, experiment_id, loser.info.run_id):
            client.set_tag(child.info.run_id, PARENT_TAG, winner.info.run_id)
        client.delete_run(loser.info.run_id)
    return winner.info.run_id


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_recorder(client, run_id: str, rec: Recorder) -> None:
    """Write a stage's params, metrics, tags and artifacts in as few calls as MLflow's limits allow."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    now = int(time.time() * 1000)
    params = [Param(k[:250], redact(k, v)[:6000]) for k, v in rec.params.items()]
    metrics = [Metric(_BAD_KEY.sub("_", k)[:250], float(v), now, 0) for k, v in rec.metrics.items()]
    tags = [RunTag(k[:250], redact(k, v)[:5000]) for k, v in rec.tags.items()]
    for i, batch in enumerate(_chunks(params, 100)):
        client.log_batch(run_id, params=batch, metrics=metrics[:900] if i == 0 else (), tags=tags if i == 0 else ())
    if not params:
        client.log_batch(run_id, metrics=metrics[:900], tags=tags)
    for batch in _chunks(metrics[900:], 900):
        client.log_batch(run_id, metrics=batch)
    for path, artifact_path in rec.files:
        if Path(path).exists():
            client.log_artifact(run_id, str(path), artifact_path)
    if rec.dicts:
        with tempfile.TemporaryDirectory() as tmp:
            for name, obj in rec.dicts.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)  # "tuning/best.json"
                (Path(tmp) / name).write_text(json.dumps(obj, indent=1, default=str))
            client.log_artifacts(run_id, tmp)
    if rec.datasets:
        client.log_inputs(run_id, datasets=[
            DatasetInput(Dataset(name=d["name"], digest=d["digest"], source_type=_source_type(d["source"]),
                                 source=json.dumps({"uri": redact("source", d["source"])}),
                                 profile=json.dumps(d["profile"])),
                         tags=[InputTag("mlflow.data.context", "ingest")])
            for d in rec.datasets
        ])
    for name, rows in rec.tables.items():  # MLflow's table artifact: the UI's evaluation view reads it
        import pandas as pd

        client.log_table(run_id, data=pd.DataFrame(rows), artifact_file=name)
    rec.params.clear(), rec.metrics.clear(), rec.tags.clear(), rec.files.clear(), rec.dicts.clear()
    rec.datasets.clear(), rec.tables.clear()


def _source_type(uri: str) -> str:
    return "s3" if uri.startswith("s3://") else "local"


class TaskRun:
    """One MLflow child run for one try of one task, nested under the DAG run's parent.

    Use as a context manager: on a clean exit the run ends FINISHED, on an exception FAILED (and the
    exception propagates); :meth:`kill` ends it KILLED. Whatever the stage recorded before failing
    is still logged, so a failed run shows how far it got.
    """

    def __init__(self, *, dag_id: str, run_id: str, task_id: str, product: str, version: str,
                 try_number: int = 1, map_index: int = -1, stage: str | None = None,
                 parent_params: dict | None = None):
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.product, self.version = product, version
        self.try_number, self.map_index = try_number, map_index
        self.stage = stage or task_id
        self.parent_params = parent_params or {}
        self.recorder = Recorder()
        self.client = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.mlflow_run_id: str | None = None
        self.ended = False

    def start(self) -> TaskRun:
        self.client = get_client()
        self.experiment_id = get_or_create_experiment(self.client, self.product)
        common = {PRODUCT_TAG: self.product, VERSION_TAG: self.version}
        self.parent_run_id = find_or_create_parent(
            self.client, self.experiment_id, dag_id=self.dag_id, run_id=self.run_id,
            tags=common, params=self.parent_params)
        name = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            **common, PARENT_TAG: self.parent_run_id, ROLE_TAG: "task", DAG_TAG: self.dag_id,
            RUN_TAG: self.run_id, TASK_TAG: self.task_id, TRY_TAG: str(self.try_number),
            MAP_TAG: str(self.map_index), STAGE_TAG: self.stage})
        self.mlflow_run_id = run.info.run_id
        return self

    def flush(self) -> None:
        if self.mlflow_run_id:
            log_recorder(self.client, self.mlflow_run_id, self.recorder)

    def end(self, status: str) -> None:
        """Log what is left and terminate the run; later calls are no-ops (first status wins)."""
        if not self.mlflow_run_id or self.ended:
            return
        self.ended = True
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.mlflow_run_id, status)

    def kill(self) -> None:
        self.end("KILLED")

    def __enter__(self) -> TaskRun:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.recorder.tag(**{"ragtrail.error": f"{exc_type.__name__}: {exc}"[:4000]})
        self.end("FAILED" if exc is not None else "FINISHED")


def log_nested_run(client, experiment_id: str, parent_run_id: str, name: str, rec: Recorder,
                   role: str = "trial") -> str:
    """Log a finished nested run (e.g. one tuning trial) under ``parent_run_id``; return its id."""
    run = client.create_run(experiment_id, run_name=name, tags={PARENT_TAG: parent_run_id, ROLE_TAG: role})
    try:
        log_recorder(client, run.info.run_id, rec)
    finally:
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def child_runs(client, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a parent, all tries, oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = {_q(parent_run_id)}",
                                  max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs
