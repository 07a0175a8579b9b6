"""Canary runs in the trail: one MLflow run per canary check, in the product's experiment.

Tagged ``ragtrail.role=canary`` (so pipeline queries, which read ``parent`` runs, never mix them in)
with the live collection and the verdict; FINISHED when quality held, FAILED when it dropped. Their
``ndcg_at_10`` over time is the live index's quality trend (:func:`canary_trend`, on the metrics page).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ragtrail.core.recorder import Recorder
from ragtrail.trail.names import DAG_TAG, LIVE_COLLECTION_TAG, PRODUCT_TAG, ROLE_TAG, RUN_TAG, quote


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


def canary_trend(client, product: str, ui_url: str, limit: int = 50) -> list[dict]:
    """The newest canary checks, oldest first, shaped like the query layer's runs (``metrics``, ``status``,
    ``version`` = the live collection's version, ``start_time``, ``mlflow_url``) so the metrics page plots them."""
    from ragtrail.core.products import experiment_name
    from ragtrail.trail.names import run_url

    exp = client.get_experiment_by_name(experiment_name(product))
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = {quote('canary')}", max_results=limit,
                              order_by=["attributes.start_time DESC"])
    return [{"metrics": dict(r.data.metrics), "status": r.info.status,
             "version": r.data.tags.get(LIVE_COLLECTION_TAG, "").partition("__")[2],
             "start_time": datetime.fromtimestamp(r.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
             "mlflow_url": run_url(ui_url, exp.experiment_id, r.info.run_id)} for r in reversed(runs)]
