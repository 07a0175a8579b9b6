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
import logging
import os
import re
import tempfile
import time
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragtrail.products import artifact_location, experiment_name, product_id
from ragtrail.recorder import Recorder
from ragtrail.settings import load as load_settings
from ragtrail_airflow.resilience import STRICT_NOTE, Guard, GuardedClient, Policy, TrackingError

log = logging.getLogger(__name__)

ROLE_TAG, DAG_TAG, RUN_TAG, TASK_TAG = "ragtrail.role", "airflow.dag_id", "airflow.run_id", "airflow.task_id"
TRY_TAG, MAP_TAG, STAGE_TAG = "airflow.try_number", "airflow.map_index", "ragtrail.stage"
PRODUCT_TAG, VERSION_TAG, STATUS_TAG = "ragtrail.product", "ragtrail.version", "ragtrail.status"
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG, ERROR_TAG, ERROR_CLASS_TAG = "ragtrail.kind", "ragtrail.error", "ragtrail.error_class"
URL_TAG, NOTE_TAG = "airflow.url", "mlflow.note.content"
# MLflow 3 opens an experiment without this tag in its GenAI view, which has no metrics or params
# tables for pipeline runs; "custom_model_development" is its classic "model training" view.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# The TaskRun of the tracked task running in this context: @track nests its runs under it.
CURRENT_TASK_RUN: ContextVar[TaskRun | None] = ContextVar("ragtrail_current_task_run", default=None)
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
    # A dead tracking server must not stall a caller for minutes (MLflow's default retries take
    # ~4 min). Guarded clients set these per call; these defaults cover unguarded use.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def get_client():
    """An ``MlflowClient`` on the configured store (``MLFLOW_TRACKING_URI`` or the data folder's SQLite).

    One client per tracking URI and process: tasks that share a process (``dag.test``) share it.
    """
    return _client(load_settings().mlflow_tracking_uri)


@lru_cache(maxsize=8)
def _client(uri: str):
    _configure_client_env()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if uri.startswith("sqlite:"):
        _fast_sqlite(client)
    return client


def _fast_sqlite(client) -> None:
    """Put a SQLite store in WAL mode with ``synchronous=NORMAL``.

    Every MLflow call is a transaction; with SQLite's default rollback journal each one waits for
    fsyncs (~25 ms apiece on a busy disk, 4-5 per task). WAL keeps readers and one writer apart across
    processes and survives a crashed process; only an OS crash can lose the last commits.
    """
    from sqlalchemy import event

    engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
    if engine is None:  # another store layout: stay correct, just slower
        return

    def pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened before the listener reconnect with it


# (tracking URI, product, dag_id, run_id) → (experiment id, parent run id), for tasks sharing a process.
_PARENTS: dict[tuple[str, str, str, str], tuple[str, str]] = {}


def guarded_client(policy: Policy | None = None) -> GuardedClient:
    """:func:`get_client` behind a fresh :class:`~ragtrail_airflow.resilience.Guard` (one per task)."""
    client = get_client()
    return GuardedClient(client, Guard(client.tracking_uri, policy))


