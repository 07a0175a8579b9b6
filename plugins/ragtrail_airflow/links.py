"""The "MLflow run" button on every tracked task, and "MLflow pipeline run" (the DAG run's parent run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

from ragtrail_airflow.config import run_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

XCOM_KEY = "mlflow_run"


class MLflowRunLink(BaseOperatorLink):
    """Opens the task try's MLflow run.

    The operator pushes ``{"experiment_id", "run_id"}`` to XCom under ``mlflow_run`` when the run
    starts; Airflow calls :meth:`get_link` on the worker when the task ends and stores the URL, so
    the UI never recomputes anything.
    """

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
        if not value or not value.get("run_id"):
            return ""
        return run_url(value["experiment_id"], value["run_id"])


class MLflowPipelineRunLink(BaseOperatorLink):
    """Opens the DAG run's parent run (the pipeline run): on every tracked task and on the roll-up."""

    name = "MLflow pipeline run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
        if not value or not value.get("parent_run_id"):
            return ""
        return run_url(value["experiment_id"], value["parent_run_id"])
