"""The source state in parts (real split, ingest stage, commit and state folder; a real S3 API for the work store):
a re-ingest rewrites only the part it touched, an ingest shard downloads only its part, a commit is atomic for a
reader, and a one-file state of an earlier release is migrated by the first commit."""

from __future__ import annotations

import json
import os
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragtrail.core.statefile import MANIFEST, STATE_FILE, load_local, open_state
from ragtrail.stages.ingest import ingest_source
from ragtrail.stages.split import gather, read_split, shards_from_parts, split_source
from ragtrail.stages.state_commit import HeldHashes, commit_state
from ragtrail.stages.sync_state import create_state

STAMP = '"1.0"'
BUCKET = "ragtrail-state-unit"


def write_corpus(root, n=30):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"doc{i:03d}.md").write_text(f"Document {i}.")


def run(corpus, tmp_path, name, state, *, docs_per_shard=10):
    """One run as the DAG makes it: split, ingest every shard against its part(s), gather, commit (every
    document read counts as written; one chunk hash per document)."""
    work = tmp_path / name
    local = state.fetch(work)
    split = split_source(str(corpus), work, docs_per_shard=docs_per_shard, state_path=local, state_stamp=STAMP)
    ranges, _ = read_split(split["split_path"])
    shards, fetched = [], []
    for i, r in enumerate(ranges):
        mine = state.fetch(work / f"shard{i}")  # each shard on a worker of its own
        shards.append(ingest_source(str(corpus), work / f"s{i}", state_path=mine, state_stamp=STAMP, key_range=r,
                                    shard=f"{i + 1} of {len(ranges)}"))
        fetched.append(list(getattr(mine, "fetched", [])))
    out = gather(shards, work, ranges)
    docs = [d for p in out["docs_paths"] for d in pq.read_table(p, columns=["doc_id"]).column(0).to_pylist()]
    chunks = work / "chunks.parquet"
    pq.write_table(pa.table({"chunk_hash": [f"h-{d}-{name}" for d in docs], "doc_id": docs}), chunks)
    gone = [r["doc_id"] for r in pq.read_table(out["delta_path"]).to_pylist() if r["status"] == "gone"]
    counts = commit_state(work / "after", base_path=state.fetch(work / "index"), delta_path=out["delta_path"],
                          chunk_paths=[str(chunks)], changed=set(docs), written=set(docs), deleted=set(gone),
                          missing_hashes=set(), stamp=STAMP)
    state.commit(work / "after")
    return {**out, "split": split, "fetched": fetched, "counts": counts}


def manifest_of(folder) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def test_a_reingest_touching_one_shard_rewrites_only_its_part(tmp_path):
    corpus = tmp_path / "src"
    write_corpus(corpus)
    state = open_state("parts__v1", url="", local_root=tmp_path / "work")
    first = run(corpus, tmp_path, "r1", state)
    folder = tmp_path / "work" / ".state" / "parts__v1"
    before = manifest_of(folder)
    assert first["split"]["split_from"] == "listing" and len(before["parts"]) == 3
    assert [p["keys"] for p in before["parts"]] == [10, 10, 10]
    stats = {p["file"]: os.stat(folder / p["file"]) for p in before["parts"]}

    (corpus / "doc015.md").write_text("Document fifteen, edited.")
    os.utime(corpus / "doc015.md", ns=(1, 1))
    second = run(corpus, tmp_path, "r2", state)
    after = manifest_of(folder)
    assert second["split"]["split_from"] == "source state" and second["objects_read"] == 1
    assert [(p["after"], p["upto"]) for p in after["parts"]] == [(p["after"], p["upto"]) for p in before["parts"]]
    kept = [p["file"] for p in after["parts"] if p["file"] in stats]
    assert kept == [before["parts"][0]["file"], before["parts"][2]["file"]]  # shard 2 of 3 alone was rewritten
    for name in kept:  # untouched: the very same files, not rewritten
        now = os.stat(folder / name)
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (stats[name].st_ino, stats[name].st_mtime_ns,
                                                               stats[name].st_size)
    assert after["written"] == [after["parts"][1]["file"]] and after["retired"] == [before["parts"][1]["file"]]
    assert (folder / before["parts"][1]["file"]).exists()  # a reader of the previous manifest still finds it
    third = run(corpus, tmp_path, "r3", state)
    assert third["objects_read"] == 0 and third["objects_skipped"] == 30
    assert not (folder / before["parts"][1]["file"]).exists()  # retired one commit ago: gone now
    held = HeldHashes(state.fetch(tmp_path / "probe"))
    assert held.which(["h-doc015.md-r2", "h-doc015.md-r1", "h-doc014.md-r1", "h-doc029.md-r1", "nope"]) == {
        "h-doc015.md-r2", "h-doc014.md-r1", "h-doc029.md-r1"}  # doc015's first hash left with its old version
    held.close()


