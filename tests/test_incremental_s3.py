"""Re-ingest in O(change) from an S3 prefix (moto's S3 server, the real DAG through dag.test): the listing is
merged against the version's source state, so a run reads only the objects whose ETag/size/mtime changed,
plans without scrolling the collection, deletes a gone document's points by filter, and leaves exactly the
index a clean build of the new source would hold."""

from __future__ import annotations

import json

import pytest
from conftest import child_runs_of, ingest, put_objects, run_cli

BUCKET = "ragtrail-incr"
PREFIX = "kb"
N = 24
TOPICS = ["harbour cranes", "glacier ice cores", "bee colonies", "violin varnish", "desert solar farms",
          "tidal turbines", "sourdough starters", "comet tails"]
NOTES = {f"{PREFIX}/notes/n{i:03d}.md": f"Note {i} about {TOPICS[i % len(TOPICS)]}: record {i * 37} was filed "
                                         f"under shelf {i}." for i in range(N)}
FAQ = "id,text,lang\nq1,Pools cap how many tasks share one resource.,en\n" \
      "q2,Retries wait retry_delay between tries.,en\nq3,Sensors wait for a condition.,en\n"
WALRUS = f"{PREFIX}/notes/n010.md"
CHANGED = f"{PREFIX}/notes/n005.md"
ADDED = f"{PREFIX}/notes/zeppelin.md"
CONF = {"source": f"s3://{BUCKET}/{PREFIX}", "product": "incs3", "docs_per_batch": 8}


def metrics(mlflow_client, summary: dict) -> dict[str, dict]:
    return {c.info.run_name: c.data.metrics for c in child_runs_of(mlflow_client, summary)}


def point_view(qdrant, collection: str) -> set[tuple]:
    with qdrant() as store:
        return {(str(p.id), p.payload["doc_id"], p.payload["chunk_index"], p.payload["chunk_hash"])
                for p in store.scroll(collection, ["doc_id", "chunk_index", "chunk_hash"])}


@pytest.fixture(scope="module")
def runs(s3_server):
    """Build; then change one note, add one, delete one (a walrus census) and re-ingest; then edit the table."""
    client = s3_server.client
    put_objects(client, BUCKET, {**NOTES, WALRUS: "The walrus colony on the northern ice shelf counts 412 animals.",
                                 f"{PREFIX}/tables/faq.csv": FAQ})
    first = ingest(CONF)
    put_objects(client, BUCKET, {CHANGED: "Note 5 now explains how lighthouse lenses focus a beam with prisms.",
                                 ADDED: "Zeppelins float on lifting gas held in cells inside a rigid frame."})
    client.delete_object(Bucket=BUCKET, Key=WALRUS)
    second = ingest(CONF)
    put_objects(client, BUCKET, {f"{PREFIX}/tables/faq.csv": "id,text,lang\nq1,Pools cap how many tasks share one "
                                 "resource.,en\nq2,Retries wait retry_delay between tries; the delay may grow.,en\n"
                                 "q4,Deferrable operators hand their wait to the triggerer.,en\n"})
    third = ingest(CONF)
    return first, second, third


def test_reingest_reads_only_the_changed_and_added_objects(runs, mlflow_client):
    """One changed, one added, one deleted among N+2 objects: 2 objects read, the rest skipped unread, no
    collection scroll, the deleted document's points deleted by filter."""
    first, second, _ = runs
    assert first["status"] == second["status"] == "FINISHED", second
    total = N + 3  # N notes (n010 among them, overwritten by the walrus) ... plus the table's 3 rows
    assert first["docs"] == total
    assert (second["docs_added"], second["docs_updated"], second["docs_deleted"]) == (1, 1, 1)
    assert second["docs_unchanged"] == total - 2 and second["docs"] == total
    assert second["embeddings"] == 2
    m = metrics(mlflow_client, second)
    assert m["ingest"]["objects_read"] == 2 and m["ingest"]["objects_skipped"] == N - 1
    assert m["ingest"]["objects_deleted"] == 1 and m["ingest"]["bytes_in"] < 200
    assert m["plan"]["collection_scrolls"] == 0
    assert m["index"]["docs_deleted_by_filter"] == 1 and m["index"]["vectors_deleted"] >= 2  # walrus + old n005
    first_m = metrics(mlflow_client, first)
    assert first_m["ingest"]["objects_read"] == N + 1 and first_m["plan"]["collection_scrolls"] == 0  # nothing to scroll


def test_the_index_answers_right_after_the_reingest(runs, qdrant):
    """The added note is found, the changed note has its new text, the walrus census is gone."""
    _, second, _ = runs
    with qdrant() as store:
        docs = {p.payload["doc_id"]: p.payload for p in store.scroll("incs3", ["doc_id", "text"])}
    assert "notes/n010.md" not in docs and "notes/zeppelin.md" in docs
    assert "lighthouse" in docs["notes/n005.md"]["text"]
    proc = run_cli("search", "--product", "incs3", "--json", "-k", "3", "how do airships stay aloft with gas cells?",
                   env={"RAGTRAIL_TRACE_SAMPLE_RATE": "0"})
    assert proc.returncode == 0, proc.stderr
    hits = [h["doc_id"] for h in json.loads(proc.stdout)]
    assert hits[0] == "notes/zeppelin.md" and "notes/n010.md" not in hits


def test_a_changed_table_rereads_its_rows_only(runs, mlflow_client):
    """A changed CSV is read again (1 object): its edited row updated, its new row added, its removed row deleted."""
    _, _, third = runs
    assert third["status"] == "FINISHED", third
    assert (third["docs_added"], third["docs_updated"], third["docs_deleted"]) == (1, 1, 1)
    m = metrics(mlflow_client, third)
    assert m["ingest"]["objects_read"] == 1 and m["plan"]["collection_scrolls"] == 0


def test_the_incremental_index_equals_a_clean_build(runs, qdrant):
    """After three runs the version holds exactly the points a from-scratch build of the final source holds."""
    clean = ingest({**CONF, "version": "clean"})
    assert clean["status"] == "FINISHED", clean
    assert point_view(qdrant, "incs3__v1") == point_view(qdrant, "incs3__clean")
