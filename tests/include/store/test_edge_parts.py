"""A version of the Edge store in parts (one Edge shard per range of documents): it answers as one shard
does, and a process that writes, counts or optimises it holds one part at a time (real Qdrant Edge)."""

from __future__ import annotations

import random
import uuid

from ragtrail.store import Point, StoreSettings, edge_shards, open_store
from ragtrail.store.base import PARTS_KEY, SearchQuery
from ragtrail.store.edge_parts import bounds_from_batches, part_of, shard_dir
from ragtrail.store.sparse import CONFIG, encoder

WORDS = "restore dump archive schema table index vacuum replica backup query plan join lock".split()


def test_bounds_cut_at_batch_starts_once_a_part_is_full():
    assert bounds_from_batches([("k", 5), ("a", 5), ("f", 5)], 10) == ["k"]
    assert bounds_from_batches([("a", 25), ("b", 1), ("c", 30), ("d", 1)], 20) == ["b", "d"]
    assert bounds_from_batches([("a", 5), (None, 5), ("f", 5)], 0) == []
    assert [part_of(["b", "d"], k) for k in ("a", "b", "c", "d", "z", None)] == [0, 1, 1, 2, 2, 0]


def _points(n_docs: int = 20, per_doc: int = 10) -> list[Point]:
    rng = random.Random(3)
    bm25 = encoder(CONFIG)
    out = []
    for d in range(n_docs):
        texts = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(per_doc)]
        for c, sparse in enumerate(bm25.documents(texts)):
            v = [rng.gauss(0, 1) for _ in range(8)]
            n = sum(x * x for x in v) ** 0.5
            out.append(Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{d}/{c}")), vector=[x / n for x in v],
                             sparse=sparse, payload={"doc_id": f"d{d:02d}", "chunk_index": c}))
    return out


def _loaded(store, name: str, parts: int) -> list[int]:
    folder = store.root / "collections" / name
    return [j for j in range(parts) if edge_shards.is_loaded(folder, shard_dir(j))]


def test_a_version_in_parts_answers_as_one_shard_and_its_writer_holds_one_part(tmp_path):
    pts = _points()
    with open_store(StoreSettings(path=str(tmp_path / "edge"), kind="edge")) as store:
        store.create("p__one", 8, {"sparse": dict(CONFIG)})
        store.create("p__parts", 8, {"sparse": dict(CONFIG), PARTS_KEY: ["d05", "d10", "d15"]})
        assert store.metadata("p__parts") == {"sparse": dict(CONFIG)}  # the bounds are the store's, not metadata
        assert sorted(p.name for p in (store.root / "collections" / "p__parts").iterdir() if p.is_dir()) == [
            "shard", "shard-0001", "shard-0002", "shard-0003"]
        held = []
        for i in range(0, len(pts), 30):  # in document order, as the index stage writes a first build
            store.upsert("p__one", pts[i : i + 30])
            store.upsert("p__parts", pts[i : i + 30])
            held.append(len(_loaded(store, "p__parts", 4)))
        assert max(held) == 1, held  # the writer let go of each part when it moved on
        for name in ("p__one", "p__parts"):
            store.finish(name)
        assert store.count("p__parts") == store.count("p__one") == 200
        assert _loaded(store, "p__parts", 4) == []  # optimised and counted part by part, none kept
        rng = random.Random(9)
        for _ in range(5):
            v = [rng.gauss(0, 1) for _ in range(8)]
            one, parts = (store.query_batch(n, [SearchQuery(dense=v, mode="dense")], 10, ["doc_id"])[0]
                          for n in ("p__one", "p__parts"))
            assert [h.id for h in parts] == [h.id for h in one]
            assert [h.payload for h in parts] == [h.payload for h in one]
        [sq] = encoder(CONFIG).queries(["restore a dump archive"])
        [hybrid] = store.query_batch("p__parts", [SearchQuery(dense=v, sparse=sq, mode="hybrid")], 10, ["doc_id"])
        assert len(hybrid) == 10 and all(h.payload["doc_id"].startswith("d") for h in hybrid)
        store.delete_where("p__parts", "doc_id", ["d07", "d16"])
        assert store.count("p__parts") == 180
        got = {p.payload["doc_id"] for p in store.scroll("p__parts", ["doc_id"], where=("doc_id", ["d03", "d07", "d12"]))}
        assert got == {"d03", "d12"}
        store.delete("p__parts", [pts[0].id, pts[199].id])
        assert store.count("p__parts") == 178
        store.delete_collection("p__parts")
        assert not store.exists("p__parts") and store.count("p__one") == 200
