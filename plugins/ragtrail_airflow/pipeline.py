"""The task graph every ingest DAG runs, and its trigger-form params.

ingest → plan → chunk[] → dedupe → embed[] → index → evaluate → aggregate_status, where ``[]`` marks tasks
mapped over batches. ``dags/rag_ingest.py`` (manual, any product) and ``dags/rag_products.py`` (one
scheduled DAG per product in the products file) both call :func:`build_pipeline` inside their
``@dag`` function. This module imports only ``airflow.sdk`` and the light ``ragtrail.settings``; task
bodies import the stage code (``ragtrail_airflow.tasks``) when they run.

Example (a DAG file)::

    @dag(dag_id="my_ingest", schedule=None, params=pipeline_params(product="docs"),
         default_args=default_args())
    def my_ingest():
        build_pipeline()
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, task

from ragtrail.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_EMBED_BACKEND,
    DEFAULT_EMBEDDER,
    SAMPLE_CORPUS,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def cpu_pool() -> dict:
    """CPU-heavy mapped tasks share a pool when ``RAGTRAIL_CPU_POOL`` names one (compose and the
    cluster test create it; a scheduler never runs a task whose pool does not exist)."""
    pool = os.environ.get("RAGTRAIL_CPU_POOL")
    return {"pool": pool} if pool else {}


def default_args() -> dict:
    """Retries for every pipeline task (``RAGTRAIL_TASK_RETRIES``, ``RAGTRAIL_RETRY_DELAY_S``)."""
    return {"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
            "retry_delay": timedelta(seconds=float(os.environ.get("RAGTRAIL_RETRY_DELAY_S", "15")))}


# Titled groups of the trigger form. Airflow 3's form opens the untitled group (the run's essentials)
# and shows each titled one collapsed; a titled group turns red when a value in it is invalid.
SOURCE_ACCESS, CHUNKING, SYNC, GATE, TABLES = (
    "Source access", "Chunking & embedding", "Sync & batching", "Evaluation gate", "Tables")


def param(default, title: str, description: str, *, section: str | None = None, **schema) -> Param:
    """A typed trigger-form field. A ``type`` list with ``"null"`` makes it optional in the form (a
    bare ``"string"`` type is required, so a ``""`` default would block the Trigger button)."""
    return Param(default, title=title, description=description, **({"section": section} if section else {}),
                 **schema)


OPTIONAL_STRING = ["null", "string"]


def pipeline_params(*, source: str = str(SAMPLE_CORPUS), product: str = "handbook", version: str = "v1",
                    chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
                    embedder: str = DEFAULT_EMBEDDER, batch_size: int = DEFAULT_BATCH_SIZE,
                    fixed_product: bool = False) -> dict[str, Param]:
    """Typed, described DAG params (the Airflow trigger form) with these defaults.

    The form submits as it opens: every field without a usable default is nullable. Tasks read the
    optional ones with :func:`ragtrail_airflow.tasks.optional`.

    Args:
        fixed_product: a product's own DAG may only build that product.
    """
    product_schema = {"enum": [product]} if fixed_product else {"pattern": NAME_PATTERN}
    p = param
    return {
        "source": p(source, "Source", "Folder, file:// URI or s3://bucket/prefix of the documents.",
                    type="string", minLength=1),
        "product": p(product, "Product", "Index name: the Qdrant alias and the MLflow experiment.",
                     type="string", **product_schema),
        "version": p(version, "Version", "Build configuration; each version has its own collection.",
                     type="string", pattern=NAME_PATTERN),
        "aws_conn_id": p("aws_default", "AWS connection", "Airflow connection for s3:// sources "
                         "(endpoint_url in its extra for MinIO); empty: aws_default.",
                         section=SOURCE_ACCESS, type=OPTIONAL_STRING),
        "max_file_mb": p(50, "Max file size (MB)", "Larger files are quarantined unread (too_large).",
                         section=SOURCE_ACCESS, type="number", exclusiveMinimum=0),
        "chunk_size": p(chunk_size, "Chunk size", "Max tokens per chunk (embedder tokens; at most its window).",
                        section=CHUNKING, type="integer", minimum=16, maximum=510),
        "chunk_overlap": p(chunk_overlap, "Chunk overlap", "Tokens shared by consecutive chunks.",
                           section=CHUNKING, type="integer", minimum=0, maximum=256),
        "embedder": p(embedder, "Embedder", "sentence-transformers model name or local folder.",
                      section=CHUNKING, type="string", minLength=1),
        "embed_backend": p(DEFAULT_EMBED_BACKEND, "Embed backend", "torch: fp32; onnx-int8: int8 ONNX Runtime, "
                           "faster on CPU (see docs/performance.md).", section=CHUNKING, type="string", enum=["torch", "onnx-int8"]),
        "batch_size": p(batch_size, "Encode batch size", "Texts per encode() call.", section=CHUNKING,
                        type="integer", minimum=1, maximum=1024),
        "sync_mode": p("full", "Sync mode", "full: documents gone from the source leave the index; incremental: "
                       "they stay.", section=SYNC, type="string", enum=["full", "incremental"]),
        "docs_per_batch": p(500, "Documents per chunk task", "One mapped chunk task per this many documents.",
                            section=SYNC, type="integer", minimum=1),
        "texts_per_batch": p(2048, "Texts per embed task", "One mapped embed task per this many distinct texts.",
                             section=SYNC, type="integer", minimum=1),
        "keep_versions": p(2, "Old versions kept", "Versions kept besides the live one; older ones are deleted.",
                           section=SYNC, type="integer", minimum=0),
        "promote": p(True, "Promote", "Point the product alias at this version when it passes the gate.",
                     section=GATE, type="boolean"),
        "eval_queries": p(None, "Query set", "JSON lines file {id, text, relevant}; empty: none (the sample "
                          "corpus brings its own).", section=GATE, type=OPTIONAL_STRING),
        "min_ndcg": p(0.0, "Min nDCG@10", "Lowest nDCG@10 that may go live.", section=GATE, type="number",
                      minimum=0, maximum=1),
        "eval_tolerance": p(0.02, "Tolerance vs live", "How much lower than the live version's nDCG@10 is still "
                            "accepted (a significant drop is rejected anyway).", section=GATE, type="number",
                            minimum=0, maximum=1),
        "id_column": p(None, "Id column", "Row id column; empty: id, then doc_id, then row numbers.",
                       section=TABLES, type=OPTIONAL_STRING),
        "text_column": p("text", "Text column", "The column holding the text to index.", section=TABLES,
                         type="string", minLength=1),
        "metadata_columns": p("*", "Metadata columns", "Comma-separated columns copied into the payload; "
                              "* = all others; empty = none.", section=TABLES, type=OPTIONAL_STRING),
    }


def _workdir(dag_run):
    from ragtrail.settings import run_workdir

    return run_workdir(dag_run.dag_id, dag_run.run_id)


def build_pipeline() -> None:
    """Create the pipeline's tasks in the DAG being defined (call it inside a ``@dag`` function)."""

    @task.tracked(stage="ingest")
    def ingest(params=None, tracker=None, dag_run=None):
        from ragtrail_airflow import tasks

        return tasks.ingest(params, _workdir(dag_run), tracker)

    @task.tracked(stage="plan")
    def plan(docs: dict, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail_airflow import tasks

        return tasks.plan(params, docs, _workdir(dag_run), tracker)

    @task.tracked(stage="chunk", **cpu_pool())
    def chunk(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail_airflow import tasks

        return tasks.chunk(params, batch, _workdir(dag_run), tracker)

    # all_done: a failed chunk batch must not stop the others; needs: nothing to do behind a failed plan.
    @task.tracked(stage="dedupe", trigger_rule="all_done", needs=("plan",))
    def dedupe(chunked, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail_airflow import tasks

        return tasks.dedupe(params, chunked, _workdir(dag_run), tracker)

    @task.tracked(stage="embed", **cpu_pool())
    def embed(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail_airflow import tasks

        return tasks.embed(params, batch, _workdir(dag_run), tracker)

    @task.tracked(stage="index", trigger_rule="all_done", needs=("plan",))  # publishes the good batches when some failed
    def index(chunked, embedded, params=None, tracker=None, dag_run=None):
        from ragtrail_airflow import tasks

        return tasks.index(params, chunked, embedded, _workdir(dag_run), dag_run.run_id, tracker)

    @task.tracked(stage="evaluate")
    def evaluate(docs: dict, indexed: dict, params=None, tracker=None, tracked_run=None):
        from ragtrail_airflow import tasks

        return tasks.evaluate(params, docs, tracker, tracked_run)

    @task.rollup(trigger_rule="all_done", retries=0)
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
    # index runs only once every chunk/embed batch is done (all_done) and evaluate comes after it: when
    # both are done, so is every task, and the graph needs no edge from each of them.
    [indexed, evaluated] >> aggregate_status()
