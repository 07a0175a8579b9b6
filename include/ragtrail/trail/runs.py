"""Write the trail: one parent run per DAG run, child runs under it, a stage's record in batches.

Runs are keyed by plain ids (``dag_id``, ``run_id``, ``task_id``, try number, map index): nothing
here knows Airflow. Every function takes the client to use (normally a guarded one, see
:mod:`ragtrail.trail.client`); ``mlflow`` is imported inside functions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.trail.names import DAG_TAG, NOTE_TAG, PARENT_TAG, ROLE_TAG, RUN_TAG, URL_TAG, quote, redact

_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def find_parent(client, experiment_id: str, dag_id: str, run_id: str):
    """The parent run of a DAG run, or ``None``; if a race made two, the oldest one wins."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE_TAG}` = 'parent' and tags.`{DAG_TAG}` = {quote(dag_id)} and tags.`{RUN_TAG}` = {quote(run_id)}",
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
    """Fold duplicate parents of one DAG run into the oldest live one: re-point their children, delete them.

    Deleted parents count too: a racer may adopt a candidate parent (and create its child under it) in the
    moment before that candidate's creator saw an older one and deleted its own; the child must not stay
    under a deleted run.
    """
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE_TAG}` = 'parent' and tags.`{DAG_TAG}` = {quote(dag_id)} and tags.`{RUN_TAG}` = {quote(run_id)}",
        run_view_type=ViewType.ALL, max_results=100,
    )
    live = sorted((r for r in runs if r.info.lifecycle_stage != "deleted"), key=lambda r: (r.info.start_time, r.info.run_id))
    if not live:
        return None
    winner = live[0]
    for loser in (r for r in runs if r.info.run_id != winner.info.run_id):
        for child in child_runs(client, experiment_id, loser.info.run_id):
            client.set_tag(child.info.run_id, PARENT_TAG, winner.info.run_id)
        if loser.info.lifecycle_stage != "deleted":
            client.delete_run(loser.info.run_id)
    return winner.info.run_id


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_recorder(client, run_id: str, rec: Recorder) -> None:
    """Write a stage's params, metrics, tags and artifacts in as few calls as MLflow's limits allow."""
    _log_values(client, run_id, rec)
    _log_files(client, run_id, rec)
    _log_inputs(client, run_id, rec)
    for name, rows in rec.tables.items():  # MLflow's table artifact: the UI's evaluation view reads it
        import pandas as pd

        client.log_table(run_id, data=pd.DataFrame(rows), artifact_file=name)
    rec.params.clear(), rec.metrics.clear(), rec.tags.clear(), rec.files.clear(), rec.dicts.clear()
    rec.datasets.clear(), rec.tables.clear(), rec.steps.clear()


def _log_values(client, run_id: str, rec: Recorder) -> None:
    """Params, metrics, tags and per-step metrics, in batches within MLflow's per-call limits."""
    from mlflow.entities import Metric, Param, RunTag

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


def _log_files(client, run_id: str, rec: Recorder) -> None:
    """The recorder's files (those that exist) and its dicts, written as JSON artifacts."""
    for path, artifact_path in rec.files:
        if Path(path).exists():
            client.log_artifact(run_id, str(path), artifact_path)
    if rec.dicts:
        with tempfile.TemporaryDirectory() as tmp:
            for name, obj in rec.dicts.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)  # "tuning/best.json"
                (Path(tmp) / name).write_text(json.dumps(obj, indent=1, default=str))
            client.log_artifacts(run_id, tmp)


def _log_inputs(client, run_id: str, rec: Recorder) -> None:
    """The recorder's datasets as the run's inputs (source URI redacted)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    if rec.datasets:
        client.log_inputs(run_id, datasets=[
            DatasetInput(Dataset(name=d["name"], digest=d["digest"], source_type=_source_type(d["source"]),
                                 source=json.dumps({"uri": redact("source", d["source"])}),
                                 profile=json.dumps(d["profile"])),
                         tags=[InputTag("mlflow.data.context", "ingest")])
            for d in rec.datasets
        ])


def _source_type(uri: str) -> str:
    return "s3" if uri.startswith("s3://") else "local"


def parent_run_name(product: str, version: str | None, origin: dict | None) -> str:
    """How a person tells pipeline runs apart: ``handbook v3 · manual · 2026-11-28 08:12``."""
    parts = [f"{product} {version}" if version else product]
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
        page = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = {quote(parent_run_id)}",
                                  max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs
