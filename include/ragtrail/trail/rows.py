"""MLflow runs as the plain rows the queries answer with (pure functions over run entities)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ragtrail.trail import names as n
from ragtrail.trail.analysis import STAGE_ORDER, iso
from ragtrail.trail.names import MAP_TAG, TASK_TAG, TRY_TAG


def pipeline_run(run, mlflow_url: str) -> dict:
    """A parent run as a pipeline run: the roll-up's status, reasons and trail, params, metrics, times."""
    info, data = run.info, run.data
    tags = data.tags
    metrics = dict(data.metrics)
    duration = metrics.get(n.DURATION_S)
    if duration is None and info.end_time:
        duration = (info.end_time - info.start_time) / 1000
    reasons = tags.get(n.REASONS_TAG)
    return {
        "run_id": info.run_id, "experiment_id": info.experiment_id,
        "product": tags.get(n.PRODUCT_TAG), "version": tags.get(n.VERSION_TAG),
        "status": tags.get(n.STATUS_TAG) or info.status, "mlflow_status": info.status,
        "trail": tags.get(n.TRAIL_TAG),
        "missing_runs": [t for t in tags.get(n.TRAIL_MISSING_TAG, "-").split(", ") if t and t != "-"],
        "reasons": [r for r in (reasons or "").split("; ") if r and r != "-"],
        # e.g. "promoted although worse than live: …" (the gate let a small, not significant drop through)
        "warnings": [w for w in [tags.get(n.WARNINGS_TAG, "-")] if w and w != "-"],
        "name": info.run_name, "gate": tags.get(n.GATE_TAG),
        "dag_id": tags.get("airflow.dag_id"), "airflow_run_id": tags.get("airflow.run_id"),
        "start_time": iso(info.start_time), "end_time": iso(info.end_time),
        "duration_s": round(duration, 3) if duration is not None else None,
        # the run's configuration, not the claims its mapped tasks' runs were created under (trail.mapped.claim)
        "params": {k: v for k, v in data.params.items() if not k.startswith(n.CLAIM_PARAM + ".")}, "metrics": metrics,
        "mlflow_url": mlflow_url,
    }


def latest_tries(children: Iterable) -> tuple[dict[tuple[str, int], Any], Counter]:
    """Per (task id, map index): the run of its latest try, and how many tries left a run."""
    latest: dict[tuple[str, int], Any] = {}
    tries: Counter = Counter()
    for child in children:
        tags = child.data.tags
        key = (tags.get(TASK_TAG, child.info.run_name or ""), int(tags.get(MAP_TAG, "-1")))
        tries[key] += 1
        best = latest.get(key)
        if best is None or int(tags.get(TRY_TAG, "0")) >= int(best.data.tags.get(TRY_TAG, "0")):
            latest[key] = child
    return latest, tries


def task_rows(latest: dict[tuple[str, int], Any], tries: Counter, url: Callable[[str], str]) -> list[dict]:
    """Each task's latest try in pipeline order: status, try, duration, metrics, params, error, link."""
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    rows = []
    for (task_id, map_index), child in sorted(latest.items(), key=lambda kv: (
            order.get(kv[0][0], len(order)), kv[1].info.start_time, kv[0][1])):
        info, data = child.info, child.data
        rows.append({
            "task_id": task_id, "map_index": map_index,
            "label": task_id if map_index < 0 else f"{task_id}[{map_index}]",
            "status": info.status, "try_number": int(data.tags.get(TRY_TAG, "1")),
            "tries_logged": tries[(task_id, map_index)],
            "duration_s": round((info.end_time - info.start_time) / 1000, 3) if info.end_time else None,
            "metrics": dict(data.metrics), "params": dict(data.params),
            "error": data.tags.get(n.ERROR_TAG), "run_id": info.run_id,
            "mlflow_url": url(info.run_id),
        })
    return rows
