"""The final task: read the DAG run's trail, roll its status up, close the parent run, fail if not FINISHED.

Three steps: :func:`read_facts` (Airflow's task states, the tasks' XCom results, the work store's plan and,
when tracked, the MLflow child runs under the parent run) → :func:`ragtrail_airflow.rag.verdict.decide` (a
pure function: status, reasons, summary) → :func:`write_outcome` (the parent run's tags, metrics and
``rollup.json``, the ``summary`` XCom, the run's work files).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ragtrail.core import env_kit
from ragtrail.trail.names import PRODUCT_TAG, VERSION_TAG
from ragtrail.trail.rollup import FINISHED
from ragtrail_airflow.config import run_url, tracking_enabled
from ragtrail_airflow.rag.verdict import RunFacts, airflow_units, decide, parent_run_figures

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

SUMMARY_KEY = "summary"


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

    from ragtrail_airflow.rag.s3 import open_work

    ti = context["ti"]
    work = open_work(ti.dag_id, ti.run_id)
    facts, client = read_facts(context, publishing_tasks, work)
    roll, summary = decide(facts)
    write_outcome(ti, client, facts, roll, summary, work)
    if roll.status != FINISHED:
        raise AirflowFailException(f"pipeline {roll.status}: " + "; ".join(roll.reasons))
    return summary


# Reading

def read_facts(context: Context, publishing_tasks: tuple[str, ...] | None, work) -> tuple[RunFacts, Any]:
    """What the roll-up decides on, and the guarded MLflow client it read the trail with (``None`` untracked)."""
    ti, params = context["ti"], context["params"]
    me = ti.task_id
    task_ids = [t for t in context["dag"].task_ids if t != me]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    af_units = airflow_units({k: v for k, v in states.items() if k != me}, task_ids)
    results = {tid: _pull(ti, tid) for tid in task_ids}
    t_end = time.time()
    client, read = _read_trail(context, af_units, task_ids, t_end) if tracking_enabled() else (None, {})
    if read.get("units") is None:  # tracking off, or MLflow unavailable (lenient): Airflow's task states decide
        started = getattr(context.get("dag_run"), "start_date", None)
        read.update(units=None, duration_s=t_end - started.timestamp() if started else None)
    publishing = publishing_tasks or getattr(context.get("task"), "publishing", None) or ("index",)
    return RunFacts(product=params["product"], version=params["version"], dag_id=ti.dag_id, run_id=ti.run_id,
                    task_ids=task_ids, airflow_units=af_units, results=results, planned=work.read_plan() or {},
                    publishing=publishing, **read), client


def _pull(ti, task_id: str):
    from ragtrail_airflow.rag.xcom_lists import as_list

    value = ti.xcom_pull(task_ids=task_id)
    return value if value is None or isinstance(value, (dict, str, int, float)) else as_list(value)


def _read_trail(context: Context, af_units: dict, task_ids: list[str], t_end: float) -> tuple[Any, dict]:
    """The parent run (found, merged or created; the roll-up's "MLflow pipeline run" link persisted) and its
    child runs as units; on an MLflow error (lenient) ``units`` is ``None`` and ``trail["error"]`` says why."""
    from ragtrail.trail.client import get_or_create_experiment, guarded_client
    from ragtrail.trail.closer import read_units
    from ragtrail.trail.runs import find_or_create_parent, merge_parents, origin_tags, parent_run_name
    from ragtrail_airflow.config import airflow_origin, policy
    from ragtrail_airflow.links import MLflowLink
    from ragtrail_airflow.operator import RUN_PARAMS

    ti, params = context["ti"], context["params"]
    client = guarded_client(policy())
    trail: dict[str, Any] = {"missing_runs": [], "closed_runs": [], "error": None}
    try:
        exp_id = get_or_create_experiment(client, params["product"])
        origin = airflow_origin(context.get("dag_run"), dag_id=ti.dag_id, run_id=ti.run_id)
        parent = merge_parents(client, exp_id, ti.dag_id, ti.run_id) or find_or_create_parent(
            client, exp_id, dag_id=ti.dag_id, run_id=ti.run_id,
            tags={PRODUCT_TAG: params["product"], VERSION_TAG: params["version"],
                  **origin_tags(origin, dag_id=ti.dag_id, run_id=ti.run_id)},
            params={k: params[k] for k in RUN_PARAMS if k in params},
            run_name=parent_run_name(params["product"], params["version"], origin))
        # The roll-up's "MLflow pipeline run" button opens the parent run.
        MLflowLink.persist(ti, experiment_id=exp_id, run_id=parent, parent_run_id=parent, operator=context["task"])
        # A mapped task (chunk, embed) is a mapped operator: its operator class says what it is.
        tracked_ids = {t.task_id for t in context["dag"].tasks if "@task.tracked" in (
            getattr(t, "custom_operator_name", None),
            getattr(getattr(t, "operator_class", None), "custom_operator_name", None))}
        units, found = read_units(client, exp_id, parent, af_units, t_end, task_ids, tracked_ids)
        trail.update(found)
        duration_s = t_end - client.get_run(parent).info.start_time / 1000
        mlflow = {"parent_run_id": parent, "experiment_id": exp_id, "mlflow_url": run_url(exp_id, parent)}
        return client, {"units": units, "trail": trail, "duration_s": duration_s, "mlflow": mlflow}
    except Exception as err:
        _tracking_failed(client, err, trail)
        return client, {"units": None, "trail": trail}


def _tracking_failed(client, err: Exception, trail: dict) -> None:
    """Strict: fail the roll-up naming the tracking URI. Lenient: note it and go on."""
    from ragtrail.trail.guard import tracking_failed

    trail["error"] = tracking_failed(client.guard.policy, client.guard.uri, "in the roll-up", err,
                                     "deciding from Airflow task states")[:1000]


# Writing

def write_outcome(ti, client, facts: RunFacts, roll, summary: dict, work) -> None:
    """The roll-up on the parent run (when MLflow was read), the ``summary`` XCom, the run's work files."""
    if facts.units is not None:  # the trail was read: its parent run takes the roll-up and ends
        try:
            _log_rollup(client, summary["parent_run_id"], roll, facts.units, facts.duration_s, summary)
        except Exception as err:
            _tracking_failed(client, err, summary["trail"])
            summary["trail"]["complete"] = False
    ti.xcom_push(key=SUMMARY_KEY, value=summary)
    settle_work(work, roll.status)
    log.info("pipeline %s: %s", roll.status, summary["promotion"])


def _log_rollup(client, parent: str, roll, units: list, duration_s: float | None, summary: dict) -> None:
    from ragtrail.trail.closer import log_rollup

    metrics, tags = parent_run_figures(roll, units, summary)
    log_rollup(client, parent, roll, duration_s=duration_s, trail=summary["trail"], metrics=metrics, tags=tags,
               summary=summary)


def settle_work(work, status: str) -> None:
    """A FINISHED run's hand-off files are removed (store and local folder) unless ``RAGTRAIL_KEEP_WORK``;
    a PARTIAL or FAILED run keeps them for a look or a rerun. A failed clean-up only logs a warning."""
    try:
        if status == FINISHED and not env_kit.KEEP_WORK.get():
            removed = work.remove()
            log.info("work files of this run removed (%s in the work store)", removed)
        else:
            work.release()
    except Exception as err:  # the run's outcome stands; the files are only left behind
        log.warning("could not remove this run's work files: %s", err)
