"""The final task: read the DAG run's trail, roll its status up, close the parent run, fail if not FINISHED."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtrail.plan import PLAN_FILE
from ragtrail.rollup import FINISHED, Unit, rollup_status
from ragtrail.settings import run_workdir
from ragtrail_airflow.config import run_url, tracking_enabled

if TYPE_CHECKING:
    from airflow.sdk import Context

SUMMARY_KEY = "summary"
# MLflow knows no PARTIAL: a partial run is a failed run whose ragtrail.status tag says PARTIAL.
MLFLOW_STATUS = {"FINISHED": "FINISHED", "PARTIAL": "FAILED", "FAILED": "FAILED"}
_TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}


def _airflow_units(states: dict[str, str], task_ids: list[str]) -> dict[tuple[str, int], str]:
    """Map Airflow's ``{"task" | "task_<map_index>": state}`` to ``{(task, map_index): state}``."""
    units: dict[tuple[str, int], str] = {}
    for key, state in states.items():
        if key in task_ids:
            units[(key, -1)] = state or "none"
            continue
        for tid in task_ids:
            m = re.fullmatch(re.escape(tid) + r"_(\d+)", key)
            if m:
                units[(tid, int(m.group(1)))] = state or "none"
    for tid in task_ids:  # a task Airflow reported nothing for never ran
        if not any(t == tid for t, _ in units):
            units[(tid, -1)] = "none"
    return units


def _pull(ti, task_id: str):
    value = ti.xcom_pull(task_ids=task_id)
    return value if value is None or isinstance(value, (dict, str, int, float)) else list(value)


def _total(result, key: str) -> int:
    """A count from a task's XCom: a dict, or a list of dicts for a mapped task."""
    if not result:
        return 0
    if isinstance(result, dict):
        return int(result.get(key, 0))
    return sum(int((r or {}).get(key, 0)) for r in result)


def _latest_children(children: list) -> dict[tuple[str, int], Any]:
    latest: dict[tuple[str, int], Any] = {}
    for run in children:
        tags = run.data.tags
        key = (tags.get("airflow.task_id", ""), int(tags.get("airflow.map_index", "-1")))
        try_number = int(tags.get("airflow.try_number", "0"))
        best = latest.get(key)
        if best is None or try_number >= int(best.data.tags.get("airflow.try_number", "0")):
            latest[key] = run
    return latest


def _held_back(results: dict) -> str | None:
    decision = results.get("evaluate") or {}
    return decision.get("reason") if decision.get("gate") == "rejected" else None


def aggregate_status(context: Context, publishing_tasks: tuple[str, ...] = ("index",)) -> dict:
    """Roll the DAG run up to FINISHED / PARTIAL / FAILED, log it to the parent run, and return the summary.

    ``publishing_tasks``: the tasks whose success decides between PARTIAL and FAILED (see ``ragtrail.rollup``).

    Raises ``AirflowFailException`` after logging when the status is not FINISHED, so the DAG run fails.
    """
    from airflow.sdk.exceptions import AirflowFailException

    ti, params = context["ti"], context["params"]
    me = ti.task_id
    task_ids = [t for t in context["dag"].task_ids if t != me]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    airflow_units = _airflow_units({k: v for k, v in states.items() if k != me}, task_ids)
    results = {tid: _pull(ti, tid) for tid in task_ids}
    summary: dict[str, Any] = {"product": params["product"], "version": params["version"],
                               "dag_id": ti.dag_id, "run_id": ti.run_id,
                               "parent_run_id": None, "experiment_id": None, "mlflow_url": None}
    t_end = time.time()

    if tracking_enabled():
        from ragtrail.recorder import Recorder
        from ragtrail_airflow.tracking import (
            STATUS_TAG,
            child_runs,
            find_or_create_parent,
            get_client,
            get_or_create_experiment,
            log_recorder,
            merge_parents,
        )

        client = get_client()
        exp_id = get_or_create_experiment(client, params["product"])
        parent = merge_parents(client, exp_id, ti.dag_id, ti.run_id) or find_or_create_parent(
            client, exp_id, dag_id=ti.dag_id, run_id=ti.run_id,
            tags={"ragtrail.product": params["product"], "ragtrail.version": params["version"]})
        children = child_runs(client, exp_id, parent)
        latest = _latest_children(children)
        for run in children:
            # A try killed with SIGKILL never ended its run; every upstream try is over by now.
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
                run.info._status = "KILLED"
        units = []
        for key, af_state in sorted(airflow_units.items(), key=lambda kv: (task_ids.index(kv[0][0]), kv[0][1])):
            child = latest.get(key)
            state = child.info.status if child is not None else af_state.upper()
            if child is not None and af_state in ("failed", "upstream_failed") and state == "FINISHED":
                state = "FAILED"
            metrics = dict(child.data.metrics) if child is not None else {}
            duration = ((child.info.end_time or t_end * 1000) - child.info.start_time) / 1000 if child else None
            error = child.data.tags.get("ragtrail.error") if child is not None else None
            units.append(Unit(key[0], key[1], state, metrics, duration, error))
        roll = rollup_status(units, publishing_tasks, held_back=_held_back(results))
        parent_run = client.get_run(parent)
        duration_s = t_end - parent_run.info.start_time / 1000
        summary.update(parent_run_id=parent, experiment_id=exp_id, mlflow_url=run_url(exp_id, parent))
    else:
        units = [Unit(t, m, s.upper()) for (t, m), s in sorted(airflow_units.items(), key=lambda kv: (task_ids.index(kv[0][0]), kv[0][1]))]
        roll = rollup_status(units, publishing_tasks, held_back=_held_back(results))
        started = getattr(context.get("dag_run"), "start_date", None)
        duration_s = t_end - started.timestamp() if started else None

    plan_path = run_workdir(ti.dag_id, ti.run_id) / PLAN_FILE
    planned = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    ingest, index = results.get("ingest") or {}, results.get("index") or {}
    decision = results.get("evaluate") or {}
    summary.update(
        status=roll.status, reasons=roll.reasons,
        docs=ingest.get("docs", 0), docs_failed=ingest.get("quarantined", 0),
        **{k: planned.get(k, 0) for k in ("docs_added", "docs_updated", "docs_unchanged", "docs_deleted")},
        chunks=_total(results.get("chunk"), "chunks"), embeddings=_total(results.get("embed"), "embeddings"),
        vectors=index.get("vectors", 0), vectors_deleted=index.get("deleted", 0),
        collection=index.get("collection"), live_collection=decision.get("live", index.get("live")),
        promoted=bool(decision.get("promoted")), gate=decision.get("gate"), gate_reason=decision.get("reason"),
        eval=decision.get("metrics"), model_version=decision.get("model_version"),
        duration_s=round(duration_s, 3) if duration_s is not None else None,
        tasks={u.label: u.state for u in units},
    )

    if tracking_enabled():
        rec = Recorder()
        rec.metric(**roll.metrics, duration_s=duration_s)
        rec.tag(**{STATUS_TAG: roll.status, "ragtrail.reasons": "; ".join(roll.reasons) or "-"})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rollup.json"
            path.write_text(json.dumps(summary, indent=1, default=str))
            rec.artifact(path)
            log_recorder(client, parent, rec)
        client.set_terminated(parent, MLFLOW_STATUS[roll.status])

    ti.xcom_push(key=SUMMARY_KEY, value=summary)
    if roll.status != FINISHED:
        raise AirflowFailException(f"pipeline {roll.status}: " + "; ".join(roll.reasons))
    return summary
