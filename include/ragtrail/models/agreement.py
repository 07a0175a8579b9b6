"""The registry and the store agree: ``@production`` of ``ragtrail-<product>`` names the collection the
``<product>`` alias points at.

Both move together when ragtrail moves them (the evaluate stage, an approval, ``ragtrail promote``).
Someone moving ``@production`` in the MLflow UI or API moves only the registry; this module finds such
drift and repairs it. The registry wins by default (``prefer="registry"``): it is where people
decide what is production. When the registry names a collection the store no longer holds (pruned),
or has no production version, the store's alias is kept and the registry follows it instead.

Example::

    reconcile("handbook", client, location=None)
    # {"product": "handbook", "agree": True, "action": "store", "store": "handbook__v2", ...}
"""

from __future__ import annotations

from ragtrail.trail.names import COLLECTION_TAG, MODEL_PREFIX, model_name, quote

PREFER = ("registry", "store")


def _production(client, product: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name(product), "production")
    except MlflowException:
        return None


def registered_products(client) -> list[str]:
    """Products with a registered model (``ragtrail-<product>``)."""
    models = client.search_registered_models(filter_string=f"name LIKE {quote(MODEL_PREFIX + '%')}", max_results=1000)
    return sorted(m.name[len(MODEL_PREFIX):] for m in models)


def state(product: str, client, store) -> dict:
    """Where production is on each side: ``{"product", "registry", "registry_version", "store", "agree"}``."""
    mv = _production(client, product)
    registry = mv.tags.get(COLLECTION_TAG) if mv is not None else None
    live = store.alias_target(product)
    return {"product": product, "registry": registry, "registry_version": str(mv.version) if mv is not None else None,
            "store": live, "agree": registry == live}


def _newest_version_of(client, product: str, collection: str):
    found = [v for v in client.search_model_versions(f"name = {quote(model_name(product))}", max_results=10_000)
             if v.tags.get(COLLECTION_TAG) == collection and v.tags.get("ragtrail.archived") != "true"]
    return max(found, key=lambda v: int(v.version)) if found else None


def reconcile(product: str, client, location=None, *, prefer: str = "registry", dry_run: bool = False) -> dict:
    """Make the two sides agree; return :func:`state` before the repair plus ``action``.

    ``action``: ``None`` (they agreed), ``"store"`` (the alias moved to the registry's collection),
    ``"registry"`` (``@production`` moved to the alias's collection), or ``"unresolved"`` with a
    ``reason`` (neither side names something the other can follow). ``dry_run`` only reports what it
    would do.
    """
    from ragtrail.store import open_store

    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)}")
    with open_store(location) as store:
        before = state(product, client, store)
        if before["agree"]:
            return {**before, "action": None}
        follow_registry = before["registry"] is not None and store.exists(before["registry"])
        if prefer == "registry" and follow_registry:
            if not dry_run:
                store.point_alias(product, before["registry"])
            return {**before, "action": "store"}
    target = _newest_version_of(client, product, before["store"]) if before["store"] else None
    if target is not None:
        if not dry_run:
            client.set_registered_model_alias(model_name(product), "production", target.version)
        return {**before, "action": "registry", "registry_version": str(target.version)}
    if follow_registry:  # prefer="store", but the alias names nothing registered: follow the registry
        if not dry_run:
            with open_store(location) as store:
                store.point_alias(product, before["registry"])
        return {**before, "action": "store"}
    return {**before, "action": "unresolved",
            "reason": f"the registry names {before['registry'] or 'nothing'} and the alias {before['store'] or 'nothing'}; "
                      "neither can follow the other"}


def go_live(product: str, collection: str, client, location=None, *, keep_versions: int = 2) -> dict:
    """Move both sides to ``collection`` at once (an approval, a forced promotion): the store's alias,
    then ``@production`` on its newest registered version; prune old versions and archive theirs.

    Returns ``{"live", "model_version", "pruned", "archived"}``.
    """
    from ragtrail.store import open_store, promote, prune_versions
    from ragtrail.store.base import check_name
    from ragtrail.trail.registry import archive_versions, set_production

    version = collection.split("__", 1)[1] if "__" in collection else collection
    with open_store(location) as store:
        live = promote(store, check_name("product", product), version)
        pruned = prune_versions(store, product, keep_versions)
    number = set_production(product, live, client)
    return {"live": live, "model_version": str(number) if number is not None else None, "pruned": pruned,
            "archived": archive_versions(client, product, pruned)}
