"""The final task: read the DAG run's trail, roll its status up, close the parent run, fail if not FINISHED."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from ragtrail.core.settings import env_flag
from ragtrail.trail import names as n
from ragtrail.trail.rollup import FINISHED, Unit, rollup_status
from ragtrail_airflow.config import run_url, tracking_enabled
from ragtrail_airflow.rag.approval import promotion_outcome

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

SUMMARY_KEY = "summary"
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
    from ragtrail_airflow.rag.xcom_lists import as_list

    value = ti.xcom_pull(task_ids=task_id)
    return value if value is None or isinstance(value, (dict, str, int, float)) else as_list(value)


def _total(result, key: str) -> int:
    """A count from a task's XCom: a dict, or a list of dicts for a mapped task."""
    if not result:
        return 0
    if isinstance(result, dict):
        return int(result.get(key, 0))
    return sum(int((r or {}).get(key, 0)) for r in result)


def _in_dag_order(airflow_units: dict, task_ids: list[str]) -> list:
    """Units ordered as the DAG defines its tasks, so reasons read from cause to consequence."""
    return sorted(airflow_units.items(), key=lambda kv: (task_ids.index(kv[0][0]), kv[0][1]))


def headline_metrics(units: list[Unit]) -> dict[str, float]:
    """Per-run figures worth trending that are not sums: embedding throughput and dimension."""
    ok = [u for u in units if u.ok]
    count = sum(u.metrics.get(n.EMBEDDING_COUNT, 0.0) for u in ok if "processing_time_seconds" in u.metrics)
    seconds = sum(u.metrics.get("processing_time_seconds", 0.0) for u in ok)
    out: dict[str, float] = {}
    if seconds > 0:
        out[n.EMBEDDINGS_PER_SECOND] = count / seconds
    dims = [u.metrics["embedding_dimension"] for u in ok if "embedding_dimension" in u.metrics]
    if dims:
        out["embedding_dimension"] = max(dims)
    return out


QUALITY = (n.NDCG_AT_10, n.RECALL_AT_10, n.MRR_AT_10, n.LATENCY_P95_MS)


def quality_metrics(summary: dict) -> dict[str, float]:
    """The evaluation's headline on the parent run, where compare views and trends see it."""
    out = {k: float(v) for k, v in (summary.get("eval") or {}).items() if k in QUALITY and v is not None}
    live = summary.get("vs_live") or {}
    if live:
        out.update(ndcg_delta_vs_live=float(live["delta"]), ndcg_p_value_vs_live=float(live["p_value"]))
    if summary.get("gate") is not None:
        out["promoted_worse"] = float(bool(summary.get("promoted_worse")))
    return out


def _held_back(results: dict) -> str | None:
    """Why the build did not go live: a person's answer on the approve task wins over the gate's verdict.
    A Reject is a decision, not a shortfall (the run is FINISHED, "not promoted, rejected by <user>"); no
    answer before the timeout is (PARTIAL: nobody looked)."""
    decision, approval = results.get("evaluate") or {}, results.get("approve") or {}
    if approval:
        return None if approval.get("outcome") in ("approved", "rejected") else f"{approval.get('outcome')} by {approval.get('by')}"
    return decision.get("reason") if decision.get("gate") == "rejected" else None


