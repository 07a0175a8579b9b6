"""The listing merged against the source state (real ingest stage, real SQLite state, real parsers): what is
read, what is skipped unread, what is gone, and what the commit keeps for a document that was not written."""

from __future__ import annotations

import os
import sqlite3

import pyarrow.parquet as pq
import pytest

from ragtrail.core.statefile import load_local
from ragtrail.sources.walk import SourceItem
from ragtrail.stages.ingest import ingest_source
from ragtrail.stages.state_commit import HeldHashes, commit_state
from ragtrail.stages.sync_state import SourceDigest, SourceMerge

FILES = {"a.md": "Alpha.", "a/b.md": "Nested bee.", "a-b.md": "Dash.", "b.md": "Bravo.",
         "t.csv": "id,text\nr1,Row one.\nr2,Row two.\n"}
STAMP = '"1.0"'


def write(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def commit_all(tmp_path, out: dict, name: str, chunks: list[tuple[str, str]] = ()):
    """Commit a run as if every document it read was written (chunk rows: ``chunks``)."""
    docs = pq.read_table(out["docs_path"], columns=["doc_id"]).column(0).to_pylist()
    chunk_path = tmp_path / f"{name}-chunks.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"chunk_hash": [c for c, _ in chunks], "doc_id": [d for _, d in chunks]}), chunk_path)
    state = tmp_path / f"{name}.sqlite"
    commit_state(state, base_path=getattr(commit_all, "last", None), delta_path=out["delta_path"],
                 chunk_paths=[str(chunk_path)], changed=set(docs), written=set(docs), deleted=set(out_gone(out)),
                 missing_hashes=set(), stamp=STAMP)
    commit_all.last = state
    return state


def rows_of(state, sql: str) -> list[tuple]:
    """``sql`` run on every part of a state folder (commit_state's output)."""
    local = load_local(state)
    return [row for part in local.parts for row in sqlite3.connect(local.part(part)).execute(sql)]


def out_gone(out: dict) -> list[str]:
    rows = pq.read_table(out["delta_path"]).to_pylist()
    return [r["doc_id"] for r in rows if r["status"] != "indexed" and r["prev_status"] == "indexed"]


@pytest.fixture
def corpus(tmp_path):
    commit_all.last = None
    root = tmp_path / "src"
    write(root, FILES)
    return root


def test_only_new_and_changed_objects_are_read(corpus, tmp_path):
    first = ingest_source(str(corpus), tmp_path / "w1")
    assert first["objects_read"] == 5 and first["state"] == "none" and first["docs"] == 6
    state = commit_all(tmp_path, first, "s1", [("h-alpha", "a.md"), ("h-shared", "a/b.md"), ("h-shared", "b.md")])

    (corpus / "a/b.md").write_text("Nested bee, edited.")
    os.utime(corpus / "a/b.md", ns=(1, 1))  # an mtime that differs whatever the clock's resolution
    (corpus / "b.md").unlink()
    write(corpus, {"a/c.md": "New."})
    second = ingest_source(str(corpus), tmp_path / "w2", state_path=state, state_stamp=STAMP)
    assert second["state"] == "merged"
    assert (second["objects_read"], second["objects_skipped"], second["objects_deleted"]) == (2, 3, 1)
    assert (second["objects_new"], second["objects_changed"], second["docs_carried"]) == (1, 1, 4)
    assert second["docs"] == 6
    read = {r["doc_id"]: r["prev_hash"] for r in pq.read_table(second["docs_path"]).to_pylist()}
    assert set(read) == {"a/b.md", "a/c.md"} and read["a/c.md"] is None and read["a/b.md"] is not None
    assert out_gone(second) == ["b.md"]
    # The digest of the same source is the same whether its documents were read or carried.
    again = ingest_source(str(corpus), tmp_path / "w3")
    assert again["digest"] == second["digest"] and again["objects_read"] == 5

    state2 = commit_all(tmp_path, second, "s2", [("h-new", "a/b.md")])
    held = HeldHashes(state2)
    assert held.which(["h-alpha", "h-shared", "h-new", "nope"]) == {"h-alpha", "h-new"}  # b.md's gone, a/b.md's replaced
    held.close()
    third = ingest_source(str(corpus), tmp_path / "w4", state_path=state2, state_stamp=STAMP)
    assert (third["objects_read"], third["objects_skipped"], third["docs"]) == (0, 5, 6)


def test_a_changed_table_rereads_its_rows_and_a_removed_row_is_gone(corpus, tmp_path):
    state = commit_all(tmp_path, ingest_source(str(corpus), tmp_path / "w1"), "s1")
    (corpus / "t.csv").write_text("id,text\nr1,Row one.\nr3,Row three.\n")
    out = ingest_source(str(corpus), tmp_path / "w2", state_path=state, state_stamp=STAMP)
    assert out["objects_read"] == 1
    read = {r["doc_id"]: r["prev_hash"] for r in pq.read_table(out["docs_path"]).to_pylist()}
    assert set(read) == {"t.csv#r1", "t.csv#r3"} and read["t.csv#r1"] is not None and read["t.csv#r3"] is None
    assert out_gone(out) == ["t.csv#r2"]


def test_a_state_of_another_collection_or_another_reading_is_not_trusted(corpus, tmp_path):
    state = commit_all(tmp_path, ingest_source(str(corpus), tmp_path / "w1"), "s1")
    other = ingest_source(str(corpus), tmp_path / "w2", state_path=state, state_stamp='"2.0"')  # rebuilt collection
    assert other["state"] == "stale" and other["objects_read"] == 5
    bigger = ingest_source(str(corpus), tmp_path / "w3", state_path=state, state_stamp=STAMP, max_doc_bytes=10_000)
    assert bigger["state"] == "merged" and bigger["objects_read"] == 5  # another size limit: every object re-read
    assert bigger["docs_carried"] == 0


def test_a_document_that_was_not_written_is_read_again_next_run(corpus, tmp_path):
    first = ingest_source(str(corpus), tmp_path / "w1")
    state = tmp_path / "s.sqlite"
    docs = set(pq.read_table(first["docs_path"], columns=["doc_id"]).column(0).to_pylist())
    commit_state(state, base_path=None, delta_path=first["delta_path"], chunk_paths=[], changed=docs,
                 written=docs - {"a-b.md"}, deleted=set(), missing_hashes=set(), stamp=STAMP)
    rows = dict(rows_of(state, "SELECT doc_id, status FROM docs"))
    assert rows["a-b.md"] == "pending" and rows["a.md"] == "indexed"
    out = ingest_source(str(corpus), tmp_path / "w2", state_path=state, state_stamp=STAMP)
    assert out["objects_read"] == 1
    assert [(r["doc_id"], r["prev_hash"]) for r in pq.read_table(out["docs_path"]).to_pylist()] == [("a-b.md", None)]


class Once:
    """An iterable that can be read once (a file or a cursor read as it goes), counting what it gave."""

    def __init__(self, items):
        self.items, self.given, self.used = list(items), 0, False

    def __iter__(self):
        assert not self.used, "read twice"
        self.used = True
        for item in self.items:
            self.given += 1
            yield item


def test_the_commit_reads_the_runs_documents_once_from_any_iterable(corpus, tmp_path):
    """The run's changed, written and deleted documents are the whole corpus on a first build: the commit
    takes them as iterables read once (into SQLite), not as sets held in memory — the index task's memory
    grew ~300 B per document with those sets (and ``changed - written`` per delta row was once O(N²)).
    Same outcome as with sets."""
    first = ingest_source(str(corpus), tmp_path / "w1")
    state = tmp_path / "s.sqlite"
    docs = sorted(pq.read_table(first["docs_path"], columns=["doc_id"]).column(0).to_pylist())
    changed, written, deleted = Once(docs), Once(d for d in docs if d != "a-b.md"), Once([])
    commit_state(state, base_path=None, delta_path=first["delta_path"], chunk_paths=[], changed=changed,
                 written=written, deleted=deleted, missing_hashes=set(), stamp=STAMP)
    assert pq.read_metadata(first["delta_path"]).num_rows == 6
    assert (changed.given, written.given) == (len(docs), len(docs) - 1)
    rows = dict(rows_of(state, "SELECT doc_id, status FROM docs"))
    assert rows["a-b.md"] == "pending" and rows["a.md"] == "indexed"


def test_a_listing_out_of_key_order_reads_the_object_and_deletes_nothing_it_reads(corpus, tmp_path):
    """Key order is what the merge relies on; an item out of it is read (never skipped) with its old rows."""
    first = ingest_source(str(corpus), tmp_path / "w1")
    state = commit_all(tmp_path, first, "s1")
    item = lambda rel: SourceItem(rel, (corpus / rel).as_uri(), (corpus / rel).stat().st_size,  # noqa: E731
                                  str((corpus / rel).stat().st_mtime_ns), corpus / rel,
                                  mtime=next(iter(ingest_rows(first, rel)))["mtime"])
    (tmp_path / "w2").mkdir()
    merge = SourceMerge(tmp_path / "w2", state, STAMP, fingerprint_of(first), SourceDigest())
    got = [i.doc_id for i in merge.filter([item("b.md"), item("a.md")])]
    merge.close()
    assert got == ["a.md"] and merge.counts["objects_out_of_order"] == 1 and merge.counts["objects_skipped"] == 1
    assert "a.md" in merge.old  # its old rows came along: its documents get their previous hashes


def ingest_rows(out: dict, rel: str):
    return [r for r in pq.read_table(out["delta_path"]).to_pylist() if r["key"] == rel]


def fingerprint_of(out: dict) -> str:
    return pq.read_schema(out["delta_path"]).metadata[b"fingerprint"].decode()
