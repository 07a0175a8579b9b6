"""The index stage's finisher over a version in parts (real stages, real Qdrant Edge): a re-ingest that changes
one document and deletes another loads only those documents' parts — its stale and gone points are deleted in
them, the other parts' counts are kept, and only the changed parts are optimised — and its counts are those of
a load of every part; the finisher reads the writers' receipts as streams (its memory does not hold the run's
documents, however many)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from staged import stage_run

from ragtrail.core.recorder import Recorder
from ragtrail.stages.index_results import index_from_results
from ragtrail.stages.indexing import finish_index
from ragtrail.stages.receipts import write_receipt
from ragtrail.store import edge_shards, open_store

DOCS = {f"doc{i:02d}.txt": f"Note {i}: the {w} of station {i} is checked every {i + 2} days by the crew."
        for i, w in enumerate("pump valve boiler filter gauge relay fan hatch winch drain cable lamp".split())}


def _loads(monkeypatch) -> list[str]:
    """The shard folders this process loads from now on."""
    seen: list[str] = []
    real = edge_shards.using

    def using(folder, lock_path, user, load, timeout_s, shard_dir="shard"):
        def counted(path):
            seen.append(Path(path).name)
            return load(path)

        return real(folder, lock_path, user, counted, timeout_s, shard_dir)

    monkeypatch.setattr(edge_shards, "using", using)
    return seen


def test_a_reingest_of_one_document_loads_only_its_part(tmp_path, monkeypatch):
    store, work = str(tmp_path / "store"), tmp_path / "work"
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "3")  # 12 one-chunk documents, 3 a batch: 4 parts
    cfg, _, chunked, _, embedded = stage_run(tmp_path, store, work, DOCS, "idx")
    first = index_from_results(chunked, embedded, cfg, work, "run-1", location=store)
    folder = Path(store) / "collections" / "idx__v1"
    assert first["vectors"] == 12 and (folder / "shard-0003").is_dir()

    changed = {**DOCS, "doc04.txt": "Note 4: the gauge was replaced by a digital one."}
    del changed["doc10.txt"]
    work2 = tmp_path / "work2"
    cfg, plan, chunked, _, embedded = stage_run(tmp_path, store, work2, changed, "idx")
    loads = _loads(monkeypatch)
    rec = Recorder()
    out = index_from_results(chunked, embedded, cfg, work2, "run-2", location=store, recorder=rec)
    assert set(loads) == {"shard-0001", "shard-0003"}, loads  # doc04's part and doc10's; not shard, shard-0002
    assert out["vectors"] == rec.metrics["vector_count"] == 11
    assert out["deleted"] == rec.metrics["vectors_deleted"] == 2  # doc04's old point (stale), doc10's (gone)
    monkeypatch.undo()
    for kept in folder.glob(".count-*"):
        kept.unlink()  # every part counted from its shard: the kept counts were right
    with open_store(store) as s:
        assert s.count("idx__v1") == 11
        assert {p.payload["doc_id"].split("/")[-1] for p in s.scroll("idx__v1", ["doc_id"])} == {
            n for n in changed}


def test_the_finisher_streams_the_receipts(tmp_path):
    """Two writers' receipts of 60,000 documents each (a first build of 100,000: 20,000 in both, as from a
    duplicated writer; documents one skipped and the other wrote count as written) and a hash each: the
    finisher's Python heap peaks far below what holding those ids would take (~6 MB as sets)."""
    work = tmp_path / "work"
    (work / "write").mkdir(parents=True)
    receipts = []
    for g, (lo, hi) in enumerate([(0, 60_000), (40_000, 100_000)]):
        path = work / "write" / f"receipt_{g:05d}.jsonl"
        skipped = [f"doc{i:07d}" for i in range(100_000, 100_010)] + ([f"doc{i:07d}" for i in range(50, 60)] if g else [])
        write_receipt(path, {"group": g, "chunk_paths": [], "counts": {"points_written": hi - lo}},
                      {"written": (f"doc{i:07d}" for i in range(lo, hi)), "skipped": sorted(skipped),
                       "missing": [f"h{g}"], "stale": []})
        receipts.append({"receipt_path": str(path), "group": g})
    rec = Recorder()
    tracemalloc.start()
    try:
        out = finish_index(location=str(tmp_path / "store"), product="big", version="v1", receipts=receipts,
                           deleted_docs=[], workdir=work, recorder=rec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec.metrics["docs_written"] == 100_000 and rec.metrics["docs_skipped"] == out["docs_skipped"] == 10
    assert rec.metrics["points_upserted"] == 120_000
    assert peak < 2_000_000, peak
    assert not (work / "index_receipts.sqlite").exists()


def test_stale_and_gone_points_are_deleted_in_one_pass_in_document_order(tmp_path):
    """The finisher interleaves the stale ids (by document) and the deleted documents, so that a store in parts
    goes through its parts once; the counts are the store's."""
    from ragtrail.stages.indexing import _delete_points
    from ragtrail.stages.receipts import ReceiptSet

    path = tmp_path / "r.jsonl"
    write_receipt(path, {"group": 0, "chunk_paths": [], "counts": {}},
                  {"stale": [("a", "p1"), ("a", "p2"), ("c", "p3"), ("e", "p4")]})
    got = ReceiptSet(tmp_path / "set.sqlite")
    got.add(path)
    calls = []

    class Store:
        def delete(self, name, ids, docs=None):
            calls.append(("ids", list(docs)))

        def delete_where(self, name, field, values):
            calls.append(("where", list(values)))
            return 10 * len(values)

    assert _delete_points(Store(), "c", got, ["f", "b", "d", "0"]) == (4, 40)
    got.close()
    assert calls == [("where", ["0"]), ("ids", ["a", "a"]), ("where", ["b"]), ("ids", ["c"]), ("where", ["d"]),
                     ("ids", ["e"]), ("where", ["f"])]
