"""
### rag_ingest — documents in, a searchable Qdrant index out, every step on the record in MLflow

**ingest** reads a folder into text (bad files are quarantined, never fatal) → **chunk** cuts it into
windows counted in the embedder's own tokens → **embed** turns chunks into vectors → **index** upserts
them into the `<product>__<version>` collection and points the `<product>` alias at it →
**aggregate_status** rolls the run up to FINISHED / PARTIAL / FAILED and fails the DAG run unless
FINISHED.

Each stage runs in its own MLflow child run under one parent run per DAG run (experiment
`ragtrail - <product> (<id>)`); the task's **MLflow run** button opens it. The task graph is shared with
the per-product DAGs (`ragtrail_airflow.pipeline`); the work itself lives in `include/ragtrail`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import dag

from ragtrail_airflow.pipeline import build_pipeline, pipeline_params


@dag(
    dag_id="rag_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # one writer per Qdrant local store at a time
    doc_md=__doc__,
    tags=["ragtrail", "ingest"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")), "retry_delay": timedelta(seconds=15)},
    params=pipeline_params(),
)
def rag_ingest():
    build_pipeline()


rag_ingest()
