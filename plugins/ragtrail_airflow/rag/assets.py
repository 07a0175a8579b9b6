"""The index as an Asset: "a new index of <product> went live" is an asset event other DAGs can wait for.

Whoever moves a product's alias — the evaluate task when the gate promotes, the approve task on
*Approve*, the registry-sync DAG when it follows ``@production`` — emits an event for the Asset
``ragtrail_index__<product>`` through the task's outlet, the AssetAlias ``ragtrail_index`` (the product
is only known at run time), with ``version``, ``collection``, ``model_version``, ``ndcg_at_10`` and
``cause`` in its extra. Nothing moved, no event. Schedule a DAG on it with ``schedule=[index_asset("handbook")]``.
The registry webhook feeds a second asset, ``ragtrail_registry`` (see :mod:`ragtrail_airflow.rag.webhooks`).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

INDEX_ALIAS = AssetAlias(name="ragtrail_index", group="ragtrail-index")
REGISTRY_ASSET = Asset(name="ragtrail_registry", uri="x-ragtrail://registry/production", group="ragtrail-registry")


def index_asset(product: str) -> Asset:
    """The Asset of a product's live index."""
    return Asset(name=f"ragtrail_index__{product}", uri=f"x-ragtrail://index/{product}", group="ragtrail-index")


def index_event_extra(product: str, *, collection: str, version: str | None, metrics: dict | None,
                      model_version: str | None, cause: str) -> dict:
    extra = {"product": product, "collection": collection, "version": version, "cause": cause,
             "model_version": model_version}
    from ragtrail.trail.names import NDCG_AT_10, RECALL_AT_10

    for key in (NDCG_AT_10, RECALL_AT_10):
        if (metrics or {}).get(key) is not None:
            extra[key] = round(float(metrics[key]), 6)
    return extra


def publish_index(outlet_events, product: str, **extra) -> dict | None:
    """Add the index asset event through the task's ``INDEX_ALIAS`` outlet; return its extra (``None``
    when the task has no such outlet, e.g. outside Airflow)."""
    if outlet_events is None:
        return None
    payload = index_event_extra(product, **extra)
    outlet_events[INDEX_ALIAS].add(index_asset(product), extra=payload)
    return payload
