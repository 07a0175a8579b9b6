"""The registry's @production and the Qdrant alias agree: drift is found and repaired (the registry wins by
default), promotions move both, pruned versions are archived in the registry."""

from __future__ import annotations

import pytest

from ragtrail.models.agreement import go_live, reconcile, registered_products, state
from ragtrail.store import open_store
from ragtrail.trail.names import COLLECTION_TAG
from ragtrail.trail.registry import archive_versions, record_decision


@pytest.fixture()
def world(tmp_path):
    """A SQLite registry with ragtrail-p versions 1..3 over p__v1..p__v3, and a local store holding them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("ragtrail-p")
    location = str(tmp_path / "qdrant")
    with open_store(location) as store:
        for v in (1, 2, 3):
            store.create(f"p__v{v}", 4, {"built_at": v})
            client.create_model_version("ragtrail-p", source=str(tmp_path / f"m{v}"), tags={COLLECTION_TAG: f"p__v{v}"})
        store.point_alias("p", "p__v1")
    client.set_registered_model_alias("ragtrail-p", "production", "1")
    return client, location


def _alias(location) -> str | None:
    with open_store(location) as store:
        return store.alias_target("p")


def test_agreeing_sides_are_left_alone(world):
    client, location = world
    assert registered_products(client) == ["p"]
    assert reconcile("p", client, location) == {"product": "p", "registry": "p__v1", "registry_version": "1",
                                                "store": "p__v1", "agree": True, "action": None}


def test_a_production_move_in_the_registry_moves_the_alias(world):
    """@production moved in MLflow (UI or API): the dry run reports it, the repair moves the alias."""
    client, location = world
    client.set_registered_model_alias("ragtrail-p", "production", "3")
    assert reconcile("p", client, location, dry_run=True)["action"] == "store" and _alias(location) == "p__v1"
    assert reconcile("p", client, location)["action"] == "store" and _alias(location) == "p__v3"
    with open_store(location) as store:
        assert state("p", client, store)["agree"]


def test_prefer_store_moves_production_to_the_alias(world):
    client, location = world
    with open_store(location) as store:
        store.point_alias("p", "p__v2")
    assert reconcile("p", client, location, prefer="store")["action"] == "registry"
    assert str(client.get_model_version_by_alias("ragtrail-p", "production").version) == "2"


def test_a_pruned_production_cannot_win_and_the_registry_follows_the_alias(world):
    client, location = world
    client.set_registered_model_alias("ragtrail-p", "production", "3")
    with open_store(location) as store:
        store.delete_collection("p__v3")
    assert reconcile("p", client, location)["action"] == "registry"
    assert str(client.get_model_version_by_alias("ragtrail-p", "production").version) == "1" and _alias(location) == "p__v1"


def test_drift_with_nothing_to_follow_is_reported_unresolved(world):
    client, location = world
    client.set_registered_model_alias("ragtrail-p", "production", "3")
    with open_store(location) as store:
        store.delete_collection("p__v3")  # the registry's production is gone from the store …
        store.create("p__v9", 4, {})
        store.point_alias("p", "p__v9")  # … and the alias names a collection nobody registered
    result = reconcile("p", client, location)
    assert result["action"] == "unresolved" and "neither" in result["reason"]


def test_go_live_moves_both_and_archives_what_it_pruned(world):
    """An approval's promotion: alias and @production on v3, the oldest other version pruned and its
    registered version tagged archived (its aliases removed)."""
    client, location = world
    client.set_registered_model_alias("ragtrail-p", "candidate", "1")
    moved = go_live("p", "p__v3", client, location, keep_versions=1)
    assert moved["live"] == "p__v3" and moved["model_version"] == "3"
    assert moved["pruned"] == ["p__v1"] and moved["archived"] == ["1"]
    v1 = client.get_model_version("ragtrail-p", "1")
    assert v1.tags["ragtrail.archived"] == "true" and not v1.aliases
    assert _alias(location) == "p__v3" and archive_versions(client, "p", ["p__v1"]) == []  # once


def test_a_decision_is_tagged_on_the_version_and_the_run(world, tmp_path):
    client, _ = world
    run = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "a")))
    record_decision(client, "p", "2", run.info.run_id, outcome="rejected", by="ana", at="2026-11-28T10:00:00Z")
    tags = client.get_model_version("ragtrail-p", "2").tags
    assert (tags["ragtrail.approval"], tags["ragtrail.approval_by"]) == ("rejected", "ana")
    assert client.get_run(run.info.run_id).data.tags["ragtrail.approval_at"] == "2026-11-28T10:00:00Z"
