"""### rag_canary__&lt;product&gt; — is the live index still as good as when it went live?

One DAG per product that opts in with `canary:` in the products file (`schedule`, default `@daily`;
`tolerance`, default 0.05). **canary** scores the collection the `<product>` alias points at on the
product's questions and compares nDCG@10 with what the registry's `@production` version scored when it
was promoted; a drop larger than the tolerance fails the task with the numbers in the message and
in an MLflow run (`ragtrail.role=canary`) in the product's experiment. Nothing is changed.
"""

from __future__ import annotations

from airflow.sdk import dag

from ragtrail.core.products import load_products
from ragtrail_airflow.rag.canary_tasks import build_canary


def canary_dag(product, settings: dict):
    @dag(
        dag_id=f"rag_canary__{product.name}",
        schedule=settings["schedule"],
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        description=f"Quality canary of {product.name}'s live index (nDCG@10 vs the last promoted build).",
        doc_md=__doc__,
        tags=["ragtrail", "canary", "product"],
        default_args={"retries": 0},
    )
    def rag_canary():
        build_canary(product.name, source=product.source, eval_queries=product.eval_queries,
                     tolerance=settings["tolerance"])

    return rag_canary()


for _product in load_products():
    if _product.canary is not None:
        globals()[f"rag_canary__{_product.name}"] = canary_dag(_product, _product.canary)
