"""The work store (ragtrail.core.workstore) against a real S3 API (moto server): two "workers" with no folder in
common hand each other files through it; local mode stays in place; clean-up and release."""

from __future__ import annotations

import json

import pytest

from ragtrail.core.workstore import PLAN_FILE, open_run, work_url

BUCKET = "ragtrail-work-unit"


@pytest.fixture()
def store(s3_server):
    if BUCKET not in {b["Name"] for b in s3_server.client.list_buckets()["Buckets"]}:
        s3_server.client.create_bucket(Bucket=BUCKET)
    return lambda root, run="run:1": open_run("rag_ingest", run, url=f"s3://{BUCKET}/runs", local_root=root,
                                               s3_client=lambda: s3_server.client)


def keys(s3_server, prefix="runs/") -> list[str]:
    return sorted(o["Key"] for o in s3_server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_two_workers_hand_files_over_the_store_only(store, s3_server, tmp_path):
    a, b = store(tmp_path / "worker-a"), store(tmp_path / "worker-b")
    (a.local / "batches").mkdir(parents=True)
    (a.local / "batches" / "docs_00000.parquet").write_bytes(b"PAR1 docs")
    (a.local / "held.parquet").write_bytes(b"PAR1 held")
    (a.local / "deleted.json").write_text('["gone.md"]')
    plan = {"batches": [{"batch": 0, "docs_path": str(a.local / "batches" / "docs_00000.parquet")}],
            "held_path": str(a.local / "held.parquet"), "deleted_path": str(a.local / "deleted.json"), "docs_added": 1}
    published = a.publish_plan(plan)
    url = published["batches"][0]["docs_path"]
    assert url == f"s3://{BUCKET}/runs/rag_ingest/run_1/batches/docs_00000.parquet" and published["docs_added"] == 1
    a.release()
    assert not a.local.exists()

    batch = b.fetch(published["batches"][0])  # what a chunk task on the other worker gets from XCom
    assert batch["batch"] == 0 and open(batch["docs_path"], "rb").read() == b"PAR1 docs"
    assert batch["docs_path"].startswith(str(b.local))
    b.fetch_plan()
    local_plan = json.loads((b.local / PLAN_FILE).read_text())
    assert open(local_plan["deleted_path"]).read() == '["gone.md"]'
    assert local_plan["batches"][0]["docs_path"] == url  # batch files are fetched by the task that reads them
    out = b.local / "batches" / "chunks_00000.parquet"
    out.write_bytes(b"PAR1 chunks")
    result = b.publish({"chunks_path": str(out), "chunks": 3, "texts_path": batch["docs_path"]})
    assert result == {"chunks_path": f"s3://{BUCKET}/runs/rag_ingest/run_1/batches/chunks_00000.parquet",
                      "chunks": 3, "texts_path": url}  # a fetched file is not uploaded again
    assert store(tmp_path / "worker-c").read_plan()["held_path"].startswith("s3://")
    assert keys(s3_server, "runs/rag_ingest/run_1/") == [f"runs/rag_ingest/run_1/{k}" for k in (
        "batches/chunks_00000.parquet", "batches/docs_00000.parquet", "deleted.json", "held.parquet", PLAN_FILE)]

    assert b.remove() == 5
    assert keys(s3_server, "runs/rag_ingest/run_1/") == [] and not b.local.exists()


def test_each_task_gets_its_own_local_folder(store, tmp_path):
    one, two = store(tmp_path / "w"), store(tmp_path / "w")
    assert one.local != two.local and one.url == two.url


def test_a_failed_download_leaves_no_partial_file(store, tmp_path):
    from botocore.exceptions import ClientError

    work = store(tmp_path / "w", run="run:2")
    with pytest.raises(ClientError):
        work.fetch_file(f"{work.url}/batches/missing.parquet")
    assert not any(p.is_file() for p in work.local.rglob("*"))
    assert work.read_plan() is None


def test_local_mode_stays_in_place(tmp_path):
    work = open_run("rag_ingest", "manual__2026-11-28T10:00:00+00:00", url="", local_root=tmp_path)
    assert not work.remote and work.local == tmp_path / "rag_ingest" / "manual__2026-11-28T10_00_00_00_00"
    value = {"docs_path": str(work.local / "docs.parquet"), "docs": 2}
    assert work.publish(value) == value and work.fetch(value) == value
    (work.local / PLAN_FILE).write_text('{"docs_added": 2}')
    assert work.read_plan() == {"docs_added": 2}
    work.release()
    assert work.local.exists()  # release never touches the shared local folder
    assert work.remove() == 0 and not work.local.exists()


def test_any_fsspec_url(tmp_path):
    """Non-S3 stores go through fsspec (memory:// here: one process, but the same calls as gs:// or az://)."""
    a = open_run("d", "r", url="memory://ragtrail-test/work", local_root=tmp_path / "a")
    b = open_run("d", "r", url="memory://ragtrail-test/work", local_root=tmp_path / "b")
    (a.local / "x.npy").write_bytes(b"vectors")
    published = a.publish({"vectors_path": str(a.local / "x.npy")})
    assert open(b.fetch(published)["vectors_path"], "rb").read() == b"vectors"
    assert b.remove() == 1


@pytest.mark.parametrize(("value", "expected"), [
    ("s3://b/p/", "s3://b/p"), ("", None), ("/srv/shared/work", None), ("file:///srv/work", None), ("gs://b", "gs://b")])
def test_work_url_setting(value, expected):
    assert work_url({"RAGTRAIL_WORK_URL": value}) == expected
