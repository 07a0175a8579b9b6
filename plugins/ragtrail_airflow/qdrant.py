"""Qdrant through the Qdrant provider: a ``qdrant_default`` connection means a Qdrant server.

With the connection defined (``AIRFLOW_CONN_QDRANT_DEFAULT`` in docker compose), the plan and index
tasks reach the server through ``QdrantHook``, which builds the client from the connection's host, port,
API key (password) and extras. Without it the tasks use the embedded local store of
``ragtrail.pipeline.qdrant_location`` (``RAGTRAIL_QDRANT_URL`` or the data folder), which only one
process may open at a time. ``include/ragtrail`` only ever sees the resulting client factory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def qdrant_target(conn_id: str = DEFAULT_CONN_ID) -> Callable[[], Any] | str | Path:
    """Where the pipeline's Qdrant is: a client factory for the connection's server, else the local store.

    Example::

        with open_qdrant(qdrant_target()) as client:
            list_versions(client, "handbook")
    """
    from ragtrail.pipeline import qdrant_location

    if not has_connection(conn_id):
        return qdrant_location()

    def make() -> Any:
        from airflow.providers.qdrant.hooks.qdrant import QdrantHook

        # A fresh hook per call: the caller closes the client, and a cached one would be reused closed.
        return QdrantHook(conn_id=conn_id).get_conn()

    return make
