"""The registry and the store agree: ``@production`` of ``ragtrail-<product>`` names the collection the
``<product>`` alias points at.

Both move together when ragtrail moves them, through :func:`go_live` (an approval, ``ragtrail promote``, the
repairs below) or its two halves where a room may not import this one (the evaluate stage moves the store's
half, :func:`ragtrail.store.versions.put_live`; registering the version moves the registry's,
:func:`ragtrail.trail.registry.move_alias`). No other module moves an alias (a test holds it).
Someone moving ``@production`` in the MLflow UI or API moves only the registry; this module finds such
drift and repairs it. The registry wins by default (``prefer="registry"``): it is where people
decide what is production. When the registry names a collection the store no longer holds (pruned),
or has no production version, the store's alias is kept and the registry follows it instead.

Example::

    reconcile("handbook", client, location=None)
    # {"product": "handbook", "agree": True, "action": "store", "store": "handbook__v2", ...}
"""

from __future__ import annotations

from ragtrail.trail.names import (
    ARCHIVED_TAG,
    COLLECTION_TAG,
    MODEL_PREFIX,
    PRODUCTION_ALIAS,
    model_name,
    quote,
)

PREFER = ("registry", "store")


def _production(client, product: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name(product), PRODUCTION_ALIAS)
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
             if v.tags.get(COLLECTION_TAG) == collection and v.tags.get(ARCHIVED_TAG) != "true"]
    return max(found, key=lambda v: int(v.version)) if found else None


def reconcile(product: str, client, location=None, *, prefer: str = "registry", dry_run: bool = False) -> dict:
    """Make the two sides agree; return :func:`state` before the repair plus ``action``.

    ``action``: ``None`` (they agreed), ``"store"`` (the alias moved to the registry's collection),
    ``"registry"`` (``@production`` moved to the alias's collection), or ``"unresolved"`` with a
    ``reason`` (neither side names something the other can follow). ``dry_run`` only reports what it
    would do.
    """
    from ragtrail.store import open_store, put_live
    from ragtrail.trail.registry import move_alias

    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)}")
    with open_store(location) as store:
        before = state(product, client, store)
        if before["agree"]:
            return {**before, "action": None}
        follow_registry = before["registry"] is not None and store.exists(before["registry"])
        if prefer == "registry" and follow_registry:
            if not dry_run:
                put_live(store, product, before["registry"])
            return {**before, "action": "store"}
    target = _newest_version_of(client, product, before["store"]) if before["store"] else None
    if target is not None:
        if not dry_run:
            move_alias(client, product, PRODUCTION_ALIAS, target.version)
        return {**before, "action": "registry", "registry_version": str(target.version)}
    if follow_registry:  # prefer="store", but the alias names nothing registered: follow the registry
        if not dry_run:
            with open_store(location) as store:
                put_live(store, product, before["registry"])
        return {**before, "action": "store"}
    return {**before, "action": "unresolved",
            "reason": f"the registry names {before['registry'] or 'nothing'} and the alias {before['store'] or 'nothing'}; "
                      "neither can follow the other"}


def go_live(product: str, collection: str, client=None, location=None, *, keep_versions: int | None = None) -> dict:
    """Make ``collection`` the product's live version on both sides (an approval, ``ragtrail promote``):
    the store's alias (:func:`~ragtrail.store.versions.put_live`), then ``@production`` on the collection's
    newest registered version (:func:`~ragtrail.trail.registry.set_production`) when there is a registry
    (``client``); with ``keep_versions``, prune old versions and archive their registered versions.

    Raises ``LookupError`` when the store holds no such collection (nothing moves).
    Returns ``{"live", "model_version", "pruned", "archived"}``.
    """
    from ragtrail.store import check_name, open_store, put_live
    from ragtrail.trail.registry import archive_versions, set_production

    with open_store(location) as store:
        pruned = put_live(store, check_name("product", product), collection, keep_versions)
    if client is None:
        return {"live": collection, "model_version": None, "pruned": pruned, "archived": []}
    number = set_production(product, collection, client)
    return {"live": collection, "model_version": str(number) if number is not None else None, "pruned": pruned,
            "archived": archive_versions(client, product, pruned)}
