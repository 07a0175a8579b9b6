"""A source split into shards (issue #28, item 1): the split task cuts the source into key ranges, one mapped
ingest task per range lists and reads only its own keys, and the index is the one an unsharded build makes. A
re-ingest takes its ranges from the version's source state (no listing in the split) and each shard reads only
its changed objects."""

from __future__ import annotations

import pytest
from conftest import child_runs_of, ingest, write_corpus
from test_incremental import point_view

# 14 objects in nested folders: docs_per_shard 4 cuts them into 4 ranges.
FILES = {f"{folder}/{n:02d}.md": f"Shard test note {folder}{n}: the {folder}-series of facts, number {n}, "
         f"about {'walruses' if n % 2 else 'glaciers'} in region {folder.upper()}."
         for folder, count in (("alpha", 4), ("beta", 3), ("gamma", 4), ("delta/deep", 3)) for n in range(count)}
PER_SHARD = 4


def _runs(mlflow_client, summary) -> dict:
    return {r.data.tags.get("ragtrail.stage", r.info.run_name): r for r in child_runs_of(mlflow_client, summary)}


def _steps(mlflow_client, run, metric: str) -> dict[int, float]:
    """One value per map index of a mapped task's shared run (its steps)."""
    return {m.step: m.value for m in mlflow_client.get_metric_history(run.info.run_id, metric)}


def _ingest_map_indexes(summary) -> list[tuple[int, str | None]]:
    """(map_index, the name the Airflow UI shows for it) of the run's ingest task instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.map_index, TaskInstance.rendered_map_index).filter(
            TaskInstance.dag_id == summary["dag_id"], TaskInstance.run_id == summary["run_id"],
            TaskInstance.task_id == "ingest").all()
    return sorted((i, name) for i, name in rows)


@pytest.fixture(scope="module")
def builds(tmp_path_factory, qdrant):
    root = tmp_path_factory.mktemp("shards")
    corpus = write_corpus(root / "src", FILES)
    sharded = ingest({"source": str(corpus), "product": "shards", "docs_per_shard": PER_SHARD})
    first_view = point_view(qdrant, "shards__v1")
    whole = ingest({"source": str(corpus), "product": "shards", "version": "whole"})  # default: one shard
    # Change one object in each of three shards: edit (the last range), delete (a middle one), add (the first).
    (corpus / "gamma/03.md").write_text(FILES["gamma/03.md"] + " Edited: the glacier retreated 40 metres.")
    (corpus / "beta/01.md").unlink()
    (corpus / "alpha/00a.md").write_text("A new note about sea ice thickness, added between two listed objects.")
    again = ingest({"source": str(corpus), "product": "shards", "docs_per_shard": PER_SHARD})
    return {"corpus": corpus, "sharded": sharded, "whole": whole, "again": again, "first_view": first_view}


def test_each_shard_ingests_only_its_range(builds, mlflow_client):
    """4 ranges of at most 4 objects, listed once by the split; every object read by exactly one shard; the
    Airflow UI names each map index by its shard and range."""
    run = builds["sharded"]
    assert run["status"] == "FINISHED" and run["docs"] == len(FILES) == 14
    runs = _runs(mlflow_client, run)
    split = runs["split"]
    assert split.data.params["split_from"] == "listing" and split.data.metrics["shards"] == 4
    assert split.data.metrics["keys_listed"] == 14
    read = _steps(mlflow_client, runs["ingest"], "objects_read")
    assert sorted(read) == [0, 1, 2, 3] and sorted(read.values()) == [2, 4, 4, 4]  # 4+4+4, the last range 2
    indexes = _ingest_map_indexes(run)
    assert [i for i, _ in indexes] == [0, 1, 2, 3]
    assert indexes[0][1].startswith("1 of 4: … to ") and indexes[3][1].startswith("4 of 4: after ")
    # the one ingest run keeps the first shard's manifest (a sample: the trail does not grow with the corpus)
    folders = {a.path for a in mlflow_client.list_artifacts(runs["ingest"].info.run_id, "ingest")}
    assert folders == {"ingest/shard-1"}


def test_a_sharded_build_equals_an_unsharded_one(builds, qdrant):
    """The same points (ids, documents, positions, contents) whether the source was read in 4 shards or 1."""
    assert builds["whole"]["status"] == "FINISHED" and builds["whole"]["docs"] == 14
    assert len(builds["first_view"]) == 14 and builds["first_view"] == point_view(qdrant, "shards__whole")


def test_a_re_ingest_splits_from_the_state_and_reads_only_the_changes(builds, mlflow_client, qdrant, tmp_path):
    """The second build lists nothing in its split (ranges from the state), reads 2 objects (the edited and the
    added one), finds the deleted one gone, scrolls no collection, and holds exactly a clean build's points."""
    again = builds["again"]
    assert again["status"] == "FINISHED"
    assert (again["docs_added"], again["docs_updated"], again["docs_deleted"]) == (1, 1, 1)
    runs = _runs(mlflow_client, again)
    assert runs["split"].data.params["split_from"] == "source state"
    assert runs["split"].data.metrics["keys_in_state"] == 14 and "keys_listed" not in runs["split"].data.metrics
    assert sum(_steps(mlflow_client, runs["ingest"], "objects_read").values()) == 2
    assert sum(_steps(mlflow_client, runs["ingest"], "objects_deleted").values()) == 1
    assert sum(_steps(mlflow_client, runs["ingest"], "objects_skipped").values()) == 12
    assert runs["plan"].data.metrics["collection_scrolls"] == 0
    clean = write_corpus(tmp_path / "clean", {str(p.relative_to(builds["corpus"])): p.read_bytes()
                                              for p in builds["corpus"].rglob("*") if p.is_file()})
    assert ingest({"source": str(clean), "product": "shards", "version": "clean"})["status"] == "FINISHED"
    view = point_view(qdrant, "shards__v1")
    assert view == point_view(qdrant, "shards__clean")
    assert {v[1] for v in view} == {str(p.relative_to(builds["corpus"])) for p in builds["corpus"].rglob("*.md")}