def get_or_create_experiment(client, product: str, kind: str = "product") -> str:
    """Return the product's experiment id, creating it with an explicit artifact location.

    The name comes from :func:`ragtrail.products.experiment_name`, the one place that decides it.
    ``kind`` is ``product`` for pipelines and ``feature`` for :func:`ragtrail_airflow.track.track`.
    """
    from mlflow.exceptions import MlflowException

    name = experiment_name(product)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # made before ragtrail set it
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(product),
                                        tags={PRODUCT_TAG: product, "ragtrail.product_id": product_id(product),
                                              KIND_TAG: kind, EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException as err:  # another task created it a moment ago
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise err
        return exp.experiment_id


def error_tags(exc: BaseException) -> dict[str, str]:
    """How a failure is recorded on a run: the error class, and class plus message."""
    return {ERROR_TAG: f"{type(exc).__name__}: {exc}"[:4000], ERROR_CLASS_TAG: type(exc).__name__}


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
                          params: dict | None = None, run_name: str | None = None) -> str:
    """Return the run id of the DAG run's parent run, creating it once.

    Idempotent across retries and processes: the parent is found by its tags. Tasks racing to create
    it may each create one; every caller then waits out a short settle window, re-reads, and all agree
    on the oldest (start time, then run id); the losers delete their own. :func:`merge_parents` mends
    whatever a slower race left behind.
    """
    found = _settled_parent(client, experiment_id, dag_id, run_id)
    if found is not None:
        return found.info.run_id
    run = client.create_run(experiment_id, run_name=run_name or f"{dag_id} {run_id}",
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
    steps = [Metric(_BAD_KEY.sub("_", k)[:250], v, ts, step) for k, v, step, ts in rec.steps]
    for batch in _chunks(steps, 900):  # per-batch figures: curves over the task in the MLflow UI
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
    rec.datasets.clear(), rec.tables.clear(), rec.steps.clear()


def _source_type(uri: str) -> str:
    return "s3" if uri.startswith("s3://") else "local"


def airflow_origin(dag_run, *, dag_id: str, run_id: str, task_id: str | None = None,
                   map_index: int = -1) -> dict:
    """Where a run comes from in Airflow: UI URLs of the DAG run and task instance, who triggered it,
    the run type and time (``dag_run`` is the task context's, or ``None``)."""
    import getpass

    from ragtrail_airflow.config import dag_run_url, task_instance_url

    when = None
    for attr in ("run_after", "logical_date", "start_date"):
        when = when or getattr(dag_run, attr, None)
    run_type = getattr(dag_run, "run_type", None)
    run_type = getattr(run_type, "value", run_type) or run_id.split("__", 1)[0]
    try:
        user = getattr(dag_run, "triggering_user_name", None) or getpass.getuser()
    except Exception:  # no user name in a container without /etc/passwd entry
        user = "airflow"
    origin = {"dag_run_url": dag_run_url(dag_id, run_id), "user": str(user), "run_type": str(run_type),
              "when": when.strftime("%Y-%m-%d %H:%M") if when else ""}
    if task_id:
        origin["task_url"] = task_instance_url(dag_id, run_id, task_id, map_index)
    return origin


def parent_run_name(product: str, version: str, origin: dict | None) -> str:
    """How a person tells pipeline runs apart: ``handbook v3 · manual · 2026-11-28 08:12``."""
    parts = [f"{product} {version}"]
    if origin:
        parts += [p for p in (origin.get("run_type"), origin.get("when")) if p]
    return " · ".join(parts)


def origin_tags(origin: dict | None, *, dag_id: str, run_id: str, task_label: str | None = None) -> dict:
    """MLflow's own tags (description, source, user) plus ``airflow.url``, pointing back at Airflow."""
    if not origin:
        return {}
    url = origin.get("task_url") if task_label else origin["dag_run_url"]
    note = (f"Airflow task instance **{task_label}** of DAG run [{dag_id} / {run_id}]({origin['dag_run_url']}): "
            f"[open in Airflow]({url})" if task_label else
            f"Airflow DAG run [{dag_id} / {run_id}]({url}) ({origin.get('run_type')}, by {origin.get('user')})")
    return {NOTE_TAG: note, URL_TAG: url, "mlflow.source.type": "JOB", "mlflow.user": origin.get("user", ""),
            "mlflow.source.name": f"airflow:{dag_id}" + (f"/{task_label}" if task_label else "")}


class TaskRun:
    """One MLflow child run for one try of one task, nested under the DAG run's parent.

    Use as a context manager: on a clean exit the run ends FINISHED, on an exception FAILED (and the
    exception propagates); :meth:`kill` ends it KILLED. Whatever the stage recorded before failing
    is still logged, so a failed run shows how far it got. Inside the block the run is the current
    task run, so :func:`ragtrail_airflow.track.track` nests its runs under it.

    Every MLflow call goes through one :class:`~ragtrail_airflow.resilience.Guard` (bounded retries,
    one time budget). When MLflow is unavailable, a lenient policy logs a warning and the task goes
    on untracked (``tracking_error`` says why); a strict one raises ``TrackingUnavailable``.
    """

    def __init__(self, *, dag_id: str, run_id: str, task_id: str, product: str, version: str,
                 try_number: int = 1, map_index: int = -1, stage: str | None = None,
                 parent_params: dict | None = None, policy: Policy | None = None, origin: dict | None = None):
        self.origin = origin  # see airflow_origin
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.product, self.version = product, version
        self.try_number, self.map_index = try_number, map_index
        self.stage = stage or task_id
        self.parent_params = parent_params or {}
        self.policy = policy or Policy.from_env()
        self.recorder = Recorder()
        self.client: GuardedClient | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.mlflow_run_id: str | None = None
        self.tracking_error: str | None = None
        self.ended = False
        self._token = None
        self.overhead_s = 0.0  # time spent in MLflow calls for this task (metric tracking_overhead_s)
        self.setup_s = 0.0  # importing mlflow and opening the store, when this task was first (tracking_setup_s)

    def start(self) -> TaskRun:
        t0 = time.perf_counter()
        first = _client.cache_info().currsize == 0
        self.client = guarded_client(self.policy)
        if first:  # importing mlflow and opening the store: once per process, reported apart
            self.setup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        try:
            common = {PRODUCT_TAG: self.product, VERSION_TAG: self.version}
            key = (self.client.tracking_uri, self.product, self.dag_id, self.run_id)
            if key in _PARENTS:
                self.experiment_id, self.parent_run_id = _PARENTS[key]
            else:
                self.experiment_id = get_or_create_experiment(self.client, self.product)
                self.parent_run_id = find_or_create_parent(
                    self.client, self.experiment_id, dag_id=self.dag_id, run_id=self.run_id,
                    tags={**common, **origin_tags(self.origin, dag_id=self.dag_id, run_id=self.run_id)},
                    params=self.parent_params, run_name=parent_run_name(self.product, self.version, self.origin))
                _PARENTS[key] = (self.experiment_id, self.parent_run_id)
            name = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
            label = f"{name} (try {self.try_number})"
            run = self.client.create_run(self.experiment_id, run_name=name, tags={
                **common, **origin_tags(self.origin, dag_id=self.dag_id, run_id=self.run_id, task_label=label),
                PARENT_TAG: self.parent_run_id, ROLE_TAG: "task", DAG_TAG: self.dag_id,
                RUN_TAG: self.run_id, TASK_TAG: self.task_id, TRY_TAG: str(self.try_number),
                MAP_TAG: str(self.map_index), STAGE_TAG: self.stage})
            self.mlflow_run_id = run.info.run_id
        except Exception as err:
            self._tracking_failed("start", err)
        finally:
            self.overhead_s += time.perf_counter() - t0
        return self

    def _tracking_failed(self, step: str, err: Exception) -> None:
        if self.policy.strict:
            if isinstance(err, TrackingError):
                raise err
            raise TrackingError(f"MLflow tracking at {self.client.guard.uri} failed at the {step} of task "
                                f"{self.task_id}: {type(err).__name__}: {err} — {STRICT_NOTE}") from err
        self.tracking_error = f"{type(err).__name__}: {err}"
        log.warning("MLflow tracking failed at the %s of task %s (%s); lenient mode: the task goes on and "
                    "the roll-up marks the trail incomplete", step, self.task_id, self.tracking_error)

    def flush(self) -> None:
        if self.mlflow_run_id:
            log_recorder(self.client, self.mlflow_run_id, self.recorder)

    def end(self, status: str) -> None:
        """Log what is left and terminate the run; later calls are no-ops (first status wins).

        Termination is attempted even when logging failed, so the run is not left RUNNING.
        """
        if not self.mlflow_run_id or self.ended:
            return
        self.ended = True
        errors = []
        t0 = time.perf_counter()

        def overhead():
            # Logged with the terminating call: the last two calls are the only ones not counted.
            from mlflow.entities import Metric

            self.overhead_s += time.perf_counter() - t0
            now = int(time.time() * 1000)
            self.client.log_batch(self.mlflow_run_id, metrics=[
                Metric("tracking_overhead_s", self.overhead_s, now, 0), Metric("tracking_setup_s", self.setup_s, now, 0)])

        for step in (self.flush, overhead, lambda: self.client.set_terminated(self.mlflow_run_id, status)):
            try:
                step()
            except Exception as err:
                errors.append(err)
        if errors:
            self._tracking_failed("end", errors[0])

    def kill(self) -> None:
        try:
            self.end("KILLED")
        except Exception:  # the task is being killed anyway; the roll-up closes the run
            log.exception("could not end the MLflow run of %s as KILLED", self.task_id)

    def __enter__(self) -> TaskRun:
        self.start()
        self._token = CURRENT_TASK_RUN.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        CURRENT_TASK_RUN.reset(self._token)
        if exc is not None:
            self.recorder.tag(**error_tags(exc))
        try:
            self.end("FAILED" if exc is not None else "FINISHED")
        except Exception:
            if exc is None:
                raise
            log.exception("could not end the MLflow run of failed task %s", self.task_id)


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
