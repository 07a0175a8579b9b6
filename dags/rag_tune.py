"""
### rag_tune — find better chunking settings on the product's own questions

**tune** reads the source once, then runs an Optuna study over chunk size, chunk overlap (only values below
half the chunk size) and the locally available embedders — the live configuration first, a few random
trials, then TPE; the study is kept in the run's work folder, so a retried task resumes it. Each trial chunks, embeds into an in-memory Qdrant collection and scores
nDCG@10 on the query set (`eval_queries`; the sample corpus brings its own), bounded by `n_trials` and
`timeout_s`. Every trial is a nested MLflow run under the task's run, which also carries the best
params and Optuna's history and importance plots. **build_best** (param `build_best`) triggers
`rag_ingest` with the best configuration as version `version`; the evaluation gate there decides
whether it goes live. **aggregate_status** closes the DAG run's parent run.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, task

SAMPLE_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include", "sample_corpus")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def _p(default, description, **schema):
    return Param(default, description=description, **schema)


@dag(
    dag_id="rag_tune",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["ragtrail", "tuning"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
                  "retry_delay": timedelta(seconds=float(os.environ.get("RAGTRAIL_RETRY_DELAY_S", "15")))},
    params={
        "source": _p(SAMPLE_CORPUS, "Folder, file:// URI or s3://bucket/prefix of the documents.", type="string", minLength=1),
        "aws_conn_id": _p("aws_default", "Airflow connection for s3:// sources.", type="string"),
        "product": _p("handbook", "Product (MLflow experiment; rag_ingest's product when building).", type="string", pattern=NAME),
        "version": _p("tuned", "Version name for building the best configuration.", type="string", pattern=NAME),
        "eval_queries": _p("", "JSON lines query set {id, text, relevant}; required unless the source is the sample corpus.", type="string"),
        "embedders": _p("all-MiniLM-L6-v2", "Comma-separated embedders to try (local models only).", type="string", minLength=1),
        "min_chunk_size": _p(64, "Smallest chunk size tried (tokens).", type="integer", minimum=16, maximum=254),
        "max_chunk_size": _p(254, "Largest chunk size tried (tokens, at most the embedder's window).", type="integer", minimum=16, maximum=254),
        "n_trials": _p(12, "Trials at most (the space holds ~50 configurations).", type="integer", minimum=1, maximum=500),
        "timeout_s": _p(1800, "Seconds at most for the study (a running trial finishes).", type="number", exclusiveMinimum=0),
        "seed": _p(0, "TPE sampler seed.", type="integer"),
        "build_best": _p(False, "Trigger rag_ingest with the best configuration as `version`.", type="boolean"),
    },
)
def rag_tune():
    @task.tracked(stage="tune")
    def tune(params=None, tracker=None, tracked_run=None, dag_run=None):
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.tune(params, run_workdir(dag_run.dag_id, dag_run.run_id), tracker, tracked_run)

    @task(retries=0)
    def build_best(result: dict, params=None, **context):
        from ragtrail_airflow import tasks

        tasks.build_best(result, params, context)

    @task(trigger_rule="all_done", retries=0)
    def aggregate_status(**context):
        from ragtrail_airflow.aggregate import aggregate_status as rollup

        return rollup(context, publishing_tasks=("tune",))

    result = tune()
    result >> build_best(result) >> aggregate_status()


rag_tune()
