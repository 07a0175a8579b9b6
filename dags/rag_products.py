"""
### rag_ingest__&lt;product&gt; — one scheduled ingest DAG per product in the products file

Generated from `include/products.yml` (or `RAGTRAIL_PRODUCTS_FILE`): each product's DAG runs the same
pipeline as `rag_ingest` — preflight → split → ingest[] → plan → chunk[] → dedupe → embed[] → write_groups → write[] → index → evaluate → aggregate_status — on the product's
source, on its schedule (`on_change`: whenever the source changes, noticed by an asset watcher that polls it,
or that long-polls the SQS queue of its bucket's event notifications when the product names `source_events`),
with its chunking and embedder as the defaults of the trigger form.
New product DAGs start paused. Every run lands in the product's experiment,
`<prefix> - <name> (<first 8 chars of id>)`.
"""

from __future__ import annotations

from airflow.sdk import dag

from ragtrail.core.products import ProductsFileError, load_products
from ragtrail_airflow.rag.pipeline import build_pipeline, default_args, pipeline_params
from ragtrail_airflow.rag.store_conn import product_build_conflicts
from ragtrail_airflow.rag.watch import source_asset


def product_schedule(product):
    """A cron/preset as is; ``on_change``: the product's source Asset, fed by a watcher that polls it (or its
    ``source_events`` queue)."""
    if product.schedule == "on_change":
        return [source_asset(product)]
    return product.schedule


def product_dag(product):
    """Build the scheduled DAG of one product (a :class:`ragtrail.core.products.Product`)."""

    @dag(
        dag_id=product.dag_id,
        schedule=product_schedule(product),
        catchup=False,
        max_active_runs=1,  # one writer per Qdrant local store at a time
        is_paused_upon_creation=True,
        description=f"Scheduled ingest of product {product.name} ({product.schedule or 'manual'}) into Qdrant, "
                    f"tracked in MLflow."[:200],
        doc_md=f"{__doc__}\n**{product.name}** (`{product.id}`): {product.description or product.source}",
        tags=["ragtrail", "ingest", "product"],
        default_args=default_args(),
        params=pipeline_params(**{**product.conf(), "fixed_product": True}),
    )
    def rag_product():
        build_pipeline()

    return rag_product()


_PRODUCTS = load_products()
# A products entry that contradicts what its version was built with would fail every run in ``plan``:
# say so now, as this file's import error in the Airflow UI, with the fix.
_CONFLICTS = product_build_conflicts(_PRODUCTS)
if _CONFLICTS:
    raise ProductsFileError("\n".join(_CONFLICTS))
for _product in _PRODUCTS:
    globals()[_product.dag_id] = product_dag(_product)
