"""The one search path in each retrieval mode, on a version the real stages built (ingest → chunk → embed →
index) in the default store, Qdrant Edge: BM25 vectors at ingest, fused queries, what found each hit, bad
questions, and a version of an earlier release (dense-only) that stays searchable."""

from __future__ import annotations

import json
import logging

import pytest

from ragtrail.stages.chunking import chunk_documents
from ragtrail.stages.embedding import embed_chunks
from ragtrail.stages.indexing import index_run
from ragtrail.stages.ingest import ingest_source
from ragtrail.stages.search import search_many
from ragtrail.store import Point, StoreSettings, open_store

DOCS = {
    "backup.md": "# Backup\n\nUse pg_dump to write a consistent backup of one database while it is in use. "
                 "The output is a script or an archive file.\n",
    "restore.md": "# Restore\n\npg_restore reads an archive made by pg_dump and recreates the database from it. "
                  "It can restore selected tables only.\n",
    "vacuum.md": "# Vacuum\n\nVACUUM reclaims storage occupied by dead tuples. Autovacuum runs it on a schedule "
                 "so tables do not bloat.\n",
    "errors.md": "# Error codes\n\nSQLSTATE 42P01 undefined_table is raised when a query names a relation that "
                 "does not exist. Check the search_path.\n",
    "planner.md": "# Planner\n\nThe planner estimates the cost of each candidate plan and picks the cheapest. "
                  "EXPLAIN shows the chosen plan.\n",
    "locks.md": "# Locks\n\nRow-level locks block concurrent writers of the same row; deadlocks are detected "
                "and one transaction is aborted.\n",
}
CONFIG = {"chunk_size": 254, "chunk_overlap": 0, "embedder": "all-MiniLM-L6-v2", "embed_backend": "torch",
          "retrieval_mode": "hybrid", "fusion": "rrf"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Version v1 of product ``pg`` built by the real stages into an Edge store, live behind the alias."""
    root = tmp_path_factory.mktemp("search")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    location = StoreSettings(path=str(root / "store"), kind="edge")
    work = root / "work"
    docs = ingest_source(str(corpus), work)
    chunks = chunk_documents(docs["docs_path"], work, product="pg")
    embedded = embed_chunks(chunks["chunks_path"], work, backend="torch")
    out = index_run(location=location, product="pg", version="v1", config=CONFIG,
                    chunk_paths=[chunks["chunks_path"]], embedded=[embedded], deleted_docs=[], workdir=work)
    with open_store(location) as store:
        store.point_alias("pg", out["collection"])
    BUILT_WITH.update(chunks=chunks["chunks_path"], embedded=embedded, work=work)
    return location


BUILT_WITH: dict = {}


def test_ingest_writes_bm25_vectors_and_records_the_mode(built):
    with open_store(built) as store:
        meta = store.metadata("pg__v1")
        assert store.has_sparse("pg__v1") and meta["sparse"]["model"] == "bm25"
        assert meta["retrieval_mode"] == "hybrid" and meta["fusion"] == "rrf"
    hits = search_many("pg", {"q": "42P01"}, location=built, k=3, mode="sparse")["q"]
    assert hits and hits[0]["doc_id"].endswith("errors.md") and hits[0]["found_by"] == ["sparse"]


def test_each_mode_answers_through_the_one_path_and_says_what_found_each_hit(built):
    question = {"q": "how do I restore a pg_dump archive"}
    dense = search_many("pg", question, location=built, k=3, mode="dense")["q"]
    default = search_many("pg", question, location=built, k=3)["q"]  # the version's own mode: hybrid
    dbsf = search_many("pg", question, location=built, k=3, mode="hybrid", fusion="dbsf")["q"]
    assert all(h["found_by"] == ["dense"] for h in dense)
    for hits in (default, dbsf):
        assert len(hits) == 3 and hits[0]["doc_id"].endswith("restore.md")
        assert hits[0]["found_by"] == ["dense", "sparse"]
        assert all(set(h["found_by"]) <= {"dense", "sparse"} and h["found_by"] for h in hits)
    assert [h["score"] for h in default] == sorted((h["score"] for h in default), reverse=True)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_bad_questions_get_hits_never_a_crash(built, mode, caplog):
    queries = {"empty": "", "stop_words": "the and of it is", "huge": "vacuum " + "x" * 100_000,
               "cyrillic": "резервное копирование базы данных", "japanese": "データベースのバックアップ"}
    with caplog.at_level(logging.WARNING):
        results = search_many("pg", queries, location=built, k=3, mode=mode)
    assert set(results) == set(queries)
    for qid, hits in results.items():
        if mode == "sparse" and qid in ("huge", "cyrillic", "japanese"):  # only chunks holding their words
            assert len(hits) == (1 if qid == "huge" else 0), qid
        else:
            assert len(hits) == 3, qid  # six documents: every question gets k hits
    if mode == "sparse":
        assert "no chunk holds any term of query 'резервное" in caplog.text
    if mode != "dense":  # a question without BM25 terms is answered by its dense search, and a warning says so
        assert all(h["found_by"] == ["dense"] for h in results["stop_words"] + results["empty"])
        assert "no searchable terms for BM25" in caplog.text
    assert results["huge"][0]["doc_id"].endswith("vacuum.md") or mode == "dense"


def test_a_bad_mode_is_a_clear_error(built):
    with pytest.raises(ValueError, match="retrieval mode must be one of dense, sparse, hybrid"):
        search_many("pg", {"q": "vacuum"}, location=built, mode="bm25")


def test_a_dense_only_version_of_an_earlier_release_answers_in_dense_mode(built, caplog):
    """An earlier release's collection (one unnamed dense vector, no BM25 metadata) keeps answering: in dense
    mode, whatever is asked, with a warning naming the way out."""
    import qdrant_edge as qe

    from ragtrail.store import edge_shards

    with open_store(built) as store:
        held = list(store.scroll("pg__v1", None, with_vectors=True))
        folder = store._folder("pg__v0")
        shard = qe.EdgeShard.create(str(folder / "shard"), qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=len(held[0].vector), distance=qe.Distance.Cosine)))
        shard.close()
        meta = {k: v for k, v in store.metadata("pg__v1").items() if k not in ("sparse", "retrieval_mode", "fusion")}
        edge_shards.atomic_write_json(folder / "meta.json", json.dumps({"dimension": len(held[0].vector),
                                                                         "metadata": meta}))
        store.upsert("pg__v0", [Point(p.id, p.vector, p.payload) for p in held])
        assert not store.has_sparse("pg__v0")
    with caplog.at_level(logging.WARNING):
        hits = search_many("pg", {"q": "restore a pg_dump archive"}, location=built, k=2, collection="pg__v0",
                           mode="hybrid")["q"]
    assert len(hits) == 2 and all(h["found_by"] == ["dense"] for h in hits)
    assert "built before them: searching it in dense mode" in caplog.text


def test_an_incremental_run_into_a_dense_only_version_writes_dense_vectors_only(built):
    """The index stage writing into an earlier release's version (no BM25 config) keeps its layout."""
    import qdrant_edge as qe

    from ragtrail.store import edge_shards

    with open_store(built) as store:
        folder = store._folder("pg__old")
        shard = qe.EdgeShard.create(str(folder / "shard"), qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine)))
        shard.close()
        edge_shards.atomic_write_json(folder / "meta.json", json.dumps(
            {"dimension": 384, "metadata": {k: CONFIG[k] for k in ("chunk_size", "chunk_overlap", "embedder")}}))
    out = index_run(location=built, product="pg", version="old", config=CONFIG, chunk_paths=[BUILT_WITH["chunks"]],
                    embedded=[BUILT_WITH["embedded"]], deleted_docs=[], workdir=BUILT_WITH["work"])
    assert out["upserted"] == out["vectors"] == len(DOCS)
    with open_store(built) as store:
        assert not store.has_sparse("pg__old") and "sparse" not in store.metadata("pg__old")
    hits = search_many("pg", {"q": "vacuum dead tuples"}, location=built, k=2, collection="pg__old")["q"]
    assert hits[0]["doc_id"].endswith("vacuum.md") and hits[0]["found_by"] == ["dense"]
