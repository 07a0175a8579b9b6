"""Tracking switches, read from the environment first and Airflow's ``[ragtrail]`` section second."""

from __future__ import annotations

import os
import sys

from ragtrail.settings import env_flag


def airflow_conf(key: str, fallback: str) -> str:
    """Option ``key`` of Airflow's ``[ragtrail]`` section, or ``fallback`` outside Airflow.

    Outside an Airflow process (a notebook using ``@track``) Airflow is not imported just to read its
    configuration: importing it would create a default ``~/airflow`` home.
    """
    if "airflow" not in sys.modules:
        return fallback
    try:
        from airflow.sdk import conf

        return conf.get("ragtrail", key, fallback=fallback)
    except Exception:  # outside Airflow (a notebook): the default stands
        return fallback


def tracking_enabled() -> bool:
    """Whether tracked tasks log to MLflow (``RAGTRAIL_TRACKING=off`` or ``[ragtrail] tracking_enabled``)."""
    flag = env_flag("RAGTRAIL_TRACKING")
    if flag is not None:
        return flag
    return airflow_conf("tracking_enabled", "True").strip().lower() not in {"0", "false", "no", "off"}


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI for links (``RAGTRAIL_MLFLOW_UI_URL`` or ``[ragtrail] mlflow_ui_url``)."""
    url = os.environ.get("RAGTRAIL_MLFLOW_UI_URL") or airflow_conf("mlflow_ui_url", "http://127.0.0.1:5000")
    return url.rstrip("/")


def run_url(experiment_id: str, run_id: str) -> str:
    from ragtrail.queries import CLASSIC_VIEW

    return f"{mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}{CLASSIC_VIEW}"


def tracking_strict() -> bool:
    """Whether a task fails when MLflow is unavailable (``RAGTRAIL_TRACKING_MODE=strict``)."""
    from ragtrail_airflow.resilience import Policy

    return Policy.from_env().strict


def airflow_ui_url() -> str:
    """Base URL of the Airflow UI for links back from MLflow (``[api] base_url``; ``make ui`` sets it)."""
    url = os.environ.get("AIRFLOW__API__BASE_URL") or airflow_conf_section("api", "base_url", "")
    return (url or "http://localhost:8080").rstrip("/")


def airflow_conf_section(section: str, key: str, fallback: str) -> str:
    if "airflow" not in sys.modules:
        return fallback
    try:
        from airflow.sdk import conf

        return conf.get(section, key, fallback=fallback) or fallback
    except Exception:  # outside Airflow: the default stands
        return fallback


def dag_run_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a DAG run."""
    from urllib.parse import quote

    return f"{airflow_ui_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_instance_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The Airflow UI page of a task instance (``/mapped/<i>`` for one map index)."""
    from urllib.parse import quote

    url = f"{dag_run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return url if map_index is None or map_index < 0 else f"{url}/mapped/{map_index}"
