"""Where the store is: a ``qdrant_default`` Airflow connection (read through the Qdrant provider's hook) in
DAG runs and the plugin, ``RAGTRAIL_QDRANT_URL`` + ``RAGTRAIL_QDRANT_API_KEY`` elsewhere, else the local
store — all through the one resolver, :func:`ragtrail.store.resolve_store`."""

from __future__ import annotations

import json

import pytest

from ragtrail.store import StoreSettings, list_versions, open_store, resolve_store
from ragtrail.store.qdrant import connect
from ragtrail_airflow.rag.store_conn import store_settings

CONN = {"conn_type": "qdrant", "host": "qdrant.internal", "port": 6400, "password": "sekrit-api-key",
        "extra": {"https": False}}


@pytest.fixture
def connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_QDRANT_DEFAULT", json.dumps(CONN))


def test_without_connection_the_environment_store_is_used(monkeypatch, settings):
    """No ``qdrant_default`` connection: the tasks get what the CLI gets (here the data folder, served by
    the default embedded store, Qdrant Edge)."""
    monkeypatch.delenv("AIRFLOW_CONN_QDRANT_DEFAULT", raising=False)
    monkeypatch.delenv("RAGTRAIL_EMBEDDED_STORE", raising=False)
    assert store_settings() == resolve_store() == StoreSettings(path=str(settings.qdrant_path), kind="edge")


def test_connection_becomes_server_settings_with_its_api_key(connection):
    """With the connection: the connection's host, port and API key, as a client that uses them."""
    target = store_settings()
    assert target.url == "http://qdrant.internal:6400" and target.api_key == "sekrit-api-key"
    assert "sekrit" not in repr(target) and "sekrit" not in json.dumps(target.describe())
    client = connect(target)
    try:
        assert client._client.rest_uri == "http://qdrant.internal:6400"
        assert client._client._api_key == "sekrit-api-key"
    finally:
        client.close()


def test_environment_url_carries_its_api_key_and_ca(monkeypatch):
    """Defect 2: a ``RAGTRAIL_QDRANT_URL`` client was built without any API key. Now the key (and a private CA)
    come from the environment, and a URL with credentials in it is refused rather than logged around."""
    monkeypatch.setenv("RAGTRAIL_QDRANT_URL", "https://qdrant.example:6333")
    monkeypatch.setenv("RAGTRAIL_QDRANT_API_KEY", "env-key")
    import certifi

    monkeypatch.setenv("RAGTRAIL_QDRANT_CA_BUNDLE", certifi.where())  # a private CA bundle's place
    target = resolve_store()
    assert (target.mode, target.url, target.api_key, target.verify) == (
        "server", "https://qdrant.example:6333", "env-key", certifi.where())
    client = connect(target)
    try:
        assert client._client._api_key == "env-key" and client._client._rest_args["verify"] == certifi.where()
    finally:
        client.close()
    assert resolve_store(target.describe()) == target  # what the registry records resolves back, key included
    with pytest.raises(ValueError, match="must not carry credentials"):
        resolve_store("https://user:pw@qdrant.example:6333")


def test_evaluate_registers_the_store_it_scored(connection, monkeypatch):
    """Defect 2: with the connection, evaluate scored the connection's server but registered the local store.
    The evaluate task now hands the same settings to the gate and (secret-free) to the registry."""
    import ragtrail.models.registration
    import ragtrail.stages.gate
    import ragtrail.trail.client
    from ragtrail.core.recorder import Recorder
    from ragtrail.core.spec import run_config
    from ragtrail_airflow.rag.pipeline import evaluate_version

    seen = {}

    def evaluate_and_promote(*, location, **kw):
        seen["evaluated"] = location
        return {"collection": "p__v1", "gate": "passed", "promoted": True, "reason": "ok", "metrics": {}, "pruned": []}

    def register_version(client, **kw):
        seen["registered"] = kw.get("store", kw.get("qdrant_location"))
        return "1"

    monkeypatch.setattr(ragtrail.stages.gate, "evaluate_and_promote", evaluate_and_promote)
    monkeypatch.setattr(ragtrail.models.registration, "register_version", register_version)
    monkeypatch.setattr(ragtrail.trail.client, "guarded_client", lambda *a, **k: None)
    cfg = run_config({"source": "/nowhere", "product": "p", "version": "v1"})
    evaluate_version(cfg, None, Recorder(), {"run_id": "r1", "experiment_id": "0"})
    assert "qdrant.internal:6400" in str(seen["registered"]) and "sekrit" not in str(seen["registered"])
    assert resolve_store(seen["registered"]).url == resolve_store(seen["evaluated"]).url == "http://qdrant.internal:6400"


def test_registered_retriever_uses_the_recorded_server_with_the_environment_key(monkeypatch):
    """The pyfunc reads its store from the model config through the resolver; the key from the environment."""
    from ragtrail.retriever import RagtrailRetriever

    for var in ("RAGTRAIL_QDRANT_URL", "RAGTRAIL_HOME", "RAGTRAIL_QDRANT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAGTRAIL_QDRANT_API_KEY", "env-key")
    model = RagtrailRetriever()
    model.config = {"store": {"mode": "server", "url": "http://qdrant.internal:6400"}}
    assert (model.store().url, model.store().api_key) == ("http://qdrant.internal:6400", "env-key")
    model.config = {"qdrant_location": "/srv/qdrant"}  # a model registered before the store seam: its
    monkeypatch.delenv("RAGTRAIL_EMBEDDED_STORE", raising=False)  # folder now opens as Edge (migrated once)
    assert model.store() == StoreSettings(path="/srv/qdrant", kind="edge")


def test_local_and_memory_stores_round_trip(tmp_path):
    """Local mode and ``:memory:`` are real stores; a local store is closed (and unlocked) after the block."""
    store_dir = tmp_path / "store"
    with open_store(store_dir) as store:
        store.create("p__v1", 4, {"embedder": "e"})
    with open_store(store_dir) as store:
        assert [(v["collection"], v["embedder"]) for v in list_versions(store, "p")] == [("p__v1", "e")]
    with open_store(":memory:") as store:
        assert store.settings.mode == "memory" and store.collections() == []
