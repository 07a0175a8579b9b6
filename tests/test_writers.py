"""Parallel write groups in a real DAG run (``dag.test``, Qdrant Edge, the bundled model): several write tasks
give the points one writer gives; an update, a deletion, an addition and a paragraph moved between documents
written by different groups leave exactly a clean build; a write group that fails leaves the run PARTIAL,
naming it, with the alias where it was, and the next run repairs it."""

from __future__ import annotations

import re

import pytest
from conftest import child_runs_of, ingest, write_corpus

from ragtrail.stages import writing

MOVED = "The relay cabinet key hangs on the blue hook beside the north door of the pump house."
DOCS = {f"doc{i:02d}.md": f"# Station {i}\n\nThe crew checks station {i} every {i + 2} days and notes the "
        f"pressure.\n\n" + ("" if i != 1 else MOVED) for i in range(12)}
CONF = {"product": "writers", "docs_per_batch": 2, "texts_per_batch": 4}


def view(qdrant, collection: str, vectors: bool = False) -> dict:
    with qdrant() as store:
        return {str(p.id): (p.payload["doc_id"], p.payload["chunk_index"], p.payload["chunk_hash"],
                            tuple(round(v, 4) for v in p.vector) if vectors else None)
                for p in store.scroll(collection, ["doc_id", "chunk_index", "chunk_hash"], with_vectors=vectors)}


@pytest.fixture
def three_writers(monkeypatch):
    monkeypatch.setenv("RAGTRAIL_WRITE_TASKS", "3")  # at least 3 groups: read by dedupe when the run gets there


def test_three_writers_give_the_points_of_one_and_one_write_run(three_writers, tmp_path, qdrant, mlflow_client,
                                                                monkeypatch, settings):
    """12 documents, 6 chunk batches in 3 write groups decided at run time (at most 4 points each, the version
    cut into Edge parts of ~4 points: dedupe records the bounds from every chunk batch and cuts the groups there;
    the first group creates the version with them): the same ids, payloads and vectors as one write task; each
    group is a map index of one MLflow run, named by its chunk batches."""
    monkeypatch.delenv("RAGTRAIL_WRITE_TASKS")
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "4")
    monkeypatch.setenv("RAGTRAIL_WRITE_GROUP_POINTS", "4")
    corpus = write_corpus(tmp_path / "src", DOCS)
    many = ingest({**CONF, "source": str(corpus)})
    folder = settings.qdrant_path / "collections" / "writers__v1"
    assert len([p for p in folder.iterdir() if p.name.startswith("shard")]) == 3  # 12 points, a part per 4
    assert many["status"] == "FINISHED", many["reasons"]
    assert {k: v for k, v in many["tasks"].items() if k.startswith("write[")} == {
        "write[0]": "FINISHED", "write[1]": "FINISHED", "write[2]": "FINISHED"}
    runs = [r for r in child_runs_of(mlflow_client, many) if r.data.tags.get("airflow.task_id") == "write"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "0")  # one shard, and no cap: one write group
    monkeypatch.setenv("RAGTRAIL_WRITE_GROUP_POINTS", "0")
    one = ingest({**CONF, "source": str(corpus), "version": "one", "promote": False})
    assert one["status"] == "FINISHED" and one["vectors"] == many["vectors"] == len(DOCS)
    assert [k for k in one["tasks"] if k.startswith("write[")] == ["write[0]"]
    assert view(qdrant, "writers__v1", vectors=True) == view(qdrant, "writers__one", vectors=True)


def test_an_update_across_groups_leaves_a_clean_build(three_writers, tmp_path, qdrant):
    """Run 2 rewrites doc01, gives doc10 doc01's old text (not embedded again: a later group copies the vector from
    doc01's old point, which doc01's own group finds stale — deleted only after every group wrote), deletes doc07
    and adds doc12: the collection then equals a clean build of the new source."""
    corpus = write_corpus(tmp_path / "src", DOCS)
    conf = {**CONF, "product": "moved", "source": str(corpus)}
    assert ingest(conf)["status"] == "FINISHED"
    (corpus / "doc01.md").write_text("# Station 1\n\nStation 1 was closed.\n")
    (corpus / "doc10.md").write_text(DOCS["doc01.md"])
    (corpus / "doc07.md").unlink()
    (corpus / "doc12.md").write_text("# Station 12\n\nA new station with its own crew.\n")
    second = ingest({**conf, "docs_per_batch": 1})  # doc01, doc10, doc12: one chunk batch and write group each
    assert second["status"] == "FINISHED", second["reasons"]
    assert (second["docs_added"], second["docs_updated"], second["docs_deleted"]) == (1, 2, 1)
    assert second["embeddings"] == 2  # doc01's and doc12's new texts; doc10's is held
    clean = write_corpus(tmp_path / "clean", {p.name: p.read_bytes() for p in corpus.iterdir()})
    assert ingest({**conf, "source": str(clean), "version": "clean", "promote": False})["status"] == "FINISHED"
    assert view(qdrant, "moved__v1") == view(qdrant, "moved__clean")


def test_a_failed_write_group_is_named_and_holds_the_alias(three_writers, tmp_path, qdrant, monkeypatch):
    """The first write group to run dies after its first upsert: the run is PARTIAL naming it, the version is not promoted (part
    of it may be half written), and the next run writes that group's documents again: a clean build."""
    corpus = write_corpus(tmp_path / "src", DOCS)
    conf = {**CONF, "product": "halfway", "source": str(corpus)}
    real, fired = writing.failpoint, []

    def crash_once(name, workdir=None):
        if name == "write.after_upsert_1" and not fired:
            fired.append(name)
            raise RuntimeError("the writer's worker died")
        return real(name, workdir)

    monkeypatch.setattr(writing, "UPSERT_BATCH", 1)
    monkeypatch.setattr(writing, "failpoint", crash_once)
    first = ingest(conf)
    assert first["status"] == "PARTIAL" and re.match(r"write\[\d\]: failed \(RuntimeError: the writer's worker died",
                                                     first["reasons"][0]), first["reasons"]
    assert not first["promoted"] and first["live_collection"] is None
    with qdrant() as store:
        assert store.alias_target("halfway") is None
    second = ingest(conf)
    assert second["status"] == "FINISHED" and second["promoted"], second["reasons"]
    assert second["docs_added"] + second["docs_updated"] >= 2  # the failed group's documents, read again
    clean = write_corpus(tmp_path / "clean", DOCS)
    assert ingest({**conf, "source": str(clean), "version": "clean", "promote": False})["status"] == "FINISHED"
    assert view(qdrant, "halfway__v1") == view(qdrant, "halfway__clean")
