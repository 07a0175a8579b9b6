"""One tracked task try as one MLflow child run of its DAG run's parent run.

Example::

    from ragtrail.trail.task_run import TaskRun
    with TaskRun(dag_id="rag_ingest", run_id="manual__1", task_id="chunk", product="handbook",
                 version="v1") as run:
        run.recorder.metric(chunk_count=42)
"""

from __future__ import annotations

import logging
import time

from ragtrail.core.recorder import Recorder
from ragtrail.core.settings import load as load_settings
from ragtrail.trail.client import (
    cache_schema_head,
    client_opened,
    get_or_create_experiment,
    guarded_client,
    warm_sql_store,
)
from ragtrail.trail.guard import GuardedClient, Policy, tracking_failed
from ragtrail.trail.mapped import find_or_create_mapped_run, log_map_index
from ragtrail.trail.names import (
    DAG_TAG,
    ERROR_TAG,
    MAP_ERROR_TAG,
    MAP_OK,
    MAP_TAG,
    PARENT_TAG,
    PRODUCT_TAG,
    ROLE_TAG,
    RUN_TAG,
    STAGE_TAG,
    TASK_TAG,
    TRY_TAG,
    VERSION_TAG,
    error_line,
    error_tags,
)
from ragtrail.trail.runs import find_or_create_parent, log_recorder, origin_tags, parent_run_name
from ragtrail.trail.traces import CURRENT_TASK_RUN

log = logging.getLogger(__name__)

# (tracking URI, product, dag_id, run_id) → (experiment id, parent run id), for tasks sharing a process.
_PARENTS: dict[tuple[str, str, str, str], tuple[str, str]] = {}


