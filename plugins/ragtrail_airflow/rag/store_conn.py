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

    A store that cannot be read right now (a server that does not answer) is not checked: nothing to report,
    and the ``plan`` task still refuses a mixed version. Parsing asks Airflow for no connection: the
    ``qdrant_default`` connection counts when the environment defines it (``AIRFLOW_CONN_QDRANT_DEFAULT``,
    as docker compose does), else the environment's store, as outside Airflow.
    """
    import logging
    import os

    from ragtrail.stages.version_conflicts import build_conflicts

    try:
        env_conn = f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}" in os.environ
        return build_conflicts(products, store_settings() if env_conn else None)
    except Exception as err:  # never break parsing over a check that could not be made
        logging.getLogger(__name__).info("products not checked against the store: %s", err)
        return []


def store_status() -> dict:
    """The pipeline's store (the ``qdrant_default`` connection, else the environment's): a server is asked
    for its collections with its API key, bounded by a short timeout. A local-mode store is only looked
    at, never opened: it admits one process at a time, and that should be the pipeline."""
    import time
    from pathlib import Path

    from ragtrail.store import open_store
    from ragtrail.trail.names import redact_uri

    settings = store_settings()
    if settings.mode == "server":
        out = {"mode": "server", "url": redact_uri(settings.url)}
        t0 = time.perf_counter()
        try:
            with open_store(settings.with_timeout(3)) as store:
                out.update(ok=True, collections=len(store.collections()),
                           latency_ms=round((time.perf_counter() - t0) * 1000, 1))
        except Exception as err:  # reported, not raised: this is a health check
            out.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
        return out
    path = Path(settings.path or "")
    collections = sorted(p.name for p in (path / "collection").glob("*") if p.is_dir())
    ok = path.is_dir() or not path.exists()  # not created yet is fine: the first index task creates it
    return {"mode": settings.mode, "path": str(path), "ok": ok, "exists": path.is_dir(), "collections": collections}
