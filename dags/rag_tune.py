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
SEARCH = "Search space"


def _p(default, title, description, section=None, **schema):
    # Untitled fields form the trigger form's open group; titled ones are collapsed groups.
    return Param(default, title=title, description=description, **({"section": section} if section else {}),
                 **schema)


@dag(
    dag_id="rag_tune",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    description="Optuna search for chunk size, overlap and embedder on the product's questions; optionally builds the best.",
    doc_md=__doc__,
    tags=["ragtrail", "tuning"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
                  "retry_delay": timedelta(seconds=float(os.environ.get("RAGTRAIL_RETRY_DELAY_S", "15")))},
    params={
        "source": _p(SAMPLE_CORPUS, "Source", "Folder, file:// URI or s3://bucket/prefix of the documents.",
                     type="string", minLength=1),
        "product": _p("handbook", "Product", "MLflow experiment; rag_ingest's product when building.",
                      type="string", pattern=NAME),
        "eval_queries": _p(None, "Query set", "JSON lines file {id, text, relevant}; empty: the sample corpus's "
                           "own (other sources need one).", type=["null", "string"]),
        "build_best": _p(False, "Build the best", "Trigger rag_ingest with the best configuration as `version`.",
                         type="boolean"),
        "version": _p("tuned", "Version to build", "Version name for building the best configuration.",
                      type="string", pattern=NAME),
        "aws_conn_id": _p("aws_default", "AWS connection", "Airflow connection for s3:// sources; empty: "
                          "aws_default.", "Source access", type=["null", "string"]),
        "embedders": _p("all-MiniLM-L6-v2", "Embedders", "Comma-separated embedders to try (local models only).",
                        SEARCH, type="string", minLength=1),
        "min_chunk_size": _p(64, "Smallest chunk size", "Tokens.", SEARCH, type="integer", minimum=16, maximum=254),
        "max_chunk_size": _p(254, "Largest chunk size", "Tokens, at most the embedder's window.", SEARCH,
                             type="integer", minimum=16, maximum=254),
        "n_trials": _p(12, "Trials", "Trials at most (the space holds ~50 configurations).", SEARCH, type="integer", minimum=1, maximum=500),
        "timeout_s": _p(1800, "Time limit (s)", "Seconds at most for the study (a running trial finishes).",
                        SEARCH, type="number", exclusiveMinimum=0),
        "seed": _p(0, "Seed", "TPE sampler seed.", SEARCH, type="integer"),
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

    @task.rollup(trigger_rule="all_done", retries=0)
    def aggregate_status(**context):
        from ragtrail_airflow.aggregate import aggregate_status as rollup

        return rollup(context, publishing_tasks=("tune",))

    result = tune()
    result >> build_best(result) >> aggregate_status()


rag_tune()
