"""Qdrant target selection: a ``qdrant_default`` Airflow connection means a server reached through the Qdrant
provider's hook; without one the local store; ``open_qdrant`` accepts the resulting client factory."""

from __future__ import annotations

import json

from ragtrail.indexing import list_versions, open_qdrant
from ragtrail.pipeline import qdrant_location
from ragtrail_airflow.qdrant import qdrant_target


def test_without_connection_the_local_store_is_used(monkeypatch):
    """No ``qdrant_default`` connection: the plan and index tasks get the local-mode folder."""
    monkeypatch.delenv("AIRFLOW_CONN_QDRANT_DEFAULT", raising=False)
    assert qdrant_target() == qdrant_location()


def test_connection_builds_a_server_client_through_the_hook(monkeypatch):
    """With the connection, the target is a factory whose client talks to the connection's host, port and key."""
    conn = {"conn_type": "qdrant", "host": "qdrant.internal", "port": 6400, "password": "sekrit-api-key",
            "extra": {"https": False}}
    monkeypatch.setenv("AIRFLOW_CONN_QDRANT_DEFAULT", json.dumps(conn))
    target = qdrant_target()
    assert callable(target)
    client = target()
    try:
        remote = client._client
        assert remote.rest_uri == "http://qdrant.internal:6400"
        assert remote._api_key == "sekrit-api-key"
    finally:
        client.close()
    assert target() is not client  # a fresh client per call: open_qdrant closes the one it was given


def test_open_qdrant_uses_and_closes_a_client_factory(tmp_path):
    """A factory's client is used inside the block and closed after (local mode would refuse a second one)."""
    from qdrant_client import QdrantClient, models

    store = tmp_path / "store"
    with open_qdrant(lambda: QdrantClient(path=str(store))) as client:
        client.create_collection("p__v1", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with open_qdrant(store) as client:
        assert [v["collection"] for v in list_versions(client, "p")] == ["p__v1"]