def aggregate_status(context: Context, publishing_tasks: tuple[str, ...] | None = None) -> dict:
    """Roll the DAG run up to FINISHED / PARTIAL / FAILED, log it to the parent run, and return the summary.

    ``publishing_tasks``: the tasks whose success decides between PARTIAL and FAILED (see ``ragtrail.trail.rollup``);
    default: the roll-up task's ``publishing`` (``@task.rollup(publishing=...)``), else ``("index",)``.

    The summary's ``trail`` says whether MLflow holds a run for every task that ran
    (``missing_runs``), which runs the roll-up had to close (``closed_runs``) and why MLflow could not
    be read (``error``; lenient mode then decides from Airflow's task states alone).

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
    tracked = tracking_enabled()
    trail: dict[str, Any] = {"complete": None, "missing_runs": [], "closed_runs": [], "error": None}
    units, client, parent, duration_s = None, None, None, None

    if tracked:
        from ragtrail.trail.client import get_or_create_experiment, guarded_client
        from ragtrail.trail.closer import read_units
        from ragtrail.trail.runs import find_or_create_parent, merge_parents, origin_tags, parent_run_name
        from ragtrail_airflow.config import airflow_origin, policy
        from ragtrail_airflow.links import push_run_ref
        from ragtrail_airflow.operator import RUN_PARAMS

        client = guarded_client(policy())
        try:
            exp_id = get_or_create_experiment(client, params["product"])
            origin = airflow_origin(context.get("dag_run"), dag_id=ti.dag_id, run_id=ti.run_id)
            parent = merge_parents(client, exp_id, ti.dag_id, ti.run_id) or find_or_create_parent(
                client, exp_id, dag_id=ti.dag_id, run_id=ti.run_id,
                tags={n.PRODUCT_TAG: params["product"], n.VERSION_TAG: params["version"],
                      **origin_tags(origin, dag_id=ti.dag_id, run_id=ti.run_id)},
                params={k: params[k] for k in RUN_PARAMS if k in params},
                run_name=parent_run_name(params["product"], params["version"], origin))
            # The roll-up's "MLflow pipeline run" button opens the parent run.
            push_run_ref(ti, context["task"], {"experiment_id": exp_id, "run_id": parent, "parent_run_id": parent})
            # A mapped task (chunk, embed) is a mapped operator: its operator class says what it is.
            tracked_ids = {t.task_id for t in context["dag"].tasks if "@task.tracked" in (
                getattr(t, "custom_operator_name", None),
                getattr(getattr(t, "operator_class", None), "custom_operator_name", None))}
            units, found = read_units(client, exp_id, parent, airflow_units, t_end, task_ids, tracked_ids)
            trail.update(found)
            duration_s = t_end - client.get_run(parent).info.start_time / 1000
            summary.update(parent_run_id=parent, experiment_id=exp_id, mlflow_url=run_url(exp_id, parent))
        except Exception as err:
            _tracking_failed(client, err, trail)
            units, parent = None, None
    if units is None:  # tracking off, or MLflow unavailable (lenient): Airflow's task states decide
        units = [Unit(t, m, s.upper()) for (t, m), s in _in_dag_order(airflow_units, task_ids)]
        started = getattr(context.get("dag_run"), "start_date", None)
        duration_s = t_end - started.timestamp() if started else None
    publishing_tasks = publishing_tasks or getattr(context.get("task"), "publishing", None) or ("index",)
    roll = rollup_status(units, publishing_tasks, held_back=_held_back(results))
    if tracked:
        trail["complete"] = not (trail["missing_runs"] or trail["closed_runs"] or trail["error"])

    from ragtrail_airflow.rag.s3 import open_work

    work = open_work(ti.dag_id, ti.run_id)
    planned = work.read_plan() or {}
    ingest, index = results.get("ingest") or {}, results.get("index") or {}
    decision, approval = results.get("evaluate") or {}, results.get("approve") or {}
    summary.update(
        status=roll.status, reasons=roll.reasons,
        docs=ingest.get("docs", 0), docs_failed=ingest.get("quarantined", 0),
        **{k: planned.get(k, 0) for k in ("docs_added", "docs_updated", "docs_unchanged", "docs_deleted")},
        chunks=_total(results.get("chunk"), "chunks"), embeddings=_total(results.get("embed"), "embeddings"),
        vectors=index.get("vectors", 0), vectors_deleted=index.get("deleted", 0),
        collection=index.get("collection"),
        live_collection=approval.get("live") or decision.get("live", index.get("live")),
        promoted=bool(decision.get("promoted") or approval.get("promoted")), approval=approval.get("outcome"),
        promotion=promotion_outcome(decision, approval),
        gate=decision.get("gate"), gate_reason=decision.get("reason"),
        promoted_worse=bool(decision.get("promoted_worse")), vs_live=decision.get("vs_live"),
        eval=decision.get("metrics"), model_version=decision.get("model_version"),
        duration_s=round(duration_s, 3) if duration_s is not None else None,
        tasks={u.label: u.state for u in units},
        trail=trail,
    )

    if parent is not None:
        try:
            _log_rollup(client, parent, roll, units, duration_s, trail, summary)
        except Exception as err:
            _tracking_failed(client, err, trail)
            trail["complete"] = False

    ti.xcom_push(key=SUMMARY_KEY, value=summary)
    settle_work(work, roll.status)
    log.info("pipeline %s: %s", roll.status, summary["promotion"])
    if roll.status != FINISHED:
        raise AirflowFailException(f"pipeline {roll.status}: " + "; ".join(roll.reasons))
    return summary


def settle_work(work, status: str) -> None:
    """A FINISHED run's hand-off files are removed (store and local folder) unless ``RAGTRAIL_KEEP_WORK``;
    a PARTIAL or FAILED run keeps them for a look or a rerun. A failed clean-up only logs a warning."""
    try:
        if status == FINISHED and not env_flag("RAGTRAIL_KEEP_WORK"):
            removed = work.remove()
            log.info("work files of this run removed (%s in the work store)", removed)
        else:
            work.release()
    except Exception as err:  # the run's outcome stands; the files are only left behind
        log.warning("could not remove this run's work files: %s", err)


def _tracking_failed(client, err: Exception, trail: dict) -> None:
    """Strict: fail the roll-up naming the tracking URI. Lenient: note it and go on."""
    from ragtrail.trail.guard import tracking_failed

    trail["error"] = tracking_failed(client.guard.policy, client.guard.uri, "in the roll-up", err,
                                     "deciding from Airflow task states")[:1000]


def _log_rollup(client, parent: str, roll, units: list, duration_s, trail: dict, summary: dict) -> None:
    from ragtrail.trail.closer import log_rollup

    warning = f"promoted although worse than live: {summary['gate_reason']}" if summary.get("promoted_worse") else "-"
    log_rollup(client, parent, roll, duration_s=duration_s, trail=trail,
               metrics={**headline_metrics(units), **quality_metrics(summary)},
               tags={n.WARNINGS_TAG: warning, n.GATE_TAG: summary.get("gate") or "-",
                     n.PROMOTION_TAG: summary.get("promotion") or "-"}, summary=summary)
