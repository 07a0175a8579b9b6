"""
### rag_ingest__&lt;product&gt; — one scheduled ingest DAG per product in the products file

Generated from `include/products.yml` (or `RAGTRAIL_PRODUCTS_FILE`): each product's DAG runs the same
pipeline as `rag_ingest` — ingest → chunk → embed → index → aggregate_status — on the product's
source, on its schedule, with its chunking and embedder as the defaults of the trigger form.
New product DAGs start paused. Every run lands in the product's experiment,
`<prefix> - <name> (<first 8 chars of id>)`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import dag

from ragtrail.products import load_products
from ragtrail_airflow.pipeline import build_pipeline, pipeline_params


def product_dag(product):
    """Build the scheduled DAG of one product (a :class:`ragtrail.products.Product`)."""

    @dag(
        dag_id=product.dag_id,
        schedule=product.schedule,
        catchup=False,
        max_active_runs=1,  # one writer per Qdrant local store at a time
        is_paused_upon_creation=True,
        doc_md=f"{__doc__}\n**{product.name}** (`{product.id}`): {product.description or product.source}",
        tags=["ragtrail", "ingest", "product"],
        default_args={"retries": int(os.environ.get("RAGTRAIL_TASK_RETRIES", "1")),
                      "retry_delay": timedelta(seconds=15)},
        params=pipeline_params(**{**product.conf(), "fixed_product": True}),
    )
    def rag_product():
        build_pipeline()

    return rag_product()


for _product in load_products():
    globals()[_product.dag_id] = product_dag(_product)
