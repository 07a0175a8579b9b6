"""One behaviour for every store kind: the same checks on Qdrant ``:memory:``, qdrant-client's local mode and
Qdrant Edge (real engines, no fakes). What the stages rely on — versions behind an alias, the alias move,
promote and keep-N, held vectors, delete, filtered scrolls, payload-indexed filters, count, query order,
metadata — must not depend on where the points live.
"""

from __future__ import annotations

import math
import uuid

import pytest

from ragtrail.store import (
    Point,
    StoreSettings,
    ensure_collection,
    list_versions,
    open_store,
    prune_versions,
    put_live,
    vectors_by_hash,
)
from ragtrail.store.base import PARTS_KEY

KINDS = ["memory", "local", "edge", "edge-parts"]


def _opened(kind: str, tmp_path):
    settings = {"memory": StoreSettings(memory=True), "local": StoreSettings(path=str(tmp_path / "local")),
                "edge": StoreSettings(path=str(tmp_path / "edge"), kind="edge"),
                "edge-parts": StoreSettings(path=str(tmp_path / "edge"), kind="edge")}[kind]
    with open_store(settings) as s:
        if kind == "edge-parts":  # every collection in three parts: d0 | d1 | d2 (and above)
            made = type(s).create
            s.create = lambda name, dim, metadata: made(s, name, dim, {**metadata, PARTS_KEY: ["d1", "d2"]})
        yield s


@pytest.fixture(params=KINDS)
def store(request, tmp_path):
    yield from _opened(request.param, tmp_path)


@pytest.fixture(params=KINDS[:3])
def one_shard(request, tmp_path):
    """A store whose collection is one engine's (Qdrant's own fusion is the reference; parts rank each by
    its own BM25 IDF, as a sharded Qdrant collection does)."""
    yield from _opened(request.param, tmp_path)


def unit(*xs: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in xs))
    return [x / n for x in xs]


def pid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}"))


def points(n: int, doc=lambda i: f"d{i % 3}") -> list[Point]:
    """Points on a quarter circle (so the nearest neighbours of any angle are known), three documents."""
    return [Point(id=pid(i), vector=unit(math.cos(i / 10), math.sin(i / 10), 0.0),
                  payload={"doc_id": doc(i), "chunk_hash": f"h{i}", "text": f"t{i}", "chunk_index": i})
            for i in range(n)]


def build(store, name: str, n: int = 12, built_at: float = 0.0) -> None:
    ensure_collection(store, name, 3, {"built_at": built_at, "chunk_size": 100})
    store.upsert(name, points(n))
    store.finish(name)


def test_collections_metadata_dimension_and_count(store):
    assert store.collections() == [] and not store.exists("p__v1")
    build(store, "p__v1", n=7)
    assert store.exists("p__v1") and store.collections() == ["p__v1"]
    assert store.dimension("p__v1") == 3 and store.metadata("p__v1") == {"built_at": 0.0, "chunk_size": 100}
    assert store.count("p__v1") == 7
    store.upsert("p__v1", points(7))  # same ids: rewritten, not added
    assert store.count("p__v1") == 7
    with pytest.raises(ValueError, match="4-d"):
        ensure_collection(store, "p__v1", 4, {})


def test_query_orders_by_cosine_and_selects_fields(store):
    build(store, "p__v1", n=20)
    angle = 5.2 / 10
    hits = store.query("p__v1", unit(math.cos(angle), math.sin(angle), 0.0), 3, ["doc_id"])
    assert [h.id for h in hits] == [pid(5), pid(6), pid(4)]
    assert hits[0].score >= hits[1].score >= hits[2].score and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].payload == {"doc_id": "d2"}
    full = store.query("p__v1", unit(1.0, 0.0, 0.0), 1)
    assert full[0].id == pid(0) and full[0].payload["text"] == "t0" and full[0].payload["chunk_index"] == 0
    assert store.query("p__v1", unit(1.0, 0.0, 0.0), 1, False)[0].payload == {}


