"""The ``rag_tune`` task graph: tune → build_best → aggregate_status, and its trigger-form params.

``build_best`` is a real :class:`TriggerDagRunOperator` in the graph (not one executed inside another
task): it triggers ``rag_ingest`` with the best configuration that ``tune`` pushed, and skips itself
when the ``build_best`` param is off.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, task

from ragtrail.core.spec import TUNE_FIELDS, form_schemas
from ragtrail_airflow.rag.pipeline import form_params


def tune_params() -> dict[str, Param]:
    """The trigger form of ``rag_tune`` (rows :data:`ragtrail.core.spec.TUNE_FIELDS`)."""
    return form_params(form_schemas(TUNE_FIELDS))


class TriggerBestBuild(TriggerDagRunOperator):
    """Trigger ``rag_ingest`` with the tuned configuration; skipped when the ``build_best`` param is off."""

    def execute(self, context):
        if not context["params"].get("build_best"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("build_best is off: the best configuration is only logged")
        return super().execute(context)


def build_tuning() -> None:
    """Create rag_tune's tasks in the DAG being defined (call it inside a ``@dag`` function)."""

    @task.tracked(stage="tune", multiple_outputs=True)  # build_best reads result["build_conf"]
    def tune(params=None, tracker=None, tracked_run=None, dag_run=None):
        """Read the source once, run the Optuna study (each trial a nested run of this task's run)."""
        from airflow.sdk.exceptions import AirflowFailException

        from ragtrail.core.recorder import Recorder
        from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, run_workdir
        from ragtrail.core.spec import tune_config
        from ragtrail.stages.evaluation import load_queries, resolve_query_file
        from ragtrail.stages.ingest import ingest_source
        from ragtrail.stages.tuning import tune_chunking
        from ragtrail_airflow.rag.s3 import s3_client_factory

        cfg = tune_config(params)
        workdir = run_workdir(dag_run.dag_id, dag_run.run_id)
        queries_path = resolve_query_file(cfg.source, cfg.eval_queries or "")
        if queries_path is None:
            raise AirflowFailException("tuning needs a query set: set the eval_queries param")
        docs = ingest_source(cfg.source, workdir / "ingest", s3_client=s3_client_factory(cfg.aws_conn_id or "aws_default"))
        on_trial = None
        if tracked_run:
            from ragtrail.trail.client import guarded_client
            from ragtrail.trail.runs import log_nested_run
            from ragtrail_airflow.config import policy

            trial_policy = policy()

            def on_trial(number: int, trial_params: dict, metrics: dict) -> None:
                rec = Recorder()
                rec.param(**trial_params, trial=number)
                rec.metric(**metrics)
                # A guard (and budget) per trial: a long study must not run out of one task-wide budget.
                log_nested_run(guarded_client(trial_policy), tracked_run["experiment_id"], tracked_run["run_id"],
                               f"trial {number}", rec)

        # The study lives in the DAG run's work folder: a retried task resumes it instead of starting over.
        result = tune_chunking(docs["docs_path"], load_queries(queries_path), workdir=workdir,
                               start={"chunk_size": DEFAULT_CHUNK_SIZE, "chunk_overlap": DEFAULT_CHUNK_OVERLAP},
                               storage=f"sqlite:///{Path(workdir).resolve() / 'optuna.db'}",
                               embedders=tuple(e.strip() for e in cfg.embedders.split(",") if e.strip()),
                               chunk_size_range=(cfg.min_chunk_size, cfg.max_chunk_size), n_trials=cfg.n_trials,
                               timeout_s=cfg.timeout_s, seed=cfg.seed, on_trial=on_trial, recorder=tracker)
        build_conf = {"source": cfg.source, "product": cfg.product, "version": cfg.version,
                      "eval_queries": str(queries_path), **result["best_params"]}
        return {"best_params": result["best_params"], "best_value": result["best_value"],
                "trials": len(result["trials"]), "build_conf": build_conf}

    @task.rollup(trigger_rule="all_done", retries=0, publishing=("tune",))
    def aggregate_status(**context):
        from ragtrail_airflow.rag.aggregate import aggregate_status as rollup

        return rollup(context)

    result = tune()
    build_best = TriggerBestBuild(task_id="build_best", trigger_dag_id="rag_ingest", conf=result["build_conf"],
                                  retries=0)
    build_best >> aggregate_status()
