"""Qdrant Edge across real processes: readers of the live version never wait for a build, a killed writer
leaves the live version intact, and a shard held by one process is handed over, never failed.

Every actor is a separate Python process speaking to the same store folder through ``open_store``.
"Never waits" is shown without clocks: the writer stops mid-write until the test lets it go, so a reader
that waited for it could not finish at all (it would time out on its lock and fail).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ragtrail.store import Point, StoreSettings, ensure_collection, open_store

BATCH = 256
ACTOR = r'''
import json, math, sys, time, uuid
from pathlib import Path
from ragtrail.store import Point, StoreSettings, ensure_collection, open_store

def points(start, n):
    return [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")),
                  vector=[math.cos(i / 500), math.sin(i / 500), 0.1], payload={"doc_id": f"d{i}", "chunk_hash": f"h{i}"})
            for i in range(start, start + n)]

args = json.loads(sys.argv[1])
settings = StoreSettings(path=args["root"], kind="edge")
if args["role"] == "writer":
    with open_store(settings, lock_timeout_s=60) as store:
        ensure_collection(store, args["name"], 3, {"built_at": time.time()})
        for b in range(args["batches"]):
            store.upsert(args["name"], points(b * 256, 256))
            print("batch", b, flush=True)
            if b == args.get("pause_after"):
                print("mid", flush=True)
                while not Path(args["go"]).exists():
                    time.sleep(0.01)
        if args.get("promote"):
            store.finish(args["name"])
            store.point_alias(args["alias"], args["name"])
        print("done", store.count(args["name"]), flush=True)
elif args["role"] == "reader":
    seen = []
    for _ in range(args["searches"]):
        with open_store(settings, lock_timeout_s=60) as store:
            target = store.alias_target(args["alias"])
            hits = store.query(target, [1.0, 0.2, 0.1], 5, ["doc_id"])
            assert len(hits) == 5, hits
            seen.append([target, store.count(target)])
    print(json.dumps(seen), flush=True)
elif args["role"] == "part_writer":  # one of several writers of a new version in parts, each its own part
    from ragtrail.stages.writing import _ensure
    from ragtrail.store.base import PARTS_KEY
    Path(args["ready"]).touch()
    while not Path(args["go"]).exists():
        time.sleep(0.001)
    with open_store(settings, lock_timeout_s=60) as store:
        _ensure(store, args["name"], 3, {"built_at": time.time(), PARTS_KEY: args["bounds"]})
        mine = [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{args['doc']}-{i}")), vector=[1.0, i / 512, 0.1],
                      payload={"doc_id": f"{args['doc']}-{i:04d}", "chunk_hash": f"{args['doc']}-{i}"})
                 for i in range(2 * 256)]
        store.upsert(args["name"], mine[:256])
        print("mid", flush=True)  # this part's shard loaded and locked, half written
        while args.get("hold") and not Path(args["hold"]).exists():
            time.sleep(0.01)
        store.upsert(args["name"], mine[256:])
        print("done", flush=True)
elif args["role"] == "holder":
    with open_store(settings, lock_timeout_s=60) as store:
        print("held", store.count(args["name"]), flush=True)
        while not Path(args["go"]).exists():
            time.sleep(0.01)
        store.upsert(args["name"], points(100000, 256))
        print("done", store.count(args["name"]), flush=True)
'''


def actor(**args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ACTOR, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, word: str) -> str:
    for line in proc.stdout:
        if line.startswith(word):
            return line
    raise AssertionError(f"actor ended before {word!r}: {proc.stderr.read()[-3000:]}")


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def live_store(root, n_batches: int = 2) -> StoreSettings:
    """``p__v1`` (``n_batches`` × 256 points) behind the alias ``p``."""
    settings = StoreSettings(path=str(root), kind="edge")
    with open_store(settings) as store:
        ensure_collection(store, "p__v1", 3, {"built_at": 1.0})
        store.upsert("p__v1", [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")), vector=[1.0, i / 512, 0.1],
                                     payload={"doc_id": f"d{i}", "chunk_hash": f"h{i}"}) for i in range(n_batches * BATCH)])
        store.finish("p__v1")
        store.point_alias("p", "p__v1")
    return settings


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_reading_the_live_version_never_waits_for_a_new_version_being_written(tmp_path, procs):
    live_store(tmp_path / "s")
    go = tmp_path / "go"
    writer = actor(role="writer", root=str(tmp_path / "s"), name="p__v2", alias="p", batches=4, pause_after=1,
                   go=str(go), promote=True)
    procs.append(writer)
    wait_for(writer, "mid")  # the writer holds p__v2, half written, and waits for the test
    reader = actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=30)
    procs.append(reader)
    seen = json.loads(finish(reader))  # finishes while the writer is still stopped mid-write
    assert seen == [["p__v1", 512]] * 30 and writer.poll() is None
    go.touch()
    assert wait_for(writer, "done").split() == ["done", str(4 * BATCH)]
    after = json.loads(finish(actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=3)))
    assert after == [["p__v2", 4 * BATCH]] * 3


def test_a_write_to_the_live_version_holds_readers_for_at_most_one_batch(tmp_path, procs):
    """An incremental run writes into the live collection: between two batches, readers get the shard,
    and they never see part of a batch."""
    live_store(tmp_path / "s", n_batches=0 + 2)
    go = tmp_path / "go"
    writer = actor(role="writer", root=str(tmp_path / "s"), name="p__v1", batches=6, pause_after=2, go=str(go))
    procs.append(writer)
    wait_for(writer, "mid")  # 3 batches (ids p0..p767) written, the shard still loaded in the writer
    seen = json.loads(finish(actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=20)))
    assert seen == [["p__v1", 3 * BATCH]] * 20  # batches 0-1 rewrote the same ids, batch 2 added 256
    go.touch()
    assert wait_for(writer, "done").split() == ["done", str(6 * BATCH)]


def test_a_writer_killed_mid_write_leaves_the_live_version_intact_and_the_new_one_completes_on_retry(tmp_path, procs):
    live_store(tmp_path / "s")
    writer = actor(role="writer", root=str(tmp_path / "s"), name="p__v2", alias="p", batches=40, promote=True)
    procs.append(writer)
    wait_for(writer, "batch 3")
    os.kill(writer.pid, signal.SIGKILL)  # somewhere in batches 4..39, no pause: mid-update or between two
    writer.wait(10)
    seen = json.loads(finish(actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=3)))
    assert seen == [["p__v1", 512]] * 3  # the live version: intact, searchable, still live
    with open_store(StoreSettings(path=str(tmp_path / "s"), kind="edge")) as store:
        partial = store.count("p__v2")  # the shard reloads at its last per-batch flush: never a torn batch
        assert partial % BATCH == 0 and 4 * BATCH <= partial < 40 * BATCH
    retry = actor(role="writer", root=str(tmp_path / "s"), name="p__v2", alias="p", batches=40, promote=True)
    procs.append(retry)
    assert wait_for(retry, "done").split() == ["done", str(40 * BATCH)]
    seen = json.loads(finish(actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=2)))
    assert seen == [["p__v2", 40 * BATCH]] * 2


def test_a_killed_create_is_discarded_and_a_discarded_version_can_be_deleted(tmp_path):
    """A create that died before its rename leaves only a hidden staging folder, which the next create clears."""
    settings = live_store(tmp_path / "s")
    staging = tmp_path / "s" / "collections" / ".new-p__v2-999999-dead"
    (staging / "shard").mkdir(parents=True)
    with open_store(settings) as store:
        assert store.collections() == ["p__v1"] and not store.exists("p__v2")
        ensure_collection(store, "p__v2", 3, {})
        assert store.count("p__v2") == 0 and not staging.exists()
        store.delete_collection("p__v2")
        assert store.collections() == ["p__v1"] and store.alias_target("p") == "p__v1"


def test_a_shard_held_by_one_process_is_handed_over_to_another_and_back(tmp_path, procs):
    """Process A has loaded p__v1 and sits idle; B searches it (A hands it over, B never fails), then A
    writes again: its next load, write and flush succeed (no broken WAL)."""
    live_store(tmp_path / "s")
    go = tmp_path / "go"
    holder = actor(role="holder", root=str(tmp_path / "s"), name="p__v1", go=str(go))
    procs.append(holder)
    assert wait_for(holder, "held").split() == ["held", "512"]
    seen = json.loads(finish(actor(role="reader", root=str(tmp_path / "s"), alias="p", searches=5)))
    assert seen == [["p__v1", 512]] * 5
    go.touch()
    assert wait_for(holder, "done").split() == ["done", "768"]
    assert finish(holder) == ""
    with open_store(StoreSettings(path=str(tmp_path / "s"), kind="edge")) as store:
        assert store.count("p__v1") == 768


def test_points_are_on_disk_when_upsert_returns_without_a_write_ahead_log(tmp_path, procs):
    """Shards keep no WAL (it doubled the store folder): each upsert call is flushed before it returns, so
    a writer killed right after three calls, without closing the store, leaves all three batches."""
    live_store(tmp_path / "s")
    writer = actor(role="writer", root=str(tmp_path / "s"), name="p__v2", batches=6, pause_after=2,
                   go=str(tmp_path / "never"))
    procs.append(writer)
    wait_for(writer, "mid")  # three upsert calls returned; the shard is still loaded in the writer
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    shard = tmp_path / "s" / "collections" / "p__v2" / "shard"
    assert shard.is_dir() and not (shard / "wal").exists()
    with open_store(StoreSettings(path=str(tmp_path / "s"), kind="edge")) as store:
        assert store.count("p__v2") == 3 * BATCH


def test_writers_of_different_parts_create_the_version_at_once_and_never_wait_for_each_other(tmp_path, procs):
    """Four processes start writing a new version in four parts at the same instant: each may try to create
    it (one wins the rename; the others find it made, and none clears a rival's staging folder), each writes its
    own part, and a writer holding its part mid-write holds up none of the others."""
    root = tmp_path / "s"
    settings = live_store(root)
    for round_ in range(3):
        name, go, hold = f"p__w{round_}", tmp_path / f"go{round_}", tmp_path / f"hold{round_}"
        writers = [actor(role="part_writer", root=str(root), name=name, bounds=["d1", "d2", "d3"], doc=f"d{k}",
                         ready=str(tmp_path / f"ready{round_}-{k}"), go=str(go), hold=str(hold) if k == 0 else None)
                   for k in range(4)]
        procs.extend(writers)
        while not all((tmp_path / f"ready{round_}-{k}").exists() for k in range(4)):
            time.sleep(0.01)
            assert all(w.poll() is None for w in writers), [w.communicate()[1][-2000:] for w in writers]
        go.touch()
        assert wait_for(writers[0], "mid")  # writer 0 holds part 0, half written, until the test lets it go
        for w in writers[1:]:
            assert wait_for(w, "done") and finish(w) == ""  # done while writer 0 still holds its part
        assert writers[0].poll() is None
        hold.touch()
        assert wait_for(writers[0], "done") and finish(writers[0]) == ""
        with open_store(settings) as store:
            assert store.count(name) == 4 * 512
            assert sorted({p.payload["doc_id"][:2] for p in store.scroll(name, ["doc_id"])}) == ["d0", "d1", "d2", "d3"]
        assert not [p.name for p in (root / "collections").iterdir() if p.name.startswith(".new-")]
        assert sorted(p.name for p in (root / "collections" / name).iterdir() if p.name.startswith("shard")) == [
            "shard", "shard-0001", "shard-0002", "shard-0003"]
