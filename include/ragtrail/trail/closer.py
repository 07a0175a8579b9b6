"""Close a DAG run's trail: the one mechanism behind the pipeline's roll-up task and the DAG-run closer.

Given what Airflow says about every unit of a DAG run (a task, or one map index of a mapped task) as
plain values ``{(task_id, map_index): airflow_state}``:

1. child runs left RUNNING (a SIGKILLed worker, a lost heartbeat, a DAG run marked failed while the
   task ran) are ended: the latest try of a unit as its Airflow state says (``FINISHED`` / ``FAILED``),
   anything else ``KILLED``; each gets the tag ``ragtrail.closed_by`` naming who closed it;
2. each unit's outcome is read from its latest try's run (:func:`read_units`);
3. :func:`ragtrail.trail.rollup.rollup_status` decides FINISHED / PARTIAL / FAILED, and :func:`log_rollup`
   puts the summed metrics, the status, the reasons and the trail's completeness on the parent run and
   ends it (MLflow knows no PARTIAL: a partial run ends FAILED with ``ragtrail.status`` = PARTIAL).

A mapped task's one run (``ragtrail.mapped``, shared by all its map indexes) is read and closed by
:func:`close_mapped`: one unit per map index from the metric steps (step = map index) and the
``ragtrail.map_error.<i>`` tags, the run ended from every map index's Airflow state, the failed map
indexes named on it (``ragtrail.failed_indexes``, ``ragtrail.error``) and a ``map_indexes.json`` table (its URI in ``ragtrail.map_table``).
Closing it is the closer's job, not a sign of a lost end.

Nothing here knows Airflow; ``mlflow`` is imported inside functions.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.trail.names import (
    CLOSED_BY_TAG,
    DURATION_S,
    ERROR_TAG,
    FAILED_INDEXES_TAG,
    MAP_DURATION_S,
    MAP_ERROR_TAG,
    MAP_OK,
    MAP_TABLE,
    MAP_TABLE_TAG,
    MAP_TAG,
    MAP_TRY,
    MAPPED_TAG,
    REASONS_TAG,
    STATUS_TAG,
    TASK_TAG,
    TRAIL_CLOSED_TAG,
    TRAIL_MISSING_TAG,
    TRAIL_TAG,
)
from ragtrail.trail.rollup import OK_STATES, Unit

MLFLOW_STATUS = {"FINISHED": "FINISHED", "PARTIAL": "FAILED", "FAILED": "FAILED"}
# How a run that never ended is closed: the Airflow state of its task says how the try really ended.
CLOSE_AS = {"success": "FINISHED", "failed": "FAILED", "upstream_failed": "FAILED"}


def is_mapped(run) -> bool:
    return run.data.tags.get(MAPPED_TAG) == "true"


OK_AIRFLOW = ("success", "skipped")


def _at_step(history) -> dict[int, float]:
    """A metric's history as ``{step: value}``, the latest value of each step (a retried map index logs again)."""
    out: dict[int, tuple[int, float]] = {}
    for m in history:
        if m.step not in out or m.timestamp >= out[m.step][0]:
            out[m.step] = (m.timestamp, m.value)
    return {step: v for step, (_, v) in out.items()}


