"""
### rag_tune — find better chunking settings on the product's own questions

**tune** reads the source once, then runs an Optuna study over chunk size, chunk overlap (only values below
half the chunk size) and the locally available embedders — the live configuration first, a few random
trials, then TPE; the study is kept in the run's work folder, so a retried task resumes it. Each trial
chunks, embeds into an in-memory Qdrant collection and scores
nDCG@10 on the query set (`eval_queries`; the sample corpus brings its own), bounded by `n_trials` and
`timeout_s`. Every trial is a nested MLflow run under the task's run, which also carries the best
params and Optuna's history and importance plots. **build_best** (a TriggerDagRunOperator, skipped unless param `build_best`) triggers
`rag_ingest` with the best configuration as version `version`; the evaluation gate there decides
whether it goes live. **aggregate_status** closes the DAG run's parent run.
"""

from __future__ import annotations

from airflow.sdk import dag

from ragtrail_airflow.rag.pipeline import default_args
from ragtrail_airflow.rag.tune_tasks import build_tuning, tune_params


@dag(
    dag_id="rag_tune",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    description="Optuna search for chunk size, overlap and embedder on the product's questions; optionally builds the best.",
    doc_md=__doc__,
    tags=["ragtrail", "tuning"],
    default_args=default_args(),
    params=tune_params(),
)
def rag_tune():
    build_tuning()


rag_tune()
