"""The DAG-run closer: when a tracked DAG run ends, roll its trail up so no run is ever left RUNNING.

Called by the listener's ``on_dag_run_success`` / ``on_dag_run_failed``, which Airflow 3.3 fires in
the scheduler when a run ends and in the API server when a person sets a run's state (UI or
``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}``). A DAG run is tracked when one of its tasks pushed
the ``mlflow_run`` XCom (the listener and ``@task.tracked`` do): no XCom, nothing to close.

The Airflow side (:func:`close_when_ended`) only reads the DAG run's task states and that XCom from
the caller's own database session, into a plain payload. The MLflow side (:func:`close`) is the one
mechanism of :mod:`ragtrail.trail.closer`, the same as the pipeline's roll-up task: child runs left
RUNNING (SIGKILLed worker, lost heartbeat, a run marked failed while a task ran) are ended by their
Airflow state or KILLED, the units are rolled up (FINISHED / PARTIAL / FAILED), summed metrics,
status and reasons land on the parent, and the parent ends. A parent the roll-up task already closed
only has its stragglers closed.

In a long-lived process (scheduler, API server) the MLflow side runs in a short child process
(``python -m ragtrail_airflow.dagrun_closer``, the payload on stdin): the scheduler loop never waits on
MLflow and never holds an MLflow client (no SQLite connection inherited by the task processes it
forks). Elsewhere (``dag.test``, ``ragtrail ingest``) it runs in-process.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

LONG_LIVED = ("scheduler", "api-server")
_CHILDREN: list[subprocess.Popen] = []


def close_when_ended(dag_run, msg: str) -> None:
    """Close the trail of ``dag_run`` (an ORM ``DagRun`` that just ended); never raises for MLflow."""
    from ragtrail_airflow.config import ragtrail_section, tracking_enabled

    if not tracking_enabled():
        return
    payload = describe(dag_run, msg)
    if payload is None:
        return
    payload["section"] = ragtrail_section()
    if sys.argv[1:2] and sys.argv[1] in LONG_LIVED:
        _spawn(payload)
    else:
        close(payload)


def _session_of(dag_run):
    from sqlalchemy.orm import object_session

    return object_session(dag_run)


def describe(dag_run, msg: str) -> dict[str, Any] | None:
    """The plain facts the closer needs, or ``None`` when no task of the run opened an MLflow run."""
    from contextlib import nullcontext

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from ragtrail_airflow.links import XCOM_KEY

    own = _session_of(dag_run)
    with nullcontext(own) if own is not None else create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, key=XCOM_KEY, dag_ids=dag_run.dag_id)
                              .limit(1)).first()
        if row is None:
            return None
        ref = XComModel.deserialize_value(row)
        tis = session.execute(select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state)
                              .where(TaskInstance.dag_id == dag_run.dag_id,
                                     TaskInstance.run_id == dag_run.run_id)).all()
    dag = getattr(dag_run, "dag", None)
    order = list(dag.task_ids) if dag is not None else sorted({t for t, _, _ in tis})
    # Tasks that never reach a worker (EmptyOperator) leave no run, and are judged by their state.
    untracked = [t.task_id for t in (dag.tasks if dag is not None else ()) if getattr(t, "inherits_from_empty_operator", False)]
    state = getattr(dag_run.state, "value", dag_run.state)
    started, ended = dag_run.start_date, dag_run.end_date
    return {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "state": str(state), "msg": msg or "",
            "experiment_id": ref.get("experiment_id"), "parent_run_id": ref.get("parent_run_id"),
            "units": [[t, m, str(getattr(s, "value", s) or "none")] for t, m, s in tis],
            "order": order, "untracked": untracked,
            "duration_s": (ended - started).total_seconds() if started and ended else None}


def _spawn(payload: dict) -> None:
    """Run :func:`close` in a child process; reap children that finished earlier."""
    for child in list(_CHILDREN):
        if child.poll() is not None:
            _CHILDREN.remove(child)
    child = subprocess.Popen([sys.executable, "-m", "ragtrail_airflow.dagrun_closer"], stdin=subprocess.PIPE,
                             start_new_session=True)
    child.stdin.write(json.dumps(payload, default=str).encode())
    child.stdin.close()
    _CHILDREN.append(child)


def close(payload: dict) -> dict:
    """Roll the DAG run's trail up in MLflow (see the module docstring); returns what it did."""
    from ragtrail.trail.client import guarded_client
    from ragtrail.trail.guard import Policy, tracking_failed

    policy = Policy.from_env(payload.get("section") or {})
    client = guarded_client(policy)
    try:
        return _close(client, payload)
    except Exception as err:  # lenient: a warning; strict: the error names the tracking URI
        text = tracking_failed(policy, client.guard.uri, f"closing the trail of {payload['dag_id']} / "
                               f"{payload['run_id']}", err, "runs may stay RUNNING until the next close")
        return {"error": text}