def test_a_commit_is_atomic_for_a_reader(tmp_path, monkeypatch):
    corpus = tmp_path / "src"
    write_corpus(corpus)
    state = open_state("atomic__v1", url="", local_root=tmp_path / "work")
    run(corpus, tmp_path, "r1", state)
    reader = state.fetch(tmp_path / "reader")  # holds the first manifest while the next commits

    def rows(local):
        return sorted(r for p in local.parts for r in sqlite3.connect(local.part(p)).execute("SELECT * FROM docs"))

    seen = rows(reader)
    (corpus / "doc005.md").write_text("Changed.")
    os.utime(corpus / "doc005.md", ns=(1, 1))
    run(corpus, tmp_path, "r2", state)
    assert rows(reader) == seen and len(seen) == 30  # the old state, whole, to the reader that began with it
    assert rows(state.fetch(tmp_path / "later")) != seen  # the new one to a reader that begins now

    # A commit that dies between its parts and its manifest leaves the previous state (the manifest goes last).
    committed = manifest_of(tmp_path / "work" / ".state" / "atomic__v1")
    (corpus / "doc025.md").write_text("Changed too.")
    os.utime(corpus / "doc025.md", ns=(1, 1))
    real_put = type(state)._put

    def put(self, local, name):
        if name == MANIFEST:
            raise OSError("the worker died here")
        real_put(self, local, name)

    monkeypatch.setattr(type(state), "_put", put)
    with pytest.raises(OSError):
        run(corpus, tmp_path, "r3", state)
    monkeypatch.undo()
    assert manifest_of(tmp_path / "work" / ".state" / "atomic__v1") == committed
    again = run(corpus, tmp_path, "r4", state)
    assert again["objects_read"] == 1  # doc025 again: the failed commit never became the state


def test_an_ingest_shard_downloads_only_its_part_from_the_work_store(tmp_path, s3_server):
    if BUCKET not in {b["Name"] for b in s3_server.client.list_buckets()["Buckets"]}:
        s3_server.client.create_bucket(Bucket=BUCKET)
    corpus = tmp_path / "src"
    write_corpus(corpus)
    state = open_state("remote__v1", url=f"s3://{BUCKET}/runs", s3_client=lambda: s3_server.client,
                       local_root=tmp_path / "work")
    run(corpus, tmp_path, "r1", state)
    listed = sorted(o["Key"] for o in s3_server.client.list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"])
    parts = manifest_of_remote(s3_server)["parts"]
    assert listed == sorted([f"runs/.state/remote__v1/{MANIFEST}"] + [f"runs/.state/remote__v1/{p['file']}" for p in parts])

    (corpus / "doc022.md").write_text("Changed in the last shard.")
    os.utime(corpus / "doc022.md", ns=(1, 1))
    second = run(corpus, tmp_path, "r2", state)
    assert second["objects_read"] == 1
    assert second["fetched"] == [[p["file"]] for p in parts]  # each shard: its own part, and nothing else
    after = manifest_of_remote(s3_server)
    assert [p["file"] for p in after["parts"]][:2] == [p["file"] for p in parts][:2]
    assert after["parts"][2]["file"] != parts[2]["file"]


def manifest_of_remote(s3_server) -> dict:
    body = s3_server.client.get_object(Bucket=BUCKET, Key=f"runs/.state/remote__v1/{MANIFEST}")["Body"].read()
    return json.loads(body)


def test_a_one_file_state_is_migrated_by_the_first_commit(tmp_path):
    corpus = tmp_path / "src"
    write_corpus(corpus, 12)
    folder = tmp_path / "work" / ".state" / "old__v1"
    folder.mkdir(parents=True)
    conn = create_state(folder / STATE_FILE)  # as an earlier release committed it
    with conn:
        for i in range(12):
            st = os.stat(corpus / f"doc{i:03d}.md")
            conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, 'indexed')",
                         (f"doc{i:03d}.md", f"doc{i:03d}.md", str(st.st_mtime_ns), st.st_size, str(st.st_mtime_ns),
                          "sha", f"c{i}"))
            conn.execute("INSERT INTO chunks VALUES (?, ?)", (f"old-{i}", f"doc{i:03d}.md"))
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("stamp", STAMP), ("fingerprint", "")])
    conn.close()
    state = open_state("old__v1", url="", local_root=tmp_path / "work")
    assert state.fetch(tmp_path / "x") == folder / STATE_FILE
    (corpus / "doc003.md").write_text("Changed.")
    first = run(corpus, tmp_path, "r1", state, docs_per_shard=5)
    assert first["split"]["split_from"] == "source state"  # cut from the one file's keys
    manifest = manifest_of(folder)
    assert [p["keys"] for p in manifest["parts"]] == [5, 5, 2] and manifest["retired"] == [STATE_FILE]
    held = HeldHashes(state.fetch(tmp_path / "probe"))
    assert held.which(["old-3", "old-4", "h-doc003.md-r1", "h-doc004.md-r1"]) == {"h-doc003.md-r1", "h-doc004.md-r1"}
    held.close()
    run(corpus, tmp_path, "r2", state, docs_per_shard=5)
    assert not (folder / STATE_FILE).exists()  # retired by the migration, deleted one commit later