def test_scroll_filters_by_payload_with_vectors_and_pages(store):
    build(store, "p__v1", n=1100)  # more than one 1024-point page
    everything = list(store.scroll("p__v1", ["chunk_hash"]))
    assert len(everything) == 1100 and len({p.id for p in everything}) == 1100
    assert all(set(p.payload) == {"chunk_hash"} and p.vector is None for p in everything[:5])
    d1 = list(store.scroll("p__v1", ["doc_id", "chunk_index"], where=("doc_id", ["d1"]), with_vectors=True))
    assert sorted(p.payload["chunk_index"] for p in d1) == list(range(1, 1100, 3))
    p4 = next(p for p in d1 if p.payload["chunk_index"] == 4)
    assert p4.vector == pytest.approx(unit(math.cos(0.4), math.sin(0.4), 0.0), abs=1e-5)
    assert list(store.scroll("p__v1", None, where=("doc_id", ["nobody"]))) == []


def test_held_vectors_by_hash_and_delete_by_ids(store):
    build(store, "p__v1", n=10)
    held = vectors_by_hash(store, "p__v1", ["h2", "h7", "missing"])
    assert set(held) == {"h2", "h7"}
    assert held["h7"] == pytest.approx(unit(math.cos(0.7), math.sin(0.7), 0.0), abs=1e-5)
    store.delete("p__v1", [pid(2), pid(3)])
    assert store.count("p__v1") == 8 and set(vectors_by_hash(store, "p__v1", ["h2", "h7"])) == {"h7"}
    stale = [p.id for p in store.scroll("p__v1", [], where=("doc_id", ["d0"]))]
    store.delete("p__v1", stale)
    assert store.count("p__v1") == 8 - len(stale) and all(
        p.payload["doc_id"] != "d0" for p in store.scroll("p__v1", ["doc_id"]))


def test_versions_alias_move_promote_and_prune_keep_n(store):
    for i, v in enumerate(["v1", "v2", "v3", "v4"]):
        build(store, f"p__{v}", n=3 + i, built_at=float(i))
    build(store, "other__v1")
    assert store.alias_target("p") is None
    put_live(store, "p", "p__v2")
    assert store.alias_target("p") == "p__v2"
    store.point_alias("p", "p__v4")  # the move: one call, the alias always names a collection
    assert store.alias_target("p") == "p__v4"
    versions = list_versions(store, "p")
    assert [v["version"] for v in versions] == ["v4", "v3", "v2", "v1"]
    assert [v["live"] for v in versions] == [True, False, False, False] and versions[0]["points"] == 6
    with pytest.raises(LookupError, match="v9"):
        put_live(store, "p", "p__v9")
    put_live(store, "p", "p__v1")
    assert prune_versions(store, "p", keep=1) == ["p__v3", "p__v2"]
    assert sorted(store.collections()) == ["other__v1", "p__v1", "p__v4"] and store.alias_target("p") == "p__v1"
    assert store.count("p__v1") == 3


def test_going_live_and_pruning_count_no_version(store, monkeypatch):
    """Deciding what to prune opens no version: on Edge a count loads the version's whole shard."""
    for i, v in enumerate(["v1", "v2", "v3"]):
        build(store, f"p__{v}", built_at=float(i))
    counted = []
    real = type(store).count
    monkeypatch.setattr(type(store), "count", lambda self, name: counted.append(name) or real(self, name))
    assert put_live(store, "p", "p__v3", keep_versions=1) == ["p__v1"]
    with pytest.raises(LookupError, match="v2"):  # the error names what exists, still without counting
        put_live(store, "p", "p__v9")
    assert counted == []
    assert [v["points"] for v in list_versions(store, "p")] == [12, 12] and sorted(counted) == ["p__v2", "p__v3"]


def test_deleting_a_collection_drops_the_aliases_pointing_at_it(store):
    build(store, "p__v1")
    store.point_alias("p", "p__v1")
    store.delete_collection("p__v1")
    assert not store.exists("p__v1") and store.alias_target("p") is None
    build(store, "p__v1", n=2)  # the name is free again
    assert store.count("p__v1") == 2


def test_a_reopened_store_keeps_everything(tmp_path):
    """What a process wrote, the next process reads (local mode and Edge persist; :memory: does not)."""
    for settings in (StoreSettings(path=str(tmp_path / "local")), StoreSettings(path=str(tmp_path / "e"), kind="edge")):
        with open_store(settings) as s:
            build(s, "p__v1", n=9, built_at=3.0)
            s.point_alias("p", "p__v1")
        with open_store(settings) as s:
            assert s.count("p__v1") == 9 and s.alias_target("p") == "p__v1" and s.metadata("p__v1")["built_at"] == 3.0
            assert s.query("p__v1", unit(1.0, 0.0, 0.0), 1)[0].id == pid(0)