def close_mapped(client, run, airflow_units: dict, closed_by: str) -> dict[int, dict]:
    """Read a mapped task's shared run into one record per map index, and close it (see the module doc).

    Returns ``{map_index: {"metrics", "duration_s", "error", "logged"}}`` for every map index Airflow knows.
    """
    task = run.data.tags.get(TASK_TAG, run.info.run_name or "")
    states = {i: s for (t, i), s in airflow_units.items() if t == task and i >= 0}
    steps = {key: _at_step(client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics}
    records: dict[int, dict] = {}
    for i in sorted(states):
        metrics = {k: v[i] for k, v in steps.items() if i in v}
        records[i] = {"logged": MAP_OK in metrics, "duration_s": metrics.pop(MAP_DURATION_S, None),
                      "try": metrics.pop(MAP_TRY, None), "ok": metrics.pop(MAP_OK, None),
                      "error": run.data.tags.get(f"{MAP_ERROR_TAG}.{i}"), "metrics": metrics}
    failed = [i for i, s in states.items() if s not in OK_AIRFLOW]
    final = "FINISHED" if not failed else (
        "FAILED" if any(states[i] in ("failed", "upstream_failed") for i in failed) else "KILLED")
    causes = [f"{task}[{i}]: {records[i]['error'] or states[i]}" for i in sorted(failed)]
    rows = [{"map_index": i, "state": states[i], "try": r["try"], "duration_s": r["duration_s"],
             "error": r["error"] if states[i] not in OK_AIRFLOW else None, **r["metrics"]} for i, r in records.items()]
    _write_table(client, run, rows)
    client.set_tag(run.info.run_id, FAILED_INDEXES_TAG, ", ".join(str(i) for i in sorted(failed)) or "-")
    if causes:
        client.set_tag(run.info.run_id, ERROR_TAG, "; ".join(causes)[:5000])
    if run.info.status != final:
        client.set_terminated(run.info.run_id, final)
        client.set_tag(run.info.run_id, CLOSED_BY_TAG, closed_by)
        run.info._status = final
    return records


def _write_table(client, run, rows: list[dict]) -> None:
    """``map_indexes.json`` (pandas' "split" layout, as MLflow's tables): written whole, so a second closer
    replaces it (``log_table`` would append); its URI on the run (``ragtrail.map_table``)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MAP_TABLE
        pd.DataFrame(rows).to_json(path, orient="split", index=False)
        client.log_artifact(run.info.run_id, str(path))
    client.set_tag(run.info.run_id, MAP_TABLE_TAG, f"{run.info.artifact_uri}/{MAP_TABLE}")


def close_left_running(client, children: list, latest: dict, airflow_units: dict, closed_by: str):
    """End every child run still RUNNING; return the units whose latest try lost its end, and the labels.
    A mapped task's shared run is closed by :func:`close_mapped` (not a lost end)."""
    lost_end: set[tuple[str, int]] = set()
    closed: list[str] = []
    for run in children:
        if run.info.status != "RUNNING":
            continue
        if is_mapped(run):
            close_mapped(client, run, airflow_units, closed_by)
            continue
        key = (run.data.tags.get(TASK_TAG, ""), int(run.data.tags.get(MAP_TAG, "-1")))
        is_latest = latest.get(key) is run
        final = CLOSE_AS.get(airflow_units.get(key, ""), "KILLED") if is_latest else "KILLED"
        client.set_terminated(run.info.run_id, final)
        client.set_tag(run.info.run_id, CLOSED_BY_TAG, closed_by)
        run.info._status = final
        if is_latest:
            lost_end.add(key)
        closed.append(run.info.run_name or key[0])
    return lost_end, closed


def _mapped_records(client, children: list, airflow_units: dict, closed_by: str) -> dict[str, dict[int, dict]]:
    """Every mapped task's records per map index (:func:`close_mapped`), its shared run closed."""
    records: dict[str, dict[int, dict]] = {}
    for run in (r for r in children if is_mapped(r)):  # one per task (twins: merged parents, a slow claimer)
        task_records = records.setdefault(run.data.tags.get(TASK_TAG, ""), {})
        for i, record in close_mapped(client, run, airflow_units, closed_by).items():
            if record["logged"] or i not in task_records:
                task_records[i] = record
    return records


def _mapped_unit(key: tuple[str, int], af_state: str, record: dict) -> Unit:
    ok = af_state == "success"
    return Unit(key[0], key[1], "FINISHED" if ok else af_state.upper(), record["metrics"] if ok else {},
                record["duration_s"], None if ok else record["error"])


def read_units(client, exp_id: str, parent: str, airflow_units: dict, t_end: float, order: list[str],
               tracked: set[str] | None = None, closed_by: str = "aggregate_status") -> tuple[list, dict]:
    """Read the parent's child runs into units (in ``order``); close runs left RUNNING; note tracked
    tasks that left no run.

    ``tracked``: the tasks that open an MLflow run; default all. Another task is judged by its Airflow
    state alone. Returns ``(units, {"missing_runs": [...], "closed_runs": [...]})``.
    """
    from ragtrail.trail.rows import latest_tries
    from ragtrail.trail.runs import child_runs

    children = child_runs(client, exp_id, parent)
    records = _mapped_records(client, children, airflow_units, closed_by)
    children = [r for r in children if not is_mapped(r)]
    latest, _ = latest_tries(children)
    lost_end, closed = close_left_running(client, children, latest, airflow_units, closed_by)
    units, missing = [], []
    rank = {t: i for i, t in enumerate(order)}
    for key, af_state in sorted(airflow_units.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][1])):
        child = latest.get(key)
        label = key[0] if key[1] < 0 else f"{key[0]}[{key[1]}]"
        record = records.get(key[0], {}).get(key[1]) if key[1] >= 0 else None
        if record is not None:  # a map index of a mapped task: its steps on the task's shared run
            if af_state in ("success", "failed") and not record["logged"]:
                missing.append(label)
            units.append(_mapped_unit(key, af_state, record))
            continue
        if child is not None and af_state == "success" and child.info.status != "FINISHED":
            child = None  # an earlier try's run: the successful try left none
        if child is None:
            if tracked is not None and key[0] not in tracked:
                units.append(Unit(key[0], key[1], "FINISHED" if af_state == "success" else af_state.upper()))
                continue
            if af_state in ("success", "failed"):  # it ran, but left no run in MLflow
                missing.append(label)
            units.append(Unit(key[0], key[1], af_state.upper()))
            continue
        state = af_state.upper() if key in lost_end else child.info.status
        if af_state in ("failed", "upstream_failed") and state == "FINISHED":
            state = "FAILED"
        duration = ((child.info.end_time or t_end * 1000) - child.info.start_time) / 1000
        units.append(Unit(key[0], key[1], state, dict(child.data.metrics), duration,
                          child.data.tags.get(ERROR_TAG)))
    return units, {"missing_runs": missing, "closed_runs": closed}


