"""The pipeline every ingest DAG runs: ingest → chunk → embed → index → aggregate_status.

``dags/rag_ingest.py`` (manual, any product) and ``dags/rag_products.py`` (one scheduled DAG per
product in the products file) both call :func:`build_pipeline` inside their ``@dag`` function, with
trigger-form params from :func:`pipeline_params`. This module imports only ``airflow.sdk`` and the
light ``ragtrail.settings``: heavy libraries stay inside the task bodies.

Example (a DAG file)::

    @dag(dag_id="my_ingest", schedule=None, params=pipeline_params(product="docs"))
    def my_ingest():
        build_pipeline()
"""

from __future__ import annotations

from airflow.sdk import Param, task

from ragtrail.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_EMBEDDER,
    SAMPLE_CORPUS,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def pipeline_params(*, source: str = str(SAMPLE_CORPUS), product: str = "handbook", version: str = "v1",
                    chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
                    embedder: str = DEFAULT_EMBEDDER, batch_size: int = DEFAULT_BATCH_SIZE,
                    fixed_product: bool = False) -> dict[str, Param]:
    """Typed, described DAG params (the Airflow trigger form) with these defaults.

    Args:
        fixed_product: a product's own DAG may only build that product.
    """
    product_schema = {"enum": [product]} if fixed_product else {"pattern": NAME_PATTERN}
    return {
        "source": Param(source, type="string", minLength=1, description="Folder or file:// URI of the documents."),
        "product": Param(product, type="string", **product_schema, description="Index name: the Qdrant alias and the MLflow experiment."),
        "version": Param(version, type="string", pattern=NAME_PATTERN, description="Build configuration; each version has its own collection."),
        "chunk_size": Param(chunk_size, type="integer", minimum=16, maximum=510, description="Max tokens per chunk (embedder tokens; at most its window)."),
        "chunk_overlap": Param(chunk_overlap, type="integer", minimum=0, maximum=256, description="Tokens shared by consecutive chunks."),
        "embedder": Param(embedder, type="string", description="sentence-transformers model name or local folder."),
        "batch_size": Param(batch_size, type="integer", minimum=1, maximum=1024, description="Texts per encode() batch."),
    }


def build_pipeline() -> None:
    """Create the pipeline's tasks in the DAG being defined (call it inside a ``@dag`` function)."""

    @task.tracked(stage="ingest")
    def ingest(params=None, tracker=None, dag_run=None):
        from ragtrail.ingest import ingest_source
        from ragtrail.settings import run_workdir

        return ingest_source(params["source"], run_workdir(dag_run.dag_id, dag_run.run_id), recorder=tracker)

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