def test_an_alias_goes_wherever_a_collection_name_does(store):
    """Searches name the product (its alias); every read and write then reaches the live collection."""
    build(store, "p__v1", n=6)
    store.point_alias("p", "p__v1")
    assert store.exists("p") and store.dimension("p") == 3 and store.metadata("p")["chunk_size"] == 100
    assert store.count("p") == 6 and store.query("p", unit(1.0, 0.0, 0.0), 1)[0].id == pid(0)
    assert len(list(store.scroll("p", ["doc_id"], where=("doc_id", ["d1"])))) == 2
    store.delete("p", [pid(0)])
    store.upsert("p", points(8)[7:])
    assert store.count("p__v1") == 6 and not store.exists("q")


def test_delete_where_removes_by_payload_without_a_read(store):
    """delete_where(name, field, values): every point whose field is one of values goes, in batches, others stay;
    through an alias too; values matching nothing are fine."""
    build(store, "p__v1", n=30)
    store.point_alias("p", "p__v1")
    store.delete_where("p", "doc_id", ["d0", "nobody"])
    left = {p.payload["doc_id"] for p in store.scroll("p__v1", ["doc_id"])}
    assert left == {"d1", "d2"} and store.count("p__v1") == 20
    store.delete_where("p__v1", "chunk_hash", [f"h{i}" for i in range(1, 30, 3)] + [f"x{i}" for i in range(1500)])
    assert {p.payload["doc_id"] for p in store.scroll("p__v1", ["doc_id"])} == {"d2"} and store.count("p__v1") == 10
    store.delete_where("p__v1", "doc_id", [])
    assert store.count("p__v1") == 10


# -- sparse vectors and fused queries ------------------------------------------------------------------
TEXTS = ["pg_dump writes a consistent backup of one database",
         "vacuum reclaims storage occupied by dead tuples",
         "the planner estimates the cost of each query plan",
         "pg_restore reads an archive made by pg_dump",
         "autovacuum launches vacuum workers on a schedule",
         "indexes speed up lookups of rows by key"]


def text_points(encode) -> list[Point]:
    """Six chunks; dense vectors on a quarter circle (point i nearest angle i), sparse vectors from BM25."""
    return [Point(id=pid(i), vector=unit(math.cos(i / 4), math.sin(i / 4), 0.0), sparse=s,
                  payload={"doc_id": f"d{i}", "text": t})
            for i, (t, s) in enumerate(zip(TEXTS, encode.documents(TEXTS), strict=True))]


def test_sparse_and_hybrid_queries_agree_across_stores(store):
    from ragtrail.store.base import SearchQuery
    from ragtrail.store.sparse import CONFIG, encoder

    bm25 = encoder(CONFIG)
    ensure_collection(store, "p__v2", 3, {"sparse": dict(CONFIG)})
    store.upsert("p__v2", text_points(bm25))
    store.finish("p__v2")
    assert store.has_sparse("p__v2")
    [q] = bm25.queries(["how do I restore a pg_dump archive?"])
    near_vacuum = unit(math.cos(1 / 4), math.sin(1 / 4), 0.0)  # dense says: chunk 1 (vacuum)
    sparse, hybrid, dbsf, dense = store.query_batch("p__v2", [
        SearchQuery(sparse=q, mode="sparse"),
        SearchQuery(dense=near_vacuum, sparse=q, mode="hybrid"),
        SearchQuery(dense=near_vacuum, sparse=q, mode="hybrid", fusion="dbsf"),
        SearchQuery(dense=near_vacuum, mode="dense")], 3)
    # BM25: chunk 3 holds pg_restore, archive, pg_dump; chunk 0 only pg_dump; IDF from the collection.
    assert [h.id for h in sparse][:2] == [pid(3), pid(0)] and len(sparse) == 2
    assert all(h.found_by == ("sparse",) for h in sparse) and sparse[0].score > sparse[1].score > 0
    assert dense[0].id == pid(1) and dense[0].found_by == ("dense",)
    for fused in (hybrid, dbsf):
        assert len(fused) == 3 and pid(3) in [h.id for h in fused[:2]]  # both lists lift the pg_restore chunk
        by_id = {h.id: h.found_by for h in fused}
        assert by_id[pid(3)] == ("dense", "sparse") and by_id[pid(1)] == ("dense",)
    # The dense vector comes back alone from a named collection (held vectors are reused by the index stage).
    [p1] = [p for p in store.scroll("p__v2", ["doc_id"], with_vectors=True) if p.payload["doc_id"] == "d1"]
    assert p1.vector == pytest.approx(near_vacuum, abs=1e-5)


