"""Canary runs in the trail: one MLflow run per canary check, in the product's experiment.

Tagged ``ragtrail.role=canary`` (so pipeline queries, which read ``parent`` runs, never mix them in)
with the live collection and the verdict; FINISHED when quality held, FAILED when it dropped. Their
``ndcg_at_10`` over time is the live index's quality trend (:func:`canary_trend`).
"""

from __future__ import annotations

from ragtrail.recorder import Recorder
from ragtrail.trail.names import DAG_TAG, PRODUCT_TAG, ROLE_TAG, RUN_TAG, quote


def log_canary_run(client, product: str, rec: Recorder, ok: bool, *, dag_id: str, run_id: str) -> str:
    """Write the canary's recorder as a run of its own; return the MLflow run id."""
    from ragtrail.trail.client import get_or_create_experiment
    from ragtrail.trail.runs import log_recorder

    exp_id = get_or_create_experiment(client, product)
    run = client.create_run(exp_id, run_name=f"canary {product}",
                            tags={ROLE_TAG: "canary", PRODUCT_TAG: product, DAG_TAG: dag_id, RUN_TAG: run_id})
    try:
        log_recorder(client, run.info.run_id, rec)
    finally:
        client.set_terminated(run.info.run_id, "FINISHED" if ok else "FAILED")
    return run.info.run_id


def canary_trend(client, product: str, limit: int = 50) -> list[dict]:
    """The newest canary checks, oldest first: ``{"time", "ndcg_at_10", "ok"}``."""
    from ragtrail.trail.client import get_or_create_experiment

    exp_id = get_or_create_experiment(client, product)
    runs = client.search_runs([exp_id], f"tags.`{ROLE_TAG}` = {quote('canary')}", max_results=limit,
                              order_by=["attributes.start_time DESC"])
    return [{"time": r.info.start_time, "ndcg_at_10": r.data.metrics.get("ndcg_at_10"),
             "ok": r.data.tags.get("ragtrail.canary") == "ok"} for r in reversed(runs)]
