"""Import MLflow once in the scheduler, so that LocalExecutor task processes start with it loaded.

Every task of a UI-triggered run is a new process, and each spent 2-3.5 s importing MLflow before it
could open its run (metric ``tracking_setup_s``). The LocalExecutor forks its workers from the
scheduler and each task process from a worker: a module the scheduler imported before that is
already there, for free. This listener's ``on_starting`` runs when the scheduler's job starts, before
the executor forks anything. MLflow starts no threads and opens nothing at import, so forking after
it is safe; torch and the Qdrant client (gRPC) are deliberately not preloaded.

Off with ``RAGTRAIL_PRELOAD_MLFLOW=off``; other executors and components are left alone (a Celery worker
preloads through :mod:`ragtrail_airflow.celery_config`, with the same :func:`preload_mlflow`).
"""

from __future__ import annotations

import logging
import os
import sys

from airflow.listeners import hookimpl

from ragtrail.core import env

log = logging.getLogger(__name__)


def _is_local_scheduler() -> bool:
    if sys.argv[1:2] != ["scheduler"] or not env.PRELOAD_MLFLOW.get():
        return False
    from airflow.configuration import conf

    return conf.get("core", "executor", fallback="").split(",")[0].strip().endswith("LocalExecutor")


@hookimpl
def on_starting(component) -> None:
    # A Job is the scheduler's, triggerer's or dag-processor's; task processes forked from the
    # scheduler keep its argv, and need nothing from here.
    if type(component).__name__ != "Job" or not _is_local_scheduler():
        return
    preload_mlflow("the scheduler")


def preload_mlflow(where: str) -> None:
    """Import MLflow here, in a process that forks task processes (``where`` names it in a warning)."""
    # Task processes inherit MLflow's logging set-up from here: no stderr handler of its own (see
    # ragtrail_airflow.operator.quiet_progress_bars), its records go through Airflow's logging.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    try:
        from ragtrail.trail.task_run import preload

        preload()
    except Exception:  # a task imports it itself, as before
        log.warning("could not preload MLflow in %s", where, exc_info=True)
