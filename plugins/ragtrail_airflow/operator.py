"""``@task.tracked``: a TaskFlow task that runs inside its own MLflow run.

Example (in a DAG file, importing nothing but ``airflow.sdk``)::

    @task.tracked(stage="chunk")
    def chunk(docs: dict, params=None, tracker=None):
        from ragtrail.stages.chunking import chunk_documents
        return chunk_documents(docs["docs_path"], ..., recorder=tracker)

The operator opens a child run of the DAG run's parent run (a mapped task: one run shared by all its map
indexes, each map index's figures a metric step at ``step = map_index``; see :class:`ragtrail.trail.task_run.TaskRun`), hands the task a
:class:`ragtrail.core.recorder.Recorder` as ``tracker`` (and the run's ids as ``tracked_run``, ``None`` with
tracking off), logs what it recorded in batches, and ends the run
FINISHED, FAILED (re-raising) or KILLED (``on_kill``). With tracking off the task gets a recorder all
the same and nothing reaches MLflow. When MLflow is unavailable, lenient mode (the default) runs the
task untracked and strict mode fails it (see :mod:`ragtrail.trail.guard`). The ``[ragtrail]`` section
is read here and handed to the trail for the duration of the task.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from ragtrail.core.recorder import Recorder
from ragtrail.core.spec import RUN_PARAMS  # the params that describe the run: the parent run's params
from ragtrail.trail.switches import use_section
from ragtrail_airflow.config import ragtrail_section, tracking_enabled
from ragtrail_airflow.links import MLflowLink, MLflowPipelineRunLink, MLflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

    from ragtrail.trail.task_run import TaskRun

def quiet_progress_bars() -> None:
    """Nothing on a task process's raw stderr: Airflow logs it at ERROR, so the model's "Loading
    weights" bar and MLflow's own stderr handler ("WARNING mlflow.pyfunc: …") made every healthy run
    look broken. No progress bars (tqdm and huggingface_hub read these at import; an imported
    transformers is told too), and MLflow logs through the task's logging at its real level."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


class RagtrailDecoratedOperator(DecoratedOperator, PythonOperator):
    """The base of ragtrail's TaskFlow operators (``@task.tracked``, ``@task.rollup``): a Python task whose
    callable, args and kwargs go up to :class:`PythonOperator`; a subclass adds its own arguments, links and
    ``execute``, and :func:`decorator` makes its ``@task.<name>``."""

    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(self, *, python_callable: Callable, op_args, op_kwargs, **kwargs):
        super().__init__(
            kwargs_to_upstream={"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs},
            python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)


def decorator(operator_class: type[RagtrailDecoratedOperator], doc: str) -> Callable[..., TaskDecorator]:
    """The ``@task.<name>`` of ``operator_class`` (registered in the provider info's ``task-decorators``)."""

    def make(python_callable: Callable | None = None, multiple_outputs: bool | None = None,
             **kwargs) -> TaskDecorator:
        return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                      decorated_operator_class=operator_class, **kwargs)

    make.__doc__ = doc
    return make