def test_bad_input_of_every_shard_is_on_record_and_a_shard_without_documents_does_not_fail(tmp_path, mlflow_client):
    """Shard 2 holds only images (no usable document: it does not fail), shard 3 a broken PDF beside a good note:
    the run indexes the three good notes, and each shard's quarantine list is an artifact of the ingest run."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    corpus = write_corpus(tmp_path / "src", {"a/1.md": "Good note one about tides.", "a/2.md": "Good note two, on reefs.",
                                             "b/1.png": png, "b/2.png": png, "c/1.md": "Good note three: currents.",
                                             "c/2.pdf": b"%PDF-1.7 this is not a PDF body"})
    run = ingest({"source": str(corpus), "product": "shardbad", "docs_per_shard": 2})
    assert run["status"] == "FINISHED" and (run["docs"], run["docs_failed"]) == (3, 3), run
    assert [t for t in run["tasks"] if t.startswith("ingest")] == ["ingest[0]", "ingest[1]", "ingest[2]"]
    runs = _runs(mlflow_client, run)
    ingest_run = runs["ingest"].info.run_id
    assert _steps(mlflow_client, runs["ingest"], "docs_parsed") == {0: 2, 1: 0, 2: 1}
    for shard, bad in ((2, {"b/1.png", "b/2.png"}), (3, {"c/2.pdf"})):
        path = mlflow_client.download_artifacts(ingest_run, f"ingest/shard-{shard}/quarantine.json", str(tmp_path))
        import json

        assert {e["doc_id"] for e in json.loads(open(path).read())} == bad


def test_no_usable_document_in_any_shard_fails_the_run_with_the_reason(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    corpus = write_corpus(tmp_path / "src", {"x/1.png": png, "y/2.png": png, "z/3.png": png})
    run = ingest({"source": str(corpus), "product": "shardnone", "docs_per_shard": 1})
    assert run["status"] == "FAILED" and run["tasks"]["plan"] == "FAILED"
    assert any("no usable documents in" in r and "unsupported" in r for r in run["reasons"]), run["reasons"]


def test_a_failed_shard_leaves_its_documents_as_they_are_and_the_run_partial(tmp_path, monkeypatch, qdrant):
    """Shard 2 of 4 fails on the second run (its listing raises, as an S3 outage past the task's retries would):
    the run ends PARTIAL naming ingest[1] and why; the other shards' changes are indexed; the failed shard's
    documents are neither deleted nor updated, and the next run (the shard healthy again) catches up to
    exactly a clean build."""
    import ragtrail.stages.ingest as ingest_module

    corpus = write_corpus(tmp_path / "src", FILES)
    conf = {"source": str(corpus), "product": "shardfail", "docs_per_shard": PER_SHARD}
    assert ingest(conf)["status"] == "FINISHED"
    # shard 2 of 4 holds beta/00-02 and delta/deep/00; shard 4 gamma/02-03
    (corpus / "beta/01.md").unlink()
    (corpus / "beta/00.md").write_text("Beta zero, rewritten: the fjord froze early this year.")
    (corpus / "gamma/03.md").write_text("Gamma three, rewritten: moraines mark the old ice edge.")
    real = ingest_module.ingest_source

    def outage(source, workdir, **kw):
        if (kw.get("shard") or "").startswith("2 of 4"):
            raise ConnectionError("503 Slow Down: the source did not answer for this key range")
        return real(source, workdir, **kw)

    monkeypatch.setattr(ingest_module, "ingest_source", outage)
    partial = ingest(conf)
    assert partial["status"] == "PARTIAL", partial
    assert partial["reasons"][0].startswith("ingest[1]: failed") and "503 Slow Down" in partial["reasons"][0]
    assert (partial["docs_updated"], partial["docs_deleted"]) == (1, 0)  # gamma/03 only
    view = {v[1]: v[4] for v in point_view(qdrant, "shardfail__v1")}
    assert "beta/01.md" in view  # its shard was not read: not taken for deleted

    monkeypatch.setattr(ingest_module, "ingest_source", real)
    healed = ingest(conf)
    assert healed["status"] == "FINISHED" and (healed["docs_updated"], healed["docs_deleted"]) == (1, 1), healed
    clean = write_corpus(tmp_path / "clean", {str(p.relative_to(corpus)): p.read_bytes()
                                              for p in corpus.rglob("*") if p.is_file()})
    assert ingest({"source": str(clean), "product": "shardfail", "version": "clean"})["status"] == "FINISHED"
    assert point_view(qdrant, "shardfail__v1") == point_view(qdrant, "shardfail__clean")
