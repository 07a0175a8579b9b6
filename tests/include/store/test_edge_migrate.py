"""An earlier release's local-mode folder becomes an Edge store on its first Edge open, meaning intact; the
folder's files say what was built without opening it."""

from __future__ import annotations

import json
import logging
import os

import pytest

from ragtrail.store import Point, StoreSettings, list_versions, open_store, vectors_by_hash


def local_mode_store(root) -> list[Point]:
    """Two versions of ``p`` (v2 live) and one of ``q``, the way an earlier release left them."""
    pts = [Point(id=i, vector=[1.0, i / 10, 0.0], payload={"doc_id": f"d{i % 2}", "chunk_hash": f"h{i}", "text": f"t{i}"})
           for i in range(30)]
    with open_store(StoreSettings(path=str(root))) as store:
        for name, n, built in (("p__v1", 10, 1.0), ("p__v2", 30, 2.0), ("q__v1", 5, 3.0)):
            store.create(name, 3, {"built_at": built, "chunk_size": 64, "embedder": "e"})
            store.upsert(name, pts[:n])
        store.point_alias("p", "p__v2")
        store.point_alias("q", "q__v1")
    assert (root / "collection").is_dir() and (root / "meta.json").is_file()
    return pts


def test_a_local_mode_store_is_migrated_on_first_open_and_kept_as_a_backup(tmp_path, caplog):
    root = tmp_path / "qdrant"
    pts = local_mode_store(root)
    with caplog.at_level(logging.WARNING, logger="ragtrail.store.edge_migrate"):
        with open_store(StoreSettings(path=str(root), kind="edge")) as store:
            assert sorted(store.collections()) == ["p__v1", "p__v2", "q__v1"]
            assert store.alias_target("p") == "p__v2" and store.alias_target("q") == "q__v1"
            assert [(v["version"], v["live"], v["points"], v["chunk_size"]) for v in list_versions(store, "p")] == [
                ("v2", True, 30, 64), ("v1", False, 10, 64)]
            assert store.metadata("q__v1") == {"built_at": 3.0, "chunk_size": 64, "embedder": "e"}
            held = vectors_by_hash(store, "p__v2", ["h7"])["h7"]
            norm = (1 + 0.49) ** 0.5
            assert held == pytest.approx([1 / norm, 0.7 / norm, 0.0], abs=1e-5)
            hit = store.query("p__v2", [1.0, 0.7, 0.0], 1)[0]
            assert hit.id == 7 and hit.payload == pts[7].payload
    lines = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert len(lines) == 1 and "local-mode-backup" in lines[0] and "p__v2: 30 points" in lines[0], lines
    backup = tmp_path / "qdrant.local-mode-backup"
    assert (backup / "meta.json").is_file() and (root / "edge-store.json").is_file()
    assert not (root / "meta.json").exists() and not (tmp_path / "qdrant.edge-migrating").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ragtrail.store.edge_migrate"):
        with open_store(StoreSettings(path=str(root), kind="edge")) as store:  # once only
            assert store.count("p__v1") == 10
    assert not caplog.records
    with open_store(StoreSettings(path=str(backup))) as old:  # the backup is still a working local-mode store
        assert old.count("p__v2") == 30


def test_a_migration_cut_between_its_two_renames_is_finished_by_the_next_open(tmp_path):
    root = tmp_path / "qdrant"
    local_mode_store(root)
    with open_store(StoreSettings(path=str(root), kind="edge")):
        pass
    os.rename(root, tmp_path / "qdrant.edge-migrating")  # as if killed after the old store moved aside
    with open_store(StoreSettings(path=str(root), kind="edge")) as store:
        assert store.alias_target("p") == "p__v2" and store.count("p__v2") == 30


def test_versions_tells_which_store_the_product_lives_in(tmp_path, monkeypatch, capsys):
    from ragtrail.cli.main import main

    root = tmp_path / "qdrant"
    local_mode_store(root)
    monkeypatch.setenv("RAGTRAIL_QDRANT_PATH", str(root))
    monkeypatch.setenv("RAGTRAIL_EMBEDDED_STORE", "qdrant")
    assert main(["versions", "--product", "p"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"p lives in the Qdrant local-mode store at {root}"
    monkeypatch.setenv("RAGTRAIL_EMBEDDED_STORE", "edge")
    assert main(["versions", "--product", "p"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"p lives in the Qdrant Edge store at {root}" and out[3].split()[:3] == ["*", "v2", "30"]
    assert main(["versions", "--product", "p", "--json"]) == 0
    assert {(v["version"], v["store"]) for v in json.loads(capsys.readouterr().out)} == {("v2", "edge"), ("v1", "edge")}


def test_the_plan_reads_an_edge_stores_metadata_without_opening_it(tmp_path):
    """DAG parsing checks build configurations from the files alone (no lock, no shard load), as for local mode."""
    from ragtrail.store.peek import local_metadata

    root = tmp_path / "edge"
    assert local_metadata(root) == {}
    with open_store(StoreSettings(path=str(root), kind="edge")) as store:
        store.create("p__v1", 3, {"chunk_size": 64})
        store.create("q__v2", 3, {"chunk_size": 32})
        assert local_metadata(root) == {"p__v1": {"chunk_size": 64}, "q__v2": {"chunk_size": 32}}
    (root / "collections" / "q__v2" / "meta.json").write_text("{torn")
    assert local_metadata(root) is None  # unreadable: nobody should guess
