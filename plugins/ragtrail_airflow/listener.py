"""The listener that trails any DAG that opts in: a child run per task try, the DAG-run closer at the end.

A DAG opts in with a tag (``mlflow`` by default; ``[ragtrail] dag_tags``, comma-separated) or all DAGs
do (``[ragtrail] track_all_dags = True``). Then, with no change to the task code:

- ``on_task_instance_running`` (in the task's own process, Airflow 3) opens a child run of the DAG
  run's parent run (found or created by tags, the pipeline's run layout from :mod:`ragtrail.trail`),
  pushes its ids to XCom for the "MLflow run" links and exports ``MLFLOW_RUN_ID``,
  ``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_TRACKING_URI``: the task's own ``mlflow.log_metric(...)``
  lands in its run. Optional per DAG: the tag ``mlflow.autolog`` calls ``mlflow.autolog()``;
  ``mlflow.log_returns`` logs a returned dict of numbers as metrics.
- ``on_task_instance_success`` / ``_failed`` / ``_skipped`` end it FINISHED / FAILED (with the error
  class and message) and put the environment back.
- ``on_dag_run_success`` / ``_failed`` (the scheduler, or the API server when a person sets the state)
  hand the DAG run to :mod:`ragtrail_airflow.dagrun_closer`.

Tasks that open their own run (``@task.tracked``, ``@task.rollup``) are left alone. Never in the way:
every hook catches everything (a listener error is a warning in the task log), MLflow calls go
through the trail's guard (bounded by the ``[ragtrail]`` budget), and ``RAGTRAIL_TRACKING=off``
makes every hook return at once.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

OWN_RUN_OPERATORS = {"@task.tracked", "@task.rollup"}
AUTOLOG_TAG, RETURNS_TAG = "mlflow.autolog", "mlflow.log_returns"
_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI")
# The runs this process opened, by task instance (one in a worker; several in an in-process dag.test).
_OPEN: dict[tuple, tuple[Any, float, dict[str, str | None]]] = {}


def opted_in(tags, section: dict[str, str]) -> bool:
    """Whether a DAG with these tags is tracked (``[ragtrail] track_all_dags`` / ``dag_tags``)."""
    from ragtrail.core import env
    from ragtrail.trail.switches import setting

    if setting(env.TRACK_ALL_DAGS, section):
        return True
    wanted = {t.strip() for t in setting(env.DAG_TAGS, section).split(",") if t.strip()}
    return bool(wanted & set(tags or ()))


def _operator_name(task) -> str:
    name = getattr(task, "custom_operator_name", None) or getattr(
        getattr(task, "operator_class", None), "custom_operator_name", None)
    return name or type(task).__name__


def _key(ti) -> tuple:
    return (ti.dag_id, ti.run_id, ti.task_id, ti.map_index if ti.map_index is not None else -1, ti.try_number)


def _wanted(ti) -> tuple[bool, dict[str, str]]:
    """Whether this listener tracks the task instance (a worker's ``RuntimeTaskInstance`` only)."""
    task = getattr(ti, "task", None)
    if task is None or not hasattr(ti, "get_template_context"):  # the API server's TaskInstance rows
        return False, {}
    from ragtrail_airflow.config import ragtrail_section

    section = ragtrail_section()
    from ragtrail.trail.switches import tracking_enabled

    if not tracking_enabled(section) or _operator_name(task) in OWN_RUN_OPERATORS:
        return False, section
    return opted_in(getattr(task.dag, "tags", ()), section), section


@hookimpl
def on_task_instance_running(previous_state, task_instance) -> None:
    try:
        wanted, section = _wanted(task_instance)
        if wanted:
            _start(task_instance, section)
    except Exception:
        log.warning("ragtrail: could not open the MLflow run of %s; the task runs untracked",
                    getattr(task_instance, "task_id", "?"), exc_info=True)


def _start(ti, section: dict[str, str]) -> None:
    from ragtrail.trail.names import redact
    from ragtrail.trail.task_run import TaskRun
    from ragtrail_airflow.config import airflow_origin, policy
    from ragtrail_airflow.links import MLflowLink

    t0 = time.perf_counter()
    dag_run = ti.get_template_context().get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    map_index = ti.map_index if ti.map_index is not None else -1
    run = TaskRun(origin=airflow_origin(dag_run, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                                        map_index=map_index),
                  dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=ti.try_number,
                  map_index=map_index, product=ti.dag_id, version=None, experiment_kind="dag",
                  parent_params=conf, policy=policy(), task_tags={"airflow.operator": _operator_name(ti.task)})
    run.start()
    if not run.mlflow_run_id:  # MLflow unavailable (lenient): the task runs untracked
        return
    run.recorder.param(**{k: redact(k, v) for k, v in conf.items()})
    MLflowLink.persist(ti, experiment_id=run.experiment_id, run_id=run.mlflow_run_id,
                       parent_run_id=run.parent_run_id)  # the global links read it from the database
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update({"MLFLOW_RUN_ID": run.mlflow_run_id, "MLFLOW_EXPERIMENT_ID": run.experiment_id,
                       "MLFLOW_TRACKING_URI": run.client.tracking_uri})
    _OPEN[_key(ti)] = (run, t0, saved)
    if AUTOLOG_TAG in set(getattr(ti.task.dag, "tags", ()) or ()):
        import mlflow

        mlflow.autolog(silent=True)


@hookimpl
def on_task_instance_success(previous_state, task_instance) -> None:
    _finish(task_instance, "FINISHED")


@hookimpl
def on_task_instance_skipped(previous_state, task_instance) -> None:
    _finish(task_instance, "FINISHED", skipped=True)


@hookimpl
def on_task_instance_failed(previous_state, task_instance, error) -> None:
    _finish(task_instance, "FAILED", error=error)
    try:  # a tracked task Airflow failed after its callable returned: its own run says why
        if _operator_name(getattr(task_instance, "task", None)) == "@task.tracked":
            from ragtrail_airflow.failures import record_late_failure

            record_late_failure(task_instance.task, error)
    except Exception:
        log.warning("ragtrail: could not record why %s failed", getattr(task_instance, "task_id", "?"),
                    exc_info=True)


def _finish(ti, status: str, error=None, skipped: bool = False) -> None:
    opened = _OPEN.pop(_key(ti), None) if hasattr(ti, "get_template_context") else None
    if opened is None:
        return
    run, t0, saved = opened
    try:
        _restore_env(saved, run.mlflow_run_id, status)
        if error is not None:
            from ragtrail.trail.names import ERROR_CLASS_TAG, ERROR_TAG, error_tags

            run.recorder.tag(**(error_tags(error) if isinstance(error, BaseException) else
                                {ERROR_TAG: str(error)[:4000], ERROR_CLASS_TAG: "error"}))
        if skipped:
            from ragtrail.trail.names import SKIPPED_TAG

            run.recorder.tag(**{SKIPPED_TAG: "true"})
        if status == "FINISHED" and RETURNS_TAG in set(getattr(ti.task.dag, "tags", ()) or ()):
            run.recorder.metric(**returned_numbers(ti))
        run.recorder.metric(duration_s=time.perf_counter() - t0)
        run.end(status)
    except Exception:
        log.warning("ragtrail: could not end the MLflow run of %s (the DAG-run closer will)", ti.task_id,
                    exc_info=True)


def _restore_env(saved: dict[str, str | None], run_id: str, status: str) -> None:
    """Put the environment back; end the fluent API's run if the task's code resumed ours (so that
    MLflow's own exit handler cannot mark a failed task's run FINISHED later)."""
    import sys

    fluent = sys.modules.get("mlflow")
    if fluent is not None:
        active = fluent.active_run()
        if active is not None and active.info.run_id == run_id:
            fluent.end_run(status)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def returned_numbers(ti) -> dict[str, float]:
    """The task's return value as metrics, when it is a dict of numbers (else nothing)."""
    value = ti.xcom_pull(task_ids=ti.task_id, key="return_value", map_indexes=ti.map_index)
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    _close(dag_run, msg)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    _close(dag_run, msg)


def _close(dag_run, msg: str) -> None:
    try:
        from ragtrail_airflow.dagrun_closer import close_when_ended

        close_when_ended(dag_run, msg)
    except Exception:
        log.warning("ragtrail: could not close the MLflow trail of %s / %s", getattr(dag_run, "dag_id", "?"),
                    getattr(dag_run, "run_id", "?"), exc_info=True)
