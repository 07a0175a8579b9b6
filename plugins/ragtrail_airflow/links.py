"""The "MLflow run" button on every tracked task, and "MLflow pipeline run" (the DAG run's parent run).

One base, :class:`MLflowLink` (as the Amazon provider's ``BaseAwsLink``): the task *persists* what the link
needs — one XCom, ``mlflow_run``: ``{"experiment_id", "run_id", "parent_run_id"}``, pushed when the task's
run opens (:meth:`MLflowLink.persist`) — and :meth:`MLflowLink.get_link` only formats it. Each link says
which of the pushed ids it opens (``run_field``) and where it reads the reference (:meth:`MLflowLink.ref`):

- an operator's own links (``@task.tracked``, ``@task.rollup``) are computed on the worker when the task
  ends and stored; they read the reference the task kept on the operator when it persisted it, never
  the execution API (a skipped task that pushed nothing asks for nothing: no "XCom not found" line);
- the plugin's global links (every task of every DAG, for the listener's tasks) are computed by the API
  server when the UI asks, reading the XCom from Airflow's database.

A task without the reference (untracked) shows the button disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from airflow.sdk import BaseOperatorLink

from ragtrail_airflow.config import run_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

XCOM_KEY = "mlflow_run"
_REF_ATTR = "_ragtrail_mlflow_run"


class MLflowLink(BaseOperatorLink):
    """Base of the MLflow links: ``persist`` stores the reference, ``get_link`` formats it."""

    name: ClassVar[str]
    key: ClassVar[str] = XCOM_KEY
    run_field: ClassVar[str]  # which id of the reference this link opens

    @classmethod
    def persist(cls, ti, *, experiment_id: str, run_id: str, parent_run_id: str | None,
                operator: BaseOperator | None = None) -> None:
        """Push the reference to XCom under :attr:`key` and keep it on ``operator``, whose own links read it.

        Airflow computes an operator's links in the task's process when it ends, in any state; asking the
        execution API for an XCom that a skipped task never pushed logs "XCom not found" at ERROR.
        """
        value = {"experiment_id": experiment_id, "run_id": run_id, "parent_run_id": parent_run_id}
        ti.xcom_push(key=cls.key, value=value)
        if operator is not None:
            setattr(operator, _REF_ATTR, value)

    def ref(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> dict | None:
        """What this task try persisted (nothing when it opened no run: no lookup)."""
        return getattr(operator, _REF_ATTR, None)

    def format_link(self, ref: dict | None) -> str:
        """The MLflow UI URL of the run this link opens, or ``""`` (the button disabled)."""
        run_id = (ref or {}).get(self.run_field)
        return run_url(ref["experiment_id"], run_id) if run_id else ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return self.format_link(self.ref(operator, ti_key))


class MLflowRunLink(MLflowLink):
    """Opens the task try's MLflow run (on every ``@task.tracked`` task)."""

    name = "MLflow run"
    run_field = "run_id"


class MLflowPipelineRunLink(MLflowLink):
    """Opens the DAG run's parent run (the pipeline run): on every tracked task and on the roll-up."""

    name = "MLflow pipeline run"
    run_field = "parent_run_id"


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

    def ref(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> dict | None:
        return _stored(ti_key)


class GlobalMLflowPipelineRunLink(MLflowPipelineRunLink):
    """"MLflow pipeline run" on every task of every DAG (the plugin's global link)."""

    def ref(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> dict | None:
        return _stored(ti_key)
