"""Stores register by entry point (issue 26, item 5): a store installed as a distribution with one
``ragtrail.stores`` line is opened by ``open_store("<kind>://…")``, no ragtrail file changed.

The distribution is real metadata: a ``.dist-info`` folder on ``sys.path`` with an ``entry_points.txt``,
the way pip leaves an installed package; the store is tests/include/store/dict_store.py.
"""

from __future__ import annotations

from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

from ragtrail.store import Point, ensure_collection, list_versions, open_store, put_live, resolve_store
from ragtrail.store.resolve import BUILTIN_STORES, STORES_GROUP, stores

HERE = Path(__file__).resolve().parent


@pytest.fixture
def dict_store_installed(tmp_path, monkeypatch):
    """Install a distribution ``ragtrail-dict-store`` whose entry point registers ``dict`` → dict_store."""
    info = tmp_path / "ragtrail_dict_store-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ragtrail-dict-store\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{STORES_GROUP}]\ndict = dict_store\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(HERE))
    stores.cache_clear()
    yield distribution("ragtrail-dict-store")
    stores.cache_clear()


def test_ragtrails_own_stores_come_from_its_entry_points():
    ours = {ep.name: ep.value for ep in entry_points(group=STORES_GROUP) if ep.dist and ep.dist.name == "ragtrail"}
    assert ours == BUILTIN_STORES, "pyproject.toml's ragtrail.stores entries and BUILTIN_STORES differ " \
                                   "(or the editable install is stale: pip install --no-deps -e .)"
    assert resolve_store("https://qdrant.example:6333").kind == "https"
    assert resolve_store(":memory:").kind == "qdrant"


def test_an_unregistered_scheme_is_refused_by_name():
    stores.cache_clear()
    with pytest.raises(ValueError, match=r"no store speaks dict:// \(known: .*https"):
        resolve_store("dict://nowhere")


def test_a_store_registered_by_one_entry_point_opens_and_serves(dict_store_installed):
    assert dict_store_installed.entry_points.select(group=STORES_GROUP).names == {"dict"}
    assert stores()["dict"] == "dict_store"
    assert resolve_store("dict://x").describe() == {"mode": "server", "url": "dict://x"}
    with open_store("dict://x") as store:
        assert type(store).__module__ == "dict_store"
        ensure_collection(store, "p__v1", 2, {"version": "v1", "built_at": 1})
        ensure_collection(store, "p__v2", 2, {"version": "v2", "built_at": 2})
        store.upsert("p__v1", [Point(1, [1.0, 0.0], {"doc_id": "a"}), Point(2, [0.0, 1.0], {"doc_id": "b"})])
        store.upsert("p__v2", [Point(1, [0.6, 0.8], {"doc_id": "c"})])
        assert put_live(store, "p", "p__v1") == []
    # A second open of the same URL sees what the first left (as a server would).
    with open_store(resolve_store({"mode": "server", "url": "dict://x"})) as store:
        assert store.alias_target("p") == "p__v1"
        assert [h.payload["doc_id"] for h in store.query("p__v1", [0.9, 0.1], 2)] == ["a", "b"]
        assert [(v["version"], v["live"], v["points"]) for v in list_versions(store, "p")] == \
            [("v2", False, 1), ("v1", True, 2)]
        assert put_live(store, "p", "p__v2", keep_versions=0) == ["p__v1"]
        assert store.collections() == ["p__v2"] and store.alias_target("p") == "p__v2"
        with pytest.raises(LookupError, match="p has no version 'v9'; built: v2"):
            put_live(store, "p", "p__v9")
        store.upsert("p__v2", [Point(2, [1.0, 0.0], {"doc_id": "d"})])
        store.delete_where("p__v2", "doc_id", ["c", "nobody"])  # the protocol's delete by payload filter
        assert [p.payload["doc_id"] for p in store.scroll("p__v2", ["doc_id"])] == ["d"]


def test_a_registered_store_serves_sparse_and_hybrid_queries(dict_store_installed):
    """The test store speaks the same sparse / fused query interface as the Qdrant ones."""
    from ragtrail.store.base import SearchQuery
    from ragtrail.store.sparse import CONFIG, encoder

    bm25 = encoder(CONFIG)
    texts = ["pg_restore reads an archive", "vacuum reclaims dead tuples", "the planner picks a plan"]
    with open_store("dict://hybrid") as store:
        ensure_collection(store, "h__v1", 2, {"sparse": dict(CONFIG)})
        store.upsert("h__v1", [Point(i, v, {"doc_id": f"d{i}"}, s) for i, (v, s) in
                               enumerate(zip([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], bm25.documents(texts), strict=True))])
        [q] = bm25.queries(["restore the archive"])
        sparse, hybrid = store.query_batch("h__v1", [SearchQuery(sparse=q, mode="sparse"),
                                                     SearchQuery(dense=[0.0, 1.0], sparse=q, mode="hybrid")], 3)
    assert [h.id for h in sparse] == [0] and sparse[0].found_by == ("sparse",)
    assert {h.id: h.found_by for h in hybrid} == {2: ("dense",), 0: ("dense", "sparse"), 1: ("dense",)}
