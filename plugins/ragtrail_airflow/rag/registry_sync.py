"""The ``rag_registry_sync`` DAG's one task: make the Qdrant alias follow the registry's ``@production``.

It runs when the MLflow webhook reports a ``@production`` move (an event of the ``ragtrail_registry``
asset, see :mod:`ragtrail_airflow.rag.webhooks`) — then only for the products named in the events — and
on a clock for every registered product, the drift check for tracking servers without webhooks (a
file store) or a delivery that never arrived. The registry wins (:func:`ragtrail.models.agreement.reconcile`);
every alias it moves emits an index asset event. Drift it cannot repair fails the task and names it.
"""

from __future__ import annotations

from airflow.sdk import task

from ragtrail_airflow.rag.assets import INDEX_ALIAS


def products_from_events(triggering_asset_events) -> list[str]:
    """The products the triggering registry events name (none: a scheduled run)."""
    from ragtrail.store import check_name

    names: set[str] = set()
    for events in (triggering_asset_events or {}).values():
        for event in events:
            product = (event.extra or {}).get("product")
            try:
                names.add(check_name("product", product))
            except ValueError:
                continue  # a name no product can have: nothing to move
    return sorted(names)


def build_registry_sync() -> None:
    """Create the task in the DAG being defined."""

    @task(outlets=[INDEX_ALIAS], retries=1)
    def reconcile(triggering_asset_events=None, outlet_events=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException

        from ragtrail.models.agreement import reconcile as reconcile_product
        from ragtrail.models.agreement import registered_products
        from ragtrail.trail.client import guarded_client
        from ragtrail_airflow.config import policy
        from ragtrail_airflow.rag.assets import publish_index
        from ragtrail_airflow.rag.store_conn import store_settings

        client = guarded_client(policy())
        products = products_from_events(triggering_asset_events) or registered_products(client)
        results = [reconcile_product(p, client, store_settings()) for p in products]
        for r in results:
            print(f"{r['product']}: registry {r['registry']} / alias {r['store']} -> {r['action'] or 'agree'}")
            if r["action"] == "store":
                publish_index(outlet_events, r["product"], collection=r["registry"],
                              version=r["registry"].split("__", 1)[-1], metrics=None,
                              model_version=r["registry_version"], cause="registry @production")
        unresolved = [f"{r['product']}: {r['reason']}" for r in results if r["action"] == "unresolved"]
        if unresolved:
            raise AirflowFailException("drift not repaired: " + "; ".join(unresolved))
        return results

    reconcile()
