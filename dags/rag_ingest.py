"""
### rag_ingest — documents in, a searchable Qdrant index out, every step on the record in MLflow

**ingest** reads the source into text (bad files are quarantined, never fatal) → **plan** compares it
with the version's collection (unchanged documents stop here) → **chunk** (one mapped task per batch)
cuts changed documents into windows of the embedder's own tokens → **dedupe** keeps each distinct text
once → **embed** (mapped) turns texts into vectors → **index** upserts, deletes what is stale and
points the `<product>` alias at `<product>__<version>` → **aggregate_status** rolls the run up to
FINISHED / PARTIAL / FAILED and fails the DAG run unless FINISHED.

Each task runs in its own MLflow child run under one parent run per DAG run (experiment
`ragtrail/<product>`); the task's **MLflow run** button opens it. The work lives in `include/ragtrail`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, task

SAMPLE_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include", "sample_corpus")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


@dag(
    dag_id="rag_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # with the index task's per-product lock: writes to one product never interleave
    doc_md=__doc__,
    tags=["ragtrail", "ingest"],
    default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
                  "retry_delay": timedelta(seconds=float(os.environ.get("RAGTRAIL_RETRY_DELAY_S", "15")))},
    params={
        "source": Param(SAMPLE_CORPUS, type="string", minLength=1, description="Folder or file:// URI of the documents."),
        "product": Param("handbook", type="string", pattern=NAME, description="Index name: the Qdrant alias and the MLflow experiment."),
        "version": Param("v1", type="string", pattern=NAME, description="Build configuration; each version has its own collection."),
        "chunk_size": Param(200, type="integer", minimum=16, maximum=510, description="Max tokens per chunk (embedder tokens; at most its window)."),
        "chunk_overlap": Param(32, type="integer", minimum=0, maximum=256, description="Tokens shared by consecutive chunks."),
        "embedder": Param("all-MiniLM-L6-v2", type="string", description="sentence-transformers model name or local folder."),
        "batch_size": Param(64, type="integer", minimum=1, maximum=1024, description="Texts per encode() call."),
        "sync_mode": Param("full", enum=["full", "incremental"], description="full: documents gone from the source leave the index; incremental: they stay."),
        "docs_per_batch": Param(500, type="integer", minimum=1, description="Documents per chunk task (one mapped task each)."),
        "texts_per_batch": Param(2048, type="integer", minimum=1, description="Distinct texts per embed task (one mapped task each)."),
        "promote": Param(True, type="boolean", description="Point the product alias at this version when it is built."),
        "keep_versions": Param(2, type="integer", minimum=0, description="Old versions kept besides the live one."),
    },
)
def rag_ingest():
    @task.tracked(stage="ingest")
    def ingest(params=None, tracker=None, dag_run=None):
        from ragtrail.ingest import ingest_source
        from ragtrail.settings import run_workdir

        return ingest_source(params["source"], run_workdir(dag_run.dag_id, dag_run.run_id), recorder=tracker)

    @task.tracked(stage="plan")
    def plan(docs: dict, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail.pipeline import build_config, qdrant_location
        from ragtrail.plan import plan_sync
        from ragtrail.settings import run_workdir

        return plan_sync(docs["docs_path"], run_workdir(dag_run.dag_id, dag_run.run_id), location=qdrant_location(),
                         product=params["product"], version=params["version"], config=build_config(params),
                         sync_mode=params["sync_mode"], docs_per_batch=params["docs_per_batch"], recorder=tracker)["batches"]

    @task.tracked(stage="chunk")
    def chunk(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.chunking import chunk_documents
        from ragtrail.settings import run_workdir

        return chunk_documents(batch["docs_path"], run_workdir(dag_run.dag_id, dag_run.run_id), product=params["product"],
                               chunk_size=params["chunk_size"], chunk_overlap=params["chunk_overlap"],
                               embedder=params["embedder"], out_name=f"batches/chunks_{batch['batch']:05d}.parquet",
                               recorder=tracker)

    @task.tracked(stage="dedupe", trigger_rule="all_done")
    def dedupe(chunked, params=None, tracker=None, dag_run=None) -> list[dict]:
        from ragtrail.dedupe import unique_texts
        from ragtrail.plan import read_plan
        from ragtrail.settings import run_workdir

        workdir = run_workdir(dag_run.dag_id, dag_run.run_id)
        return unique_texts([c["chunks_path"] for c in chunked or [] if c], workdir, held_path=read_plan(workdir)["held_path"],
                            texts_per_batch=params["texts_per_batch"], recorder=tracker)["batches"]

    @task.tracked(stage="embed")
    def embed(batch: dict, params=None, tracker=None, dag_run=None):
        from ragtrail.embedding import embed_chunks
        from ragtrail.settings import run_workdir

        return embed_chunks(batch["texts_path"], run_workdir(dag_run.dag_id, dag_run.run_id), embedder=params["embedder"],
                            batch_size=params["batch_size"], out_name=f"embed/vectors_{batch['batch']:05d}.npy",
                            recorder=tracker)

    @task.tracked(stage="index", trigger_rule="all_done")
    def index(chunked, embedded, params=None, tracker=None, dag_run=None):
        from ragtrail.pipeline import index_from_results
        from ragtrail.settings import run_workdir

        return index_from_results(chunked, embedded, params, run_workdir(dag_run.dag_id, dag_run.run_id),
                                  dag_run.run_id, recorder=tracker)

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
    [docs, planned, chunked, unique, embedded, indexed] >> aggregate_status()


rag_ingest()