def test_the_split_reuses_the_map_and_recuts_only_a_part_that_grew(tmp_path):
    corpus = tmp_path / "src"
    write_corpus(corpus)
    state = open_state("grow__v1", url="", local_root=tmp_path / "work")
    run(corpus, tmp_path, "r1", state)
    before = state.fetch(tmp_path / "x").parts
    for i in range(25):  # the last range grows to 35 keys: past 2 × 10
        (corpus / f"new{i:03d}.md").write_text(f"New {i}.")
    grown = run(corpus, tmp_path, "r2", state)
    assert grown["split"]["shards"] == 3  # the split ran before these keys were in the state
    ranges, _ = shards_from_parts(state.fetch(tmp_path / "y"), 10, None)
    assert [(r.after, r.upto) for r in ranges[:2]] == [(p["after"], p["upto"]) for p in before[:2]]
    assert len(ranges) == 2 + 4  # only the grown part is cut again (35 keys: 10, 10, 10, 5)
    for i in range(25):
        (corpus / f"new{i:03d}.md").unlink()
    for i in range(12, 30):  # the middle and last ranges shrink below 10 / 2: they are joined
        (corpus / f"doc{i:03d}.md").unlink()
    run(corpus, tmp_path, "r3", state)
    ranges, keys = shards_from_parts(state.fetch(tmp_path / "z"), 10, None)
    assert keys == 12 and len(ranges) == 2 and ranges[0].upto == before[0]["upto"] and ranges[-1].upto is None
    assert load_local(state.fetch(tmp_path / "w")) is not None


def test_a_commit_from_one_shard_of_several_keeps_the_other_parts(tmp_path):
    """A delta that records only its own shard's range (one shard's result, no split ranges passed on) must not
    shrink the map to that range: the other parts stay, untouched."""
    corpus = tmp_path / "src"
    write_corpus(corpus)
    state = open_state("one__v1", url="", local_root=tmp_path / "work")
    run(corpus, tmp_path, "r1", state)
    before = state.fetch(tmp_path / "x").parts
    (corpus / "doc012.md").write_text("Changed.")
    os.utime(corpus / "doc012.md", ns=(1, 1))
    work = tmp_path / "r2"
    ranges, _ = read_split(split_source(str(corpus), work, docs_per_shard=10, state_path=state.fetch(work),
                                        state_stamp=STAMP)["split_path"])
    out = ingest_source(str(corpus), work / "s1", state_path=state.fetch(work), state_stamp=STAMP, key_range=ranges[1],
                        shard="2 of 3")
    commit_state(work / "after", base_path=state.fetch(work / "i"), delta_path=out["delta_path"], chunk_paths=[],
                 changed={"doc012.md"}, written={"doc012.md"}, deleted=set(), missing_hashes=set(), stamp=STAMP)
    state.commit(work / "after")
    after = state.fetch(tmp_path / "y").parts
    assert [(p["after"], p["upto"], p["keys"]) for p in after] == [(p["after"], p["upto"], p["keys"]) for p in before]
    assert [p["file"] for p in after][::2] == [p["file"] for p in before][::2] and after[1]["file"] != before[1]["file"]