def _close(client, payload: dict) -> dict:
    from ragtrail.trail.closer import any_task_publishes, close_left_running, log_rollup, read_units
    from ragtrail.trail.names import (
        CLOSED_BY_TAG,
        DAG_RUN_MSG_TAG,
        DAG_RUN_STATE_TAG,
        PUBLISHING_TAG,
        STATUS_TAG,
    )
    from ragtrail.trail.rollup import rollup_status
    from ragtrail.trail.rows import latest_tries
    from ragtrail.trail.runs import child_runs, merge_parents

    exp_id, dag_id, run_id = payload["experiment_id"], payload["dag_id"], payload["run_id"]
    parent = merge_parents(client, exp_id, dag_id, run_id) or payload["parent_run_id"]
    units_af = {(t, int(m)): s for t, m, s in payload["units"]}
    run = client.get_run(parent)
    if run.info.status != "RUNNING" and STATUS_TAG in run.data.tags:  # the roll-up task closed it
        children = child_runs(client, exp_id, parent)
        latest, _ = latest_tries(children)
        _, closed = close_left_running(client, children, latest, units_af, "dag_run_closer")
        return {"parent_run_id": parent, "status": run.data.tags[STATUS_TAG], "closed_runs": closed}
    tracked = set(payload["order"]) - set(payload.get("untracked") or ())
    units, found = read_units(client, exp_id, parent, units_af, time.time(), payload["order"], tracked,
                              closed_by="dag_run_closer")
    publishing = run.data.tags.get(PUBLISHING_TAG)
    roll = rollup_status(units, publishing.split(",") if publishing else any_task_publishes(units))
    manual = "manually" in payload["msg"]
    if manual:
        roll.reasons.insert(0, f"DAG run {payload['state']}: {payload['msg']}")
    trail = {**found, "error": None}
    log_rollup(client, parent, roll, duration_s=payload.get("duration_s"), trail=trail,
               tags={CLOSED_BY_TAG: "dag_run_closer", DAG_RUN_STATE_TAG: payload["state"],
                     DAG_RUN_MSG_TAG: payload["msg"][:500] or "-"},
               summary={"dag_id": dag_id, "run_id": run_id, "dag_run_state": payload["state"],
                        "status": roll.status, "reasons": roll.reasons, "tasks": {u.label: u.state for u in units},
                        "trail": trail})
    return {"parent_run_id": parent, "status": roll.status, "reasons": roll.reasons, **found}


def main() -> None:
    """``python -m ragtrail_airflow.dagrun_closer``: close the DAG run described by the JSON on stdin."""
    logging.basicConfig(level=logging.WARNING, format="ragtrail closer: %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    payload = json.loads(sys.stdin.read())
    result = close(payload)
    log.info("%s / %s: %s", payload["dag_id"], payload["run_id"], json.dumps(result, default=str)[:2000])


if __name__ == "__main__":
    main()
