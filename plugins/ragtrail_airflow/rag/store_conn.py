"""The store of DAG runs and the plugin: a ``qdrant_default`` connection means a Qdrant server.

With the connection defined (``AIRFLOW_CONN_QDRANT_DEFAULT`` in docker compose) the connection is read
through the Qdrant provider's hook — host, port, API key (password) and the extras the hook knows
(``url``, ``https``, ``prefix``, ``grpc_port``, ``prefer_gprc``; plus ``verify`` for a CA bundle) — and
handed on as plain :class:`~ragtrail.store.StoreSettings`. Without it the environment decides, as
outside Airflow (:func:`ragtrail.store.resolve_store`). ``include/ragtrail`` never sees Airflow.
"""

from __future__ import annotations

DEFAULT_CONN_ID = "qdrant_default"


def has_connection(conn_id: str) -> bool:
    """Whether Airflow knows ``conn_id`` (environment, secrets backend or metadata DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def store_settings(conn_id: str = DEFAULT_CONN_ID):
    """The pipeline's store: the connection's server, else the environment's store.

    Example::

        with open_store(store_settings()) as store:
            list_versions(store, "handbook")
    """
    from ragtrail.store import StoreSettings, resolve_store

    if not has_connection(conn_id):
        return resolve_store()
    from airflow.providers.qdrant.hooks.qdrant import QdrantHook

    conn = QdrantHook(conn_id=conn_id).get_connection(conn_id)
    extra = conn.extra_dejson
    url = extra.get("url")
    if not url:
        scheme = "https" if extra.get("https") else "http"
        url = f"{scheme}://{conn.host or 'localhost'}:{conn.port or 6333}"
    # through the resolver: a URL that carries credentials is refused there, whatever its source
    base = resolve_store(url, env={})
    return StoreSettings(url=base.url, api_key=conn.password or None, prefix=extra.get("prefix") or None,
                         grpc_port=int(extra.get("grpc_port", 6334)), prefer_grpc=bool(extra.get("prefer_gprc", False)),
                         verify=extra.get("verify", True))


def product_build_conflicts(products) -> list[str]:
    """Parse time: products whose entry contradicts what their version was built with (messages with the fix).

    A store that cannot be read right now (a local store another process holds, a server that does not
    answer) is not checked: nothing to report, and the ``plan`` task still refuses a mixed version.
    """
    import logging

    from ragtrail.products import build_conflicts

    try:
        return build_conflicts(products, store_settings())
    except Exception as err:  # never break parsing over a check that could not be made
        logging.getLogger(__name__).info("products not checked against the store: %s", err)
        return []