WORDS = ("pg_dump archive restore vacuum tuple planner cost index lookup backup schema role grant "
         "replica slot wal checkpoint").split()


def native_fused(store, name: str, dense: list[float], sparse, fusion: str, depth: int, k: int) -> list:
    """Qdrant's own fused query (its Query API, dense + sparse prefetches, unweighted RRF / DBSF): (id, score)s."""
    from ragtrail.store.base import DENSE, RRF_K, SPARSE

    if hasattr(store, "client"):
        from qdrant_client import models

        sv = models.SparseVector(indices=sparse.indices, values=sparse.values)
        query = models.RrfQuery(rrf=models.Rrf(k=RRF_K)) if fusion == "rrf" else models.FusionQuery(
            fusion=models.Fusion.DBSF)
        res = store.client.query_points(name, prefetch=[models.Prefetch(query=dense, using=DENSE, limit=depth),
                                                        models.Prefetch(query=sv, using=SPARSE, limit=depth)],
                                        query=query, limit=k).points
        return [(str(h.id), h.score) for h in res]
    import qdrant_edge as qe

    sv = qe.SparseVector(list(sparse.indices), list(sparse.values))
    with store._shard(name) as shard:
        res = shard.query(qe.QueryRequest(
            limit=k, query=qe.Fusion.Rrf(k=RRF_K) if fusion == "rrf" else qe.Fusion.Dbsf(),
            prefetches=[qe.Prefetch(limit=depth, query=qe.Query.Nearest(dense, using=DENSE)),
                        qe.Prefetch(limit=depth, query=qe.Query.Nearest(sv, using=SPARSE))]))
    return [(str(h.id), h.score) for h in res]


def test_hybrid_fusion_ranks_as_qdrants_own_at_equal_weight_and_the_weight_moves_it(one_shard):
    """Hybrid queries fuse their dense and sparse candidates client-side (``fuse``): at sparse weight 0.5 the
    ranking is Qdrant's own Query API fusion (RRF and DBSF, scores halved) on every store; weight 0 ranks as
    dense alone, 1 as BM25 first; a weight outside 0..1 is refused."""
    store = one_shard
    import random

    from ragtrail.store.base import SearchQuery, prefetch_limit
    from ragtrail.store.sparse import CONFIG, encoder

    rng = random.Random(7)
    bm25 = encoder(CONFIG)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(150)]
    ensure_collection(store, "p__v3", 8, {"sparse": dict(CONFIG)})
    store.upsert("p__v3", [Point(id=pid(i), vector=unit(*[rng.gauss(0, 1) for _ in range(8)]), sparse=s,
                                 payload={"doc_id": f"d{i}"})
                           for i, s in enumerate(bm25.documents(texts))])
    store.finish("p__v3")
    dense = unit(*[rng.gauss(0, 1) for _ in range(8)])
    [sq] = bm25.queries(["restore a pg_dump archive of the schema"])
    k = 10
    for fusion in ("rrf", "dbsf"):
        native = native_fused(store, "p__v3", dense, sq, fusion, prefetch_limit(k), k)
        [ours] = store.query_batch("p__v3", [SearchQuery(dense=dense, sparse=sq, mode="hybrid", fusion=fusion,
                                                         sparse_weight=0.5)], k)
        assert [str(h.id) for h in ours] == [i for i, _ in native], fusion
        assert [2 * h.score for h in ours] == pytest.approx([s for _, s in native], rel=1e-4), fusion
    # the prefetches come back without payloads; the fused hits get theirs (the fields asked for), in one call
    doc_of = {pid(i): f"d{i}" for i in range(150)}
    [full], [some], [bare] = (store.query_batch("p__v3", [SearchQuery(dense=dense, sparse=sq, mode="hybrid",
                                                                      fusion="dbsf")], k, f) for f in (True, ["doc_id"], False))
    assert [h.id for h in full] == [h.id for h in some] == [h.id for h in bare]
    assert all(h.payload == {"doc_id": doc_of[str(h.id)]} for h in full + some) and not any(h.payload for h in bare)
    alone_dense, alone_sparse, w0, w1, w3 = store.query_batch("p__v3", [
        SearchQuery(dense=dense, mode="dense"), SearchQuery(sparse=sq, mode="sparse"),
        SearchQuery(dense=dense, sparse=sq, mode="hybrid", fusion="dbsf", sparse_weight=0.0),
        SearchQuery(dense=dense, sparse=sq, mode="hybrid", fusion="dbsf", sparse_weight=1.0),
        SearchQuery(dense=dense, sparse=sq, mode="hybrid", fusion="dbsf", sparse_weight=0.3)], k)
    assert [h.id for h in w0] == [h.id for h in alone_dense]
    top_sparse = [h.id for h in alone_sparse if h.score > alone_sparse[k - 1].score]  # no ties at the cut
    assert [h.id for h in w1][:len(top_sparse)] == top_sparse
    assert {h.id for h in w3} <= {h.id for h in alone_dense} | set(top_sparse) | {h.id for h in w1}
    assert all(set(h.found_by) <= {"dense", "sparse"} and h.found_by for h in w3)
    with pytest.raises(ValueError, match="sparse weight"):
        SearchQuery(dense=dense, sparse=sq, mode="hybrid", sparse_weight=1.5)


