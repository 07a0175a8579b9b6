"""The "MLflow run" button on every tracked task, and "MLflow pipeline run" (the DAG run's parent run).

Two ways in, one XCom (``mlflow_run``: ``{"experiment_id", "run_id", "parent_run_id"}``, pushed when the
task's run opens): an operator's own links (``@task.tracked``) are computed on the worker when the
task ends and stored; the plugin's global links (every task of every DAG, for the listener's tasks)
are computed by the API server when the UI asks, reading that XCom from Airflow's database. A task
without the XCom (untracked) shows the button disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

from ragtrail_airflow.config import run_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

XCOM_KEY = "mlflow_run"
_REF_ATTR = "_ragtrail_mlflow_run"


def push_run_ref(ti, operator, value: dict) -> None:
    """Push the ``mlflow_run`` XCom and keep it on the operator, where its own links read it.

    Airflow computes an operator's links in the task's process when it ends, in any state; asking the
    execution API for an XCom that a skipped task never pushed logs "XCom not found" at ERROR.
    """
    ti.xcom_push(key=XCOM_KEY, value=value)
    setattr(operator, _REF_ATTR, value)


def _pushed(operator) -> dict:
    """What this task try pushed under ``mlflow_run`` (nothing when it opened no run: no lookup)."""
    return getattr(operator, _REF_ATTR, None) or {}


class MLflowRunLink(BaseOperatorLink):
    """Opens the task try's MLflow run.

    The operator pushes ``{"experiment_id", "run_id"}`` to XCom under ``mlflow_run`` when the run
    starts (:func:`push_run_ref`, which keeps it on the operator too); Airflow calls :meth:`get_link` on
    the worker when the task ends and stores the URL, so the UI never recomputes anything.
    """

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = _pushed(operator)
        return run_url(value["experiment_id"], value["run_id"]) if value.get("run_id") else ""


class MLflowPipelineRunLink(BaseOperatorLink):
    """Opens the DAG run's parent run (the pipeline run): on every tracked task and on the roll-up."""

    name = "MLflow pipeline run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = _pushed(operator)
        return run_url(value["experiment_id"], value["parent_run_id"]) if value.get("parent_run_id") else ""


def _stored(ti_key) -> dict | None:
    """The ``mlflow_run`` XCom of a task instance, read from Airflow's database (the API server)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=ti_key.run_id, key=XCOM_KEY, dag_ids=ti_key.dag_id,
                                                 task_ids=ti_key.task_id, map_indexes=ti_key.map_index)
                              .limit(1)).first()
        return XComModel.deserialize_value(row) if row is not None else None


class GlobalMLflowRunLink(MLflowRunLink):
    """"MLflow run" on every task of every DAG (the plugin's global link), read by the API server."""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = _stored(ti_key)
        return run_url(value["experiment_id"], value["run_id"]) if value and value.get("run_id") else ""


class GlobalMLflowPipelineRunLink(MLflowPipelineRunLink):
    """"MLflow pipeline run" on every task of every DAG (the plugin's global link)."""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = _stored(ti_key)
        return run_url(value["experiment_id"], value["parent_run_id"]) if value and value.get("parent_run_id") else ""
