"""
### rag_ingest — documents in, a searchable Qdrant index out, every step on the record in MLflow

**ingest** reads a folder or S3 prefix into text, one document per file or table row (bad input is
quarantined, never fatal) → **chunk** cuts it into windows counted in the embedder's own tokens →
**embed** turns chunks into vectors → **index** upserts them into the `<product>__<version>`
collection and points the `<product>` alias at it →
**aggregate_status** rolls the run up to FINISHED / PARTIAL / FAILED and fails the DAG run unless
FINISHED.

Each stage runs in its own MLflow child run under one parent run per DAG run (experiment
`ragtrail/<product>`); the task's **MLflow run** button opens it. The work itself lives in `include/ragtrail`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, task

SAMPLE_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include", "sample_corpus")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


@dag(
    dag_id="rag_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # one writer per Qdrant local store at a time
    doc_md=__doc__,
    tags=["ragtrail", "ingest"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")), "retry_delay": timedelta(seconds=15)},
    params={
        "source": Param(SAMPLE_CORPUS, type="string", minLength=1, description="Folder, file:// URI or s3://bucket/prefix of the documents."),
        "aws_conn_id": Param("aws_default", type="string", description="Airflow connection for s3:// sources (endpoint_url in its extra for MinIO)."),
        "max_file_mb": Param(50, type="number", exclusiveMinimum=0, description="Larger files are quarantined unread (too_large)."),
        "id_column": Param("", type="string", description="Tables: row id column; empty tries id, then doc_id, then row numbers."),
        "text_column": Param("text", type="string", minLength=1, description="Tables: the column holding the text to index."),
        "metadata_columns": Param("*", type="string", description="Tables: comma-separated columns copied into the payload; * = all others, empty = none."),
        "product": Param("handbook", type="string", pattern=NAME_PATTERN, description="Index name: the Qdrant alias and the MLflow experiment."),
        "version": Param("v1", type="string", pattern=NAME_PATTERN, description="Build configuration; each version has its own collection."),
        "chunk_size": Param(200, type="integer", minimum=16, maximum=510, description="Max tokens per chunk (embedder tokens; at most its window)."),
        "chunk_overlap": Param(32, type="integer", minimum=0, maximum=256, description="Tokens shared by consecutive chunks."),
        "embedder": Param("all-MiniLM-L6-v2", type="string", description="sentence-transformers model name or local folder."),
        "batch_size": Param(64, type="integer", minimum=1, maximum=1024, description="Texts per encode() batch."),
    },
)
def rag_ingest():
    @task.tracked(stage="ingest")
    def ingest(params=None, tracker=None, dag_run=None):
        from airflow.sdk.exceptions import AirflowFailException

        from ragtrail.ingest import NoUsableDocuments, ingest_source
        from ragtrail.settings import run_workdir
        from ragtrail.tables import TableSpec
        from ragtrail_airflow.s3 import s3_client_factory

        table = TableSpec.from_strings(params["id_column"], params["text_column"], params["metadata_columns"])
        try:
            return ingest_source(params["source"], run_workdir(dag_run.dag_id, dag_run.run_id), recorder=tracker,
                                 max_doc_bytes=int(params["max_file_mb"] * 1024 * 1024), table=table,
                                 s3_client=s3_client_factory(params["aws_conn_id"]))
        except NoUsableDocuments as err:  # the same source will not improve on a retry
            raise AirflowFailException(str(err)) from err

    @task.tracked(stage="chunk")
    def chunk(docs: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.chunking import chunk_documents
        from ragtrail.settings import run_workdir

        return chunk_documents(docs["docs_path"], run_workdir(dag_run.dag_id, dag_run.run_id),
                               product=params["product"], chunk_size=params["chunk_size"],
                               chunk_overlap=params["chunk_overlap"], embedder=params["embedder"], recorder=tracker)

    @task.tracked(stage="embed")
    def embed(chunks: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.embedding import embed_chunks
        from ragtrail.settings import run_workdir

        return embed_chunks(chunks["chunks_path"], run_workdir(dag_run.dag_id, dag_run.run_id),
                            embedder=params["embedder"], batch_size=params["batch_size"], recorder=tracker)

    @task.tracked(stage="index")
    def index(chunks: dict, vectors: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.indexing import index_chunks
        from ragtrail.settings import load, run_workdir

        settings = load()
        return index_chunks(chunks["chunks_path"], vectors["embeddings_path"], run_workdir(dag_run.dag_id, dag_run.run_id),
                            location=settings.qdrant_url or settings.qdrant_path, product=params["product"],
                            version=params["version"], embedder=params["embedder"], run_id=dag_run.run_id,
                            recorder=tracker)

    @task(trigger_rule="all_done", retries=0)
    def aggregate_status(**context):
        from ragtrail_airflow.aggregate import aggregate_status as rollup

        return rollup(context)

    docs = ingest()
    chunks = chunk(docs)
    vectors = embed(chunks)
    indexed = index(chunks, vectors)
    [docs, chunks, vectors, indexed] >> aggregate_status()


rag_ingest()
