"""### rag_ingest — documents in, a searchable Qdrant index out, every step on the record in MLflow

**preflight** checks the source, the connection and the store (a problem fails it at once, no retries) →
**split** cuts the source into shards, ranges of `docs_per_shard` keys → **ingest** (one mapped task per
shard, named by its range) reads its shard into text, one document per file or table row (bad input is
quarantined, never fatal; a failed shard leaves the run PARTIAL) → **plan** compares it with the version's
source state (unchanged documents stop here) → **chunk** (one mapped task per batch) cuts changed documents into windows of the
embedder's own tokens → **dedupe** keeps each distinct text once → **embed** (mapped) turns texts into
vectors → **write** (mapped over groups of chunk batches, throttled) upserts into `<product>__<version>`,
each group leaving a receipt → **index** reads the receipts, deletes what is stale and commits the source
state → **evaluate** scores
it on the product's questions, moves the `<product>` alias only if it passes the gate and registers it
as `ragtrail-<product>` → **aggregate_status** rolls the run up to FINISHED / PARTIAL / FAILED and fails
the DAG run unless FINISHED.

Each task runs in its own MLflow child run under one parent run per DAG run (experiment
`ragtrail - <product> (<id>)`); the task's **MLflow run** button opens it. The task graph is shared with
the per-product DAGs (`ragtrail_airflow.rag.pipeline`); the work itself lives in `include/ragtrail`.
"""

from __future__ import annotations

from airflow.sdk import dag

from ragtrail_airflow.rag.pipeline import build_pipeline, default_args, pipeline_params


@dag(
    dag_id="rag_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # with the lock on the Qdrant store: writes to one product never interleave
    description="Documents (folder or S3) → chunks → embeddings → Qdrant index, evaluated and gated; every task tracked in MLflow.",
    doc_md=__doc__,
    tags=["ragtrail", "ingest"],
    default_args=default_args(),
    params=pipeline_params(),
)
def rag_ingest():
    build_pipeline()


rag_ingest()
