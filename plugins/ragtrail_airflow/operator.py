"""``@task.tracked``: a TaskFlow task that runs inside its own MLflow run.

Example (in a DAG file, importing nothing but ``airflow.sdk``)::

    @task.tracked(stage="chunk")
    def chunk(docs: dict, params=None, tracker=None):
        from ragtrail.chunking import chunk_documents
        return chunk_documents(docs["docs_path"], ..., recorder=tracker)

The operator opens a child run of the DAG run's parent run, hands the task a
:class:`ragtrail.recorder.Recorder` as ``tracker`` (and the run's ids as ``tracked_run``, ``None`` with
tracking off), logs what it recorded in batches, and ends the run
FINISHED, FAILED (re-raising) or KILLED (``on_kill``). With tracking off the task gets a recorder all
the same and nothing reaches MLflow. When MLflow is unavailable, lenient mode (the default) runs the
task untracked and strict mode fails it (see :mod:`ragtrail_airflow.resilience`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from ragtrail.recorder import Recorder
from ragtrail_airflow.config import tracking_enabled
from ragtrail_airflow.links import XCOM_KEY, MLflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

    from ragtrail_airflow.tracking import TaskRun

# DAG params that describe the run; they become the parent run's params.
RUN_PARAMS = ("source", "product", "version", "chunk_size", "chunk_overlap", "embedder", "embed_backend", "batch_size",
              "aws_conn_id", "max_file_mb", "id_column", "text_column", "metadata_columns", "eval_queries",
              "min_ndcg", "eval_tolerance", "promote")


class TrackedPythonOperator(DecoratedOperator, PythonOperator):
    """Run a Python callable inside an MLflow child run of the DAG run's parent run.

    Args:
        stage: the pipeline stage this task implements (tag ``ragtrail.stage``); defaults to the task id.
    """

    custom_operator_name = "@task.tracked"
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")
    template_fields_renderers = {"templates_dict": "json", "op_args": "py", "op_kwargs": "py"}
    operator_extra_links = (MLflowRunLink(),)

    def __init__(self, *, python_callable: Callable, op_args, op_kwargs, stage: str | None = None, **kwargs):
        self.stage = stage
        self._task_run: TaskRun | None = None
        super().__init__(
            kwargs_to_upstream={"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs},
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        from ragtrail.progress import run_stage, stage_label

        ti = context["ti"]
        return run_stage(stage_label(ti.task_id, ti.map_index), lambda: self._execute(context))

    def _execute(self, context: Context) -> Any:
        if not tracking_enabled():
            context["tracker"] = Recorder()  # type: ignore[typeddict-unknown-key]
            context["tracked_run"] = None  # type: ignore[typeddict-unknown-key]
            return super().execute(context)

        from ragtrail_airflow.tracking import TaskRun

        params = context["params"]
        ti = context["ti"]
        run = TaskRun(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=ti.try_number,
            map_index=ti.map_index if ti.map_index is not None else -1, stage=self.stage or ti.task_id,
            product=params["product"], version=params["version"],
            parent_params={k: params[k] for k in RUN_PARAMS if k in params},
        )
        self._task_run = run
        with run:
            if run.mlflow_run_id:  # None when MLflow was unavailable (lenient mode)
                ti.xcom_push(key=XCOM_KEY, value={"experiment_id": run.experiment_id, "run_id": run.mlflow_run_id,
                                                  "parent_run_id": run.parent_run_id})
            context["tracker"] = run.recorder  # type: ignore[typeddict-unknown-key]
            # Tasks that log more than a recorder can (a registered model) need the run itself.
            context["tracked_run"] = {"run_id": run.mlflow_run_id,  # type: ignore[typeddict-unknown-key]
                                      "experiment_id": run.experiment_id, "parent_run_id": run.parent_run_id}
            return super().execute(context)

    def on_kill(self) -> None:
        if self._task_run is not None:
            self._task_run.kill()
        super().on_kill()


def tracked_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None,
                 **kwargs) -> TaskDecorator:
    """Wrap a function into a :class:`TrackedPythonOperator` (registered as ``@task.tracked``)."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=TrackedPythonOperator,
        **kwargs,
    )