def test_a_dense_only_collection_of_an_earlier_release_answers_dense_queries(store):
    """A version built before sparse vectors (one unnamed dense vector) stays searchable in dense mode."""
    from ragtrail.store.base import SearchQuery, Sparse

    make_dense_only(store, "p__v1")
    store.upsert("p__v1", points(12))
    assert not store.has_sparse("p__v1")
    [hits] = store.query_batch("p__v1", [SearchQuery(dense=unit(1.0, 0.0, 0.0))], 2)
    assert [h.id for h in hits] == [pid(0), pid(1)]
    assert [h.id for h in store.query("p__v1", unit(1.0, 0.0, 0.0), 1)] == [pid(0)]
    assert store.dimension("p__v1") == 3
    assert next(iter(store.scroll("p__v1", None, with_vectors=True))).vector is not None
    with pytest.raises(ValueError, match="dense queries only"):
        store.query_batch("p__v1", [SearchQuery(dense=unit(1.0, 0.0, 0.0), sparse=Sparse([1], [1.0]),
                                                mode="hybrid")], 2)


def make_dense_only(store, name: str) -> None:
    """Create a collection exactly as the release before sparse vectors did."""
    import json

    if hasattr(store, "client"):  # qdrant-client: one unnamed cosine vector
        from qdrant_client import models

        store.client.create_collection(name, metadata={"chunk_size": 100}, vectors_config=models.VectorParams(
            size=3, distance=models.Distance.COSINE))
        return
    import qdrant_edge as qe

    from ragtrail.store import edge_shards

    folder = store._folder(name)
    shard = qe.EdgeShard.create(str(folder / "shard"), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=3, distance=qe.Distance.Cosine)))
    shard.close()
    edge_shards.atomic_write_json(folder / "meta.json", json.dumps({"dimension": 3, "metadata": {"chunk_size": 100}}))


def test_count_by_filter_and_delete_with_the_ids_documents(store):
    """count(name, where) counts the points whose payload field is one of the values; delete_where says how many
    points it deleted; delete(name, ids, docs),
    each id with its doc_id (a hint a store in parts routes by), deletes those points and no other; the
    collection's count follows every change (an Edge part's kept count included)."""
    build(store, "p__v1", n=30)
    assert store.count("p__v1", ("doc_id", ["d0", "d2", "nobody"])) == 20 and store.count("p__v1") == 30
    gone = [p for p in store.scroll("p__v1", ["doc_id"]) if p.payload["doc_id"] in ("d1", "d2")][::3]
    store.delete("p__v1", [p.id for p in gone], [p.payload["doc_id"] for p in gone])
    assert store.count("p__v1") == 30 - len(gone) and store.count("p__v1", ("doc_id", ["d0"])) == 10
    store.upsert("p__v1", points(30))
    assert store.count("p__v1") == 30
    assert store.delete_where("p__v1", "doc_id", ["d1", "nobody"]) == 10  # how many it deleted
    assert store.count("p__v1") == 20 and store.delete_where("p__v1", "doc_id", ["d1"]) == 0
