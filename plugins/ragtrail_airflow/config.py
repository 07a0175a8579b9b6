"""The ``[ragtrail]`` section of Airflow's configuration, read here and handed to the trail as plain values.

The trail (:mod:`ragtrail.trail.switches`) reads the environment first; these functions add what
Airflow's configuration says. Only Airflow processes (tasks, the API server, the CLI's in-process DAG
runs) use this module: code outside Airflow, such as ``@track`` in a notebook, goes to the trail directly.
"""

from __future__ import annotations

import os

from ragtrail.core import env
from ragtrail.trail import names, switches
from ragtrail.trail.guard import Policy

# The options Airflow's provider metadata declares (see ragtrail_airflow.get_provider_info): the table's.
OPTIONS = tuple(var.option for var in env.ALL if var.option)


def airflow_conf(key: str, fallback: str, section: str = "ragtrail") -> str:
    """Option ``key`` of an Airflow config section (``fallback`` when unset)."""
    from airflow.sdk import conf

    return conf.get(section, key, fallback=fallback) or fallback


def ragtrail_section() -> dict[str, str]:
    """The ``[ragtrail]`` options that are set, as plain strings (empty outside Airflow)."""
    values = {key: airflow_conf(key, "") for key in OPTIONS}
    return {k: v for k, v in values.items() if v != ""}


def tracking_enabled() -> bool:
    """Whether tracked tasks log to MLflow (``RAGTRAIL_TRACKING=off`` or ``[ragtrail] tracking_enabled``)."""
    return switches.tracking_enabled(ragtrail_section())


def policy(**changes) -> Policy:
    """The guard's policy: environment first, then ``[ragtrail]``; ``changes`` override fields."""
    base = Policy.from_env(ragtrail_section())
    return base.replace(**changes) if changes else base


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI for links (``RAGTRAIL_MLFLOW_UI_URL`` or ``[ragtrail] mlflow_ui_url``)."""
    return switches.ui_url(ragtrail_section())


def run_url(experiment_id: str, run_id: str) -> str:
    return names.run_url(mlflow_ui_url(), experiment_id, run_id)


def airflow_ui_url() -> str:
    """Base URL of the Airflow UI for links back from MLflow (``[api] base_url``; ``make ui`` sets it)."""
    url = os.environ.get("AIRFLOW__API__BASE_URL") or airflow_conf("base_url", "", section="api")
    return (url or "http://localhost:8080").rstrip("/")


def dag_run_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a DAG run."""
    from urllib.parse import quote

    return f"{airflow_ui_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_instance_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The Airflow UI page of a task instance (``/mapped/<i>`` for one map index)."""
    from urllib.parse import quote

    url = f"{dag_run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return url if map_index is None or map_index < 0 else f"{url}/mapped/{map_index}"


def airflow_origin(dag_run, *, dag_id: str, run_id: str, task_id: str | None = None,
                   map_index: int = -1) -> dict:
    """Where a run comes from in Airflow: UI URLs of the DAG run and task instance, who triggered it,
    the run type and time (``dag_run`` is the task context's, or ``None``); the trail turns it into
    tags (:func:`ragtrail.trail.runs.origin_tags`)."""
    import getpass

    when = None
    for attr in ("run_after", "logical_date", "start_date"):
        when = when or getattr(dag_run, attr, None)
    run_type = getattr(dag_run, "run_type", None)
    run_type = getattr(run_type, "value", run_type) or run_id.split("__", 1)[0]
    try:
        user = getattr(dag_run, "triggering_user_name", None) or getpass.getuser()
    except Exception:  # no user name in a container without /etc/passwd entry
        user = "airflow"
    origin = {"dag_run_url": dag_run_url(dag_id, run_id), "user": str(user), "run_type": str(run_type),
              "when": when.strftime("%Y-%m-%d %H:%M") if when else ""}
    if task_id:
        origin["task_url"] = task_instance_url(dag_id, run_id, task_id, map_index)
    return origin


def kit_installed() -> bool:
    """Whether the RAG kit's dependencies (``pip install 'ragtrail[rag]'``) are here: the provider alone runs
    without them, and leaves out what needs them (the store's health, the registry webhook)."""
    from importlib.util import find_spec

    return find_spec("qdrant_client") is not None