class TrackedPythonOperator(RagtrailDecoratedOperator):
    """Run a Python callable inside an MLflow child run of the DAG run's parent run.

    Args:
        stage: the pipeline stage this task implements (tag ``ragtrail.stage``); defaults to the task id.
        needs: tasks of the same DAG run that must have succeeded for this one to do anything; when one
            did not, the task is skipped before any run is opened (an ``all_done`` task behind a failed
            stage is a consequence, not a second failure).
        fan_out: the run-spec param that sets how many items the task returns for a mapped downstream
            task (``docs_per_batch``); named in the message when the list passes Airflow's map limit
            (:func:`ragtrail_airflow.failures.check_fan_out`, checked inside the task's run).
    """

    custom_operator_name = "@task.tracked"
    template_fields_renderers = {"templates_dict": "json", "op_args": "py", "op_kwargs": "py"}
    operator_extra_links = (MLflowRunLink(), MLflowPipelineRunLink())

    def __init__(self, *, stage: str | None = None, needs: Sequence[str] = (), fan_out: str | None = None,
                 **kwargs):
        self.stage = stage
        self.needs = tuple(needs)
        self.fan_out = fan_out
        self._task_run: TaskRun | None = None
        super().__init__(**kwargs)

    def _skip_unless_needs_succeeded(self, context: Context) -> None:
        if not self.needs:
            return
        from airflow.sdk.exceptions import AirflowSkipException

        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=list(self.needs))
        states = states.get(ti.run_id, {})
        missing = [t for t in self.needs if states.get(t) != "success"]
        if missing:
            raise AirflowSkipException(f"not run: {', '.join(missing)} did not succeed")

    def execute(self, context: Context) -> Any:
        self._skip_unless_needs_succeeded(context)
        quiet_progress_bars()
        from ragtrail.core.progress import run_stage, stage_label

        ti = context["ti"]
        try:
            with use_section(ragtrail_section()):  # what the task body's @track calls see too
                return run_stage(stage_label(ti.task_id, ti.map_index), lambda: self._execute(context))
        finally:  # the run has logged the recorder's files: now the task may remove them (Recorder.close)
            tracker = context.get("tracker")
            if tracker is not None:
                tracker.close()

    def _execute(self, context: Context) -> Any:
        if not tracking_enabled():
            context["tracker"] = Recorder()  # type: ignore[typeddict-unknown-key]
            context["tracked_run"] = None  # type: ignore[typeddict-unknown-key]
            return self._checked(super().execute(context), context)

        from ragtrail.trail.task_run import TaskRun
        from ragtrail_airflow.config import airflow_origin, policy

        params = context["params"]
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        run = TaskRun(
            origin=airflow_origin(context.get("dag_run"), dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                                  map_index=map_index),
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=ti.try_number,
            map_index=map_index, stage=self.stage or ti.task_id,
            product=params["product"], version=params["version"],
            parent_params={k: params[k] for k in RUN_PARAMS if k in params}, policy=policy(),
            parent_tags=publishing_tag(context["dag"]),
            shared=True,  # a mapped task: one run for all its map indexes (the trail does not grow with the corpus)
        )
        self._task_run = run
        with run:
            if run.mlflow_run_id:  # None when MLflow was unavailable (lenient mode)
                MLflowLink.persist(ti, experiment_id=run.experiment_id, run_id=run.mlflow_run_id,
                                   parent_run_id=run.parent_run_id, operator=self)
            context["tracker"] = run.recorder  # type: ignore[typeddict-unknown-key]
            # Tasks that log more than a recorder can (a registered model) need the run itself.
            context["tracked_run"] = {"run_id": run.mlflow_run_id,  # type: ignore[typeddict-unknown-key]
                                      "experiment_id": run.experiment_id, "parent_run_id": run.parent_run_id}
            return self._checked(super().execute(context), context)

    def _checked(self, result: Any, context: Context) -> Any:
        """The callable's result, unless Airflow would refuse to map over it (then the cause, in words)."""
        from ragtrail_airflow.failures import check_fan_out

        check_fan_out(self, context["ti"].map_index, result, self.fan_out)
        return result

    def on_kill(self) -> None:
        if self._task_run is not None:
            self._task_run.kill()
        super().on_kill()


def publishing_tag(dag) -> dict[str, str]:
    """The parent run's ``ragtrail.publishing`` tag: the publishing tasks of the DAG's roll-up task."""
    from ragtrail.trail.names import PUBLISHING_TAG

    for t in getattr(dag, "tasks", ()):
        if isinstance(t, RollupPythonOperator):
            return {PUBLISHING_TAG: ",".join(t.publishing)}
    return {}


class RollupPythonOperator(RagtrailDecoratedOperator):
    """The roll-up task: a plain Python task whose "MLflow pipeline run" button opens the parent run
    (the callable pushes ``{"experiment_id", "parent_run_id"}`` to XCom under ``mlflow_run``).

    Args:
        publishing: the tasks whose success decides between PARTIAL and FAILED (``ragtrail.trail.rollup``);
            the tracked tasks tag the parent run with them, so the DAG-run closer rolls up the same way
            when this task never runs.
    """

    custom_operator_name = "@task.rollup"
    operator_extra_links = (MLflowPipelineRunLink(),)

    def __init__(self, *, publishing: Sequence[str] = ("index",), **kwargs):
        self.publishing = tuple(publishing)
        super().__init__(**kwargs)


tracked_task = decorator(TrackedPythonOperator, "Wrap a function into a :class:`TrackedPythonOperator` "
                         "(registered as ``@task.tracked``).")
rollup_task = decorator(RollupPythonOperator, "Wrap a function into a :class:`RollupPythonOperator` "
                        "(registered as ``@task.rollup``).")