class TaskRun:
    """One MLflow child run for one try of one task, nested under the DAG run's parent.

    Use as a context manager: on a clean exit the run ends FINISHED, on an exception FAILED (and the
    exception propagates); :meth:`kill` ends it KILLED. Whatever the stage recorded before failing
    is still logged, so a failed run shows how far it got. Inside the block the run is the current
    task run, so :func:`ragtrail.trail.track.track` links its traces to it.

    ``shared=True`` with a map index ≥ 0 (``@task.tracked`` on a mapped task): every map index and try of
    the task shares one run (:func:`~ragtrail.trail.mapped.find_or_create_mapped_run`), so the trail does not
    grow with the corpus. A map index logs its figures as metric steps at ``step = map_index`` and its
    cause of failure as the tag ``ragtrail.map_error.<map_index>`` (:func:`~ragtrail.trail.mapped.log_map_index`)
    and does not end the run: the roll-up (or the DAG-run closer) does, from every map index's state.

    Every MLflow call goes through one :class:`~ragtrail.trail.guard.Guard` (bounded retries,
    one time budget). When MLflow is unavailable, a lenient policy logs a warning and the task goes
    on untracked (``tracking_error`` says why); a strict one raises ``TrackingUnavailable``.
    """

    def __init__(self, *, dag_id: str, run_id: str, task_id: str, product: str, version: str | None,
                 try_number: int = 1, map_index: int = -1, stage: str | None = None,
                 parent_params: dict | None = None, policy: Policy | None = None, origin: dict | None = None,
                 experiment_kind: str = "product", parent_tags: dict | None = None, task_tags: dict | None = None,
                 shared: bool = False):
        self.origin = origin  # where the run comes from (see origin_tags); the Airflow edge fills it
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.product, self.version = product, version
        self.try_number, self.map_index = try_number, map_index
        self.shared = shared and map_index >= 0  # one run for all map indexes of the task
        self.started_at = time.time()
        self.stage = stage or task_id
        self.parent_params = parent_params or {}
        # Any DAG's tasks (the listener) go to the DAG's experiment ("dag"); pipelines to their product's.
        self.experiment_kind = experiment_kind
        self.parent_tags, self.task_tags = parent_tags or {}, task_tags or {}
        self.policy = policy or Policy.from_env()
        self.recorder = Recorder()
        self.client: GuardedClient | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.mlflow_run_id: str | None = None
        self.tracking_error: str | None = None
        self.ended = False
        self.status: str | None = None  # how the run ended
        self._token = None
        self.overhead_s = 0.0  # time spent in MLflow calls for this task (metric tracking_overhead_s)
        self.setup_s = 0.0  # importing mlflow and opening the store, when this task was first (tracking_setup_s)

    def start(self) -> TaskRun:
        t0 = time.perf_counter()
        first = not client_opened()
        self.client = guarded_client(self.policy)
        if first:  # importing mlflow and opening the store: once per process, reported apart
            self.setup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        try:
            common = {PRODUCT_TAG: self.product, **({VERSION_TAG: self.version} if self.version else {})}
            key = (self.client.tracking_uri, self.product, self.dag_id, self.run_id)
            if key in _PARENTS:
                self.experiment_id, self.parent_run_id = _PARENTS[key]
            else:
                self.experiment_id = get_or_create_experiment(self.client, self.product, self.experiment_kind)
                self.parent_run_id = find_or_create_parent(
                    self.client, self.experiment_id, dag_id=self.dag_id, run_id=self.run_id,
                    tags={**common, **self.parent_tags,
                          **origin_tags(self.origin, dag_id=self.dag_id, run_id=self.run_id)},
                    params=self.parent_params, run_name=parent_run_name(self.product, self.version, self.origin))
                _PARENTS[key] = (self.experiment_id, self.parent_run_id)
            if self.shared:
                self._start_shared(common)
                return self
            name = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
            label = f"{name} (try {self.try_number})"
            run = self.client.create_run(self.experiment_id, run_name=name, tags={
                **common, **origin_tags(self.origin, dag_id=self.dag_id, run_id=self.run_id, task_label=label),
                PARENT_TAG: self.parent_run_id, ROLE_TAG: "task", DAG_TAG: self.dag_id,
                RUN_TAG: self.run_id, TASK_TAG: self.task_id, TRY_TAG: str(self.try_number),
                MAP_TAG: str(self.map_index), STAGE_TAG: self.stage, **self.task_tags})
            self.mlflow_run_id = run.info.run_id
        except Exception as err:
            self._tracking_failed("start", err)
        finally:
            self.overhead_s += time.perf_counter() - t0
        return self

    def _start_shared(self, common: dict) -> None:
        """Find (or create, race-free) the task's one run; a run a closer already ended is running again."""
        import os
        import socket
        import uuid

        tags = {**common, **origin_tags(self.origin, dag_id=self.dag_id, run_id=self.run_id, task_label=self.task_id),
                PARENT_TAG: self.parent_run_id, ROLE_TAG: "task", DAG_TAG: self.dag_id, RUN_TAG: self.run_id,
                TASK_TAG: self.task_id, STAGE_TAG: self.stage, **self.task_tags}
        claimer = f"{self.task_id}[{self.map_index}] try {self.try_number} {socket.gethostname()}:{os.getpid()} " \
                  f"{uuid.uuid4().hex[:8]}"
        run, created = find_or_create_mapped_run(self.client, self.experiment_id, self.parent_run_id,
                                                 task_id=self.task_id, tags=tags, run_name=self.task_id,
                                                 claimer=claimer)
        self.mlflow_run_id = run.info.run_id
        if not created and run.info.status != "RUNNING":  # a cleared map index runs after the roll-up closed it
            self.client.update_run(self.mlflow_run_id, status="RUNNING")

    def _tracking_failed(self, step: str, err: Exception) -> None:
        uri = self.client.guard.uri if self.client is not None else load_settings().mlflow_tracking_uri
        self.tracking_error = tracking_failed(self.policy, uri, f"at the {step} of task {self.task_id}", err,
                                              "the task goes on and the roll-up marks the trail incomplete")

    def flush(self) -> None:
        if self.mlflow_run_id:
            log_recorder(self.client, self.mlflow_run_id, self.recorder)

    def end(self, status: str) -> None:
        """Log what is left and terminate the run; later calls are no-ops (first status wins).

        Termination is attempted even when logging failed, so the run is not left RUNNING.
        """
        if not self.mlflow_run_id or self.ended:
            return
        self.ended, self.status = True, status
        errors = []
        t0 = time.perf_counter()

        def overhead():
            # Logged with the terminating call: the last two calls are the only ones not counted.
            from mlflow.entities import Metric

            self.overhead_s += time.perf_counter() - t0
            now = int(time.time() * 1000)
            self.client.log_batch(self.mlflow_run_id, metrics=[
                Metric("tracking_overhead_s", self.overhead_s, now, 0), Metric("tracking_setup_s", self.setup_s, now, 0)])

        from ragtrail.trail.traces import flush as flush_traces

        if self.shared:  # one map index's record on the shared run, which stays open for the others
            if status != "FINISHED" and ERROR_TAG not in self.recorder.tags:
                self.recorder.tag(**{ERROR_TAG: status.lower()})

            def record():
                self.overhead_s += time.perf_counter() - t0
                log_map_index(self.client, self.mlflow_run_id, self.recorder, map_index=self.map_index,
                              try_number=self.try_number, ok=status == "FINISHED",
                              duration_s=time.time() - self.started_at,
                              extra={"tracking_overhead_s": self.overhead_s, "tracking_setup_s": self.setup_s})

            steps = (flush_traces, record)
        else:
            steps = (flush_traces, self.flush, overhead, lambda: self.client.set_terminated(self.mlflow_run_id, status))
        for step in steps:
            try:
                step()
            except Exception as err:
                errors.append(err)
        if errors:
            self._tracking_failed("end", errors[0])

    def fail_after_end(self, exc: BaseException) -> None:
        """The task failed after its run ended FINISHED (Airflow refused what it returned): end it FAILED
        with the cause. Best effort: a failure here only logs a warning."""
        if not self.mlflow_run_id or self.status != "FINISHED":
            return
        try:
            if self.shared:  # this map index only: its cause, its step; the closer ends the run
                from mlflow.entities import Metric

                self.client.set_tag(self.mlflow_run_id, f"{MAP_ERROR_TAG}.{self.map_index}", error_line(exc))
                self.client.log_batch(self.mlflow_run_id, metrics=[
                    Metric(MAP_OK, 0.0, int(time.time() * 1000), self.map_index)])
                self.status = "FAILED"
                return
            for key, value in error_tags(exc).items():
                self.client.set_tag(self.mlflow_run_id, key, value)
            self.client.set_terminated(self.mlflow_run_id, "FAILED")
            self.status = "FAILED"
        except Exception as err:
            self._tracking_failed("late failure", err)

    def kill(self) -> None:
        try:
            self.end("KILLED")
        except Exception:  # the task is being killed anyway; the roll-up closes the run
            log.exception("could not end the MLflow run of %s as KILLED", self.task_id)

    def __enter__(self) -> TaskRun:
        self.start()
        self._token = CURRENT_TASK_RUN.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        CURRENT_TASK_RUN.reset(self._token)
        if exc is not None:
            self.recorder.tag(**error_tags(exc))
        try:
            self.end("FAILED" if exc is not None else "FINISHED")
        except Exception:
            if exc is None:
                raise
            log.exception("could not end the MLflow run of failed task %s", self.task_id)


def preload() -> None:
    """Import MLflow's client now (a parent process does this so that forked task processes start with it),
    this module, know the SQLite store's schema head (see :func:`~ragtrail.trail.client.cache_schema_head`) and, for a
    SQL tracking store, have its ORM configured (:func:`~ragtrail.trail.client.warm_sql_store`)."""
    import mlflow.tracking  # noqa: F401

    cache_schema_head(warm=True)
    warm_sql_store(load_settings().mlflow_tracking_uri)