def any_task_publishes(units: list[Unit]) -> list[str]:
    """The publishing tasks of a DAG that names none (a user's DAG): the tasks whose every unit
    succeeded, so that a run where some work got done is PARTIAL and one where none did is FAILED.
    With no such task every task counts (the run is FAILED)."""
    by_task: dict[str, list[Unit]] = {}
    for u in units:
        by_task.setdefault(u.task_id, []).append(u)
    done = [t for t, us in by_task.items() if all(u.state.upper() in OK_STATES - {"SKIPPED"} for u in us)]
    return done or list(by_task)


def log_rollup(client, parent: str, roll, *, duration_s: float | None, trail: dict, metrics: dict | None = None,
               tags: dict | None = None, summary: dict | None = None) -> None:
    """Put the roll-up on the parent run (metrics, status, reasons, trail, ``rollup.json``) and end it."""
    from ragtrail.trail.runs import log_recorder

    rec = Recorder()
    rec.metric(**roll.metrics, **(metrics or {}), **({DURATION_S: duration_s} if duration_s is not None else {}))
    incomplete = trail.get("missing_runs") or trail.get("closed_runs")
    rec.tag(**{STATUS_TAG: roll.status, REASONS_TAG: "; ".join(roll.reasons) or "-",
               TRAIL_TAG: "incomplete" if incomplete else "complete",
               TRAIL_MISSING_TAG: ", ".join(trail.get("missing_runs") or []) or "-",
               TRAIL_CLOSED_TAG: ", ".join(trail.get("closed_runs") or []) or "-", **(tags or {})})
    with tempfile.TemporaryDirectory() as tmp:
        if summary is not None:
            path = Path(tmp) / "rollup.json"
            path.write_text(json.dumps(summary, indent=1, default=str))
            rec.artifact(path)
        log_recorder(client, parent, rec)
    client.set_terminated(parent, MLFLOW_STATUS[roll.status])
