"""The pipeline with its work store in S3 (moto server), in this process: every hand-off file goes through
the store, XCom's paths are s3:// URLs, no task leaves a local copy, and a FINISHED run's files are removed;
the version's source state lives in the store too, and the next run merges against it."""

from __future__ import annotations

import pytest
from conftest import child_runs_of, ingest, write_corpus

pytestmark = pytest.mark.slow

WORK = "ragtrail-work-pipeline"
DOCS = {f"doc{i}.md": f"# Note {i}\n\nThe work store carries batch {i // 2} between workers without a shared disk."
        for i in range(6)}
CONF = {"product": "workstore", "docs_per_batch": 2, "texts_per_batch": 3}


def _keys(client, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=WORK, Prefix=prefix).get("Contents", []))


def test_hand_off_through_s3_and_clean_up(s3_server, settings, mlflow_client, tmp_path, monkeypatch):
    s3_server.client.create_bucket(Bucket=WORK)
    corpus = write_corpus(tmp_path / "src", DOCS)
    monkeypatch.setenv("RAGTRAIL_WORK_URL", f"s3://{WORK}/runs")
    monkeypatch.setenv("RAGTRAIL_WORK_CONN_ID", "aws_default")

    monkeypatch.setenv("RAGTRAIL_KEEP_WORK", "1")
    kept = ingest({**CONF, "source": str(corpus)})
    assert kept["status"] == "FINISHED" and kept["vectors"] == 6 and kept["tasks"]["chunk[2]"] == "FINISHED"
    names = [k.split("/", 3)[3] for k in _keys(s3_server.client, "runs/rag_ingest/")]
    assert "plan.json" in names and "docs.parquet" in names
    assert sorted(n for n in names if n.startswith("batches/chunks_")) == [f"batches/chunks_{i:05d}.parquet" for i in range(3)]
    assert sorted(n for n in names if n.startswith("embed/vectors_")) == [f"embed/vectors_{i:05d}.npy" for i in range(2)]
    local = settings.work_root / ".tasks"
    assert not [p for p in local.rglob("*") if p.is_file()], "every task dropped its local copies"
    # ... only after the task's MLflow run logged the files of its local folder (manifests) as artifacts
    runs = {c.info.run_name: c.info.run_id for c in child_runs_of(mlflow_client, kept)}
    for stage, name in (("ingest", "manifest.jsonl"), ("index", "index_manifest.jsonl")):
        assert name in [a.path.split("/")[-1] for a in mlflow_client.list_artifacts(runs[stage], stage)], stage

    monkeypatch.delenv("RAGTRAIL_KEEP_WORK")
    s3_server.client.delete_objects(Bucket=WORK, Delete={"Objects": [{"Key": k} for k in _keys(s3_server.client, "")]})
    (corpus / "doc0.md").write_text("# Note 0\n\nRewritten: a second run changes one document.")
    cleaned = ingest({**CONF, "source": str(corpus)})
    assert cleaned["status"] == "FINISHED" and cleaned["docs_updated"] == 1
    # A FINISHED run's work files are removed; the version's source state stays beside them, in the store.
    state = [k for k in _keys(s3_server.client, "runs/") if k.startswith("runs/.state/workstore__v1/")]
    assert _keys(s3_server.client, "runs/") == state and "runs/.state/workstore__v1/manifest.json" in state

    (corpus / "doc1.md").write_text("# Note 1\n\nRewritten as well: the third run reads this object alone.")
    third = ingest({**CONF, "source": str(corpus)})
    assert third["status"] == "FINISHED" and third["docs_updated"] == 1 and third["docs_unchanged"] == 5
    metrics = {c.info.run_name: c.data.metrics for c in child_runs_of(mlflow_client, third)}
    assert metrics["ingest"]["objects_read"] == 1 and metrics["plan"]["collection_scrolls"] == 0
