"""### rag_ingest — documents in, a searchable Qdrant index out, every step on the record in MLflow

**ingest** reads a folder or S3 prefix (bad input is quarantined) → **plan** skips unchanged documents →
**chunk** (mapped) cuts the rest into embedder tokens → **dedupe** keeps each text once → **embed**
(mapped) → **index** writes `<product>__<version>` → **evaluate** scores it on the product's questions,
moves the `<product>` alias only if it passes the gate and registers it as `ragtrail-<product>` →
**aggregate_status** rolls up FINISHED / PARTIAL / FAILED. Every task has its own MLflow child run under
one parent per DAG run (experiment `ragtrail/<product>`); the work lives in `include/ragtrail`.
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
    dag_id="rag_ingest", schedule=None, catchup=False,
    max_active_runs=1,  # with the index task's per-product lock: writes to one product never interleave
    doc_md=__doc__, tags=["ragtrail", "ingest"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
                  "retry_delay": timedelta(seconds=float(os.environ.get("RAGTRAIL_RETRY_DELAY_S", "15")))},
    params={
        "source": _p(SAMPLE_CORPUS, "Folder, file:// URI or s3://bucket/prefix of the documents.", type="string", minLength=1),
        "aws_conn_id": _p("aws_default", "Airflow connection for s3:// sources (endpoint_url in its extra for MinIO).", type="string"),
        "product": _p("handbook", "Index name: the Qdrant alias and the MLflow experiment.", type="string", pattern=NAME),
        "version": _p("v1", "Build configuration; each version has its own collection.", type="string", pattern=NAME),
        "chunk_size": _p(200, "Max tokens per chunk (embedder tokens; at most its window).", type="integer", minimum=16, maximum=510),
        "chunk_overlap": _p(32, "Tokens shared by consecutive chunks.", type="integer", minimum=0, maximum=256),
        "embedder": _p("all-MiniLM-L6-v2", "sentence-transformers model name or local folder.", type="string"),
        "batch_size": _p(64, "Texts per encode() call.", type="integer", minimum=1, maximum=1024),
        "sync_mode": _p("full", "full: documents gone from the source leave the index; incremental: they stay.", enum=["full", "incremental"]),
        "docs_per_batch": _p(500, "Documents per chunk task (one mapped task each).", type="integer", minimum=1),
        "texts_per_batch": _p(2048, "Distinct texts per embed task (one mapped task each).", type="integer", minimum=1),
        "promote": _p(True, "Point the product alias at this version when it passes the gate.", type="boolean"),
        "eval_queries": _p("", "JSON lines query set {id, text, relevant}; empty: none (the sample corpus has its own).", type="string"),
        "min_ndcg": _p(0.0, "Gate: lowest nDCG@10 that may go live.", type="number", minimum=0, maximum=1),
        "eval_tolerance": _p(0.02, "Gate: how much worse than the live version's nDCG@10 is still accepted.", type="number", minimum=0),
        "keep_versions": _p(2, "Old versions kept besides the live one.", type="integer", minimum=0),
        "max_file_mb": _p(50, "Larger files are quarantined unread (too_large).", type="number", exclusiveMinimum=0),
        "id_column": _p("", "Tables: row id column; empty tries id, then doc_id, then row numbers.", type="string"),
        "text_column": _p("text", "Tables: the column holding the text to index.", type="string", minLength=1),
        "metadata_columns": _p("*", "Tables: comma-separated columns copied into the payload; * = all others, empty = none.", type="string"),
    },
)
def rag_ingest():
    @task.tracked(stage="ingest")
    def ingest(params=None, tracker=None, dag_run=None):
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.ingest(params, run_workdir(dag_run.dag_id, dag_run.run_id), tracker)

    @task.tracked(stage="plan")
    def plan(docs: dict, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.plan(params, docs, run_workdir(dag_run.dag_id, dag_run.run_id), tracker)

    @task.tracked(stage="chunk")
    def chunk(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.chunk(params, batch, run_workdir(dag_run.dag_id, dag_run.run_id), tracker)

    @task.tracked(stage="dedupe", trigger_rule="all_done")
    def dedupe(chunked, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.dedupe(params, chunked, run_workdir(dag_run.dag_id, dag_run.run_id), tracker)

    @task.tracked(stage="embed")
    def embed(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.embed(params, batch, run_workdir(dag_run.dag_id, dag_run.run_id), tracker)

    @task.tracked(stage="index", trigger_rule="all_done")  # publishes the good batches when some failed
    def index(chunked, embedded, params=None, tracker=None, dag_run=None):
        from ragtrail.settings import run_workdir
        from ragtrail_airflow import tasks

        return tasks.index(params, chunked, embedded, run_workdir(dag_run.dag_id, dag_run.run_id), dag_run.run_id, tracker)

    @task.tracked(stage="evaluate")
    def evaluate(docs: dict, indexed: dict, params=None, tracker=None, tracked_run=None):
        from ragtrail_airflow import tasks

        return tasks.evaluate(params, docs, tracker, tracked_run)

    @task(trigger_rule="all_done", retries=0)
    def aggregate_status(**context):
        from ragtrail_airflow.aggregate import aggregate_status as rollup

        return rollup(context)

    docs = ingest()
    planned = plan(docs)
    chunked = chunk.expand(batch=planned)
    unique = dedupe(chunked)
    embedded = embed.expand(batch=unique)
    indexed = index(chunked, embedded)
    evaluated = evaluate(docs, indexed)
    [docs, planned, chunked, unique, embedded, indexed, evaluated] >> aggregate_status()


rag_ingest()
