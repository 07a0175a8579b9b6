"""Airflow's Celery settings, plus MLflow imported once per Celery worker rather than once per task.

A Celery worker runs each task instance in a process forked from one of its pool processes, which are forked
from the worker's main process; whatever the main process imported before its pool started is there in every
task for free. Airflow itself preloads a few expensive modules this way (the ``import_modules`` signal, which
the worker sends before it starts its pool); this module adds MLflow's client and, for a SQL tracking store,
its configured ORM (:func:`ragtrail.trail.task_run.preload`), which a task process otherwise spends 1-3 s on
before it can open its run (``tracking_setup_s``). The LocalExecutor's scheduler does the same through
:mod:`ragtrail_airflow.preload`.

Use it as the Celery config (docker-compose.yml does)::

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=ragtrail_airflow.celery_config.CELERY_CONFIG

``CELERY_CONFIG`` is Airflow's own configuration unchanged; off with ``RAGTRAIL_PRELOAD_MLFLOW=off``.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

from ragtrail.core import env
from ragtrail_airflow.preload import preload_mlflow

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)


@import_modules.connect
def preload_in_worker(*_args, **_kwargs) -> None:
    """In a Celery worker's main process, before its pool starts: import MLflow for every task process."""
    if env.PRELOAD_MLFLOW.get():
        preload_mlflow("the Celery worker")
