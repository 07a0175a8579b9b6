"""An S3 prefix end to end: the real DAG reads moto's S3 server through the aws_default Airflow connection
(AIRFLOW_CONN_AWS_DEFAULT), pages through > 1,000 keys, indexes nested documents and table rows, and the
connection's secret never reaches logs, params, tags, artifacts or any file of the data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import samples
from conftest import TEST_HOME, child_runs_of, put_objects, run_cli

from ragtrail.core.settings import run_workdir

BUCKET = "ragtrail-docs"
GOOD = {
    "handbook/guide.md": "# Connections\n\nAirflow connections hold the credentials hooks such as S3Hook use.",
    "handbook/nested/deeper/retries.txt": "A failed task is retried after retry_delay, up to retries times.",
    "handbook/nested/page.html": "<html><body><h1>Aliases</h1><p>Qdrant aliases switch collections atomically."
                                 "</p><script>track()</script></body></html>",
    "handbook/reports/q3.pdf": samples.text_pdf("Quarterly report: the team tracked every run in MLflow."),
    "handbook/tables/faq.csv": "sku,body,lang,internal\n"
                               "q1,How do I rerun a failed task? Clear it in the grid view.,en,note\n"
                               "q2,Wie starte ich einen DAG? Über das Trigger-Formular.,de,note\n",
}
BAD = {"handbook/empty.txt": "", "handbook/../escaped.md": "escape", "handbook//double.md": "double"}
IGNORED = {"handbook/folder/": "", "handbook/.hidden.md": "hidden", "handbook2/not-me.md": "sibling prefix",
           "other/outside.md": "elsewhere"}
BULK = {f"handbook/bulk/{i:05d}.dat": b"\x00" for i in range(1_050)}  # listed and quarantined, never downloaded
EXPECTED_DOCS = {"guide.md", "nested/deeper/retries.txt", "nested/page.html", "reports/q3.pdf",
                 "tables/faq.csv#q1", "tables/faq.csv#q2"}


@pytest.fixture(scope="module")
def s3_run(s3_server):
    """``ragtrail ingest`` of s3://ragtrail-docs/handbook through the CLI, as a user runs it."""
    put_objects(s3_server.client, BUCKET, {**GOOD, **BAD, **IGNORED, **BULK})
    proc = run_cli("ingest", "--source", f"s3://{BUCKET}/handbook", "--product", "s3docs", "--json",
                   "--id-column", "sku", "--text-column", "body", "--metadata-columns", "lang")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout), proc


def test_s3_prefix_is_indexed_through_the_airflow_connection(s3_run, qdrant, mlflow_client):
    """Every good document under the prefix (nested, PDF, table rows) is indexed; bad keys are quarantined."""
    summary, _ = s3_run
    assert summary["status"] == "FINISHED" and summary["docs"] == len(EXPECTED_DOCS)
    assert summary["docs_failed"] == len(BAD) + len(BULK)  # FINISHED with quarantined documents
    with qdrant() as store:
        points = list(store.scroll("s3docs", None))
    assert {p.payload["doc_id"] for p in points} == EXPECTED_DOCS
    faq = {p.payload["doc_id"]: p.payload for p in points if "#" in p.payload["doc_id"]}
    assert faq["tables/faq.csv#q2"]["metadata"] == {"lang": "de"}  # only the chosen metadata column
    assert faq["tables/faq.csv#q1"]["source"] == f"s3://{BUCKET}/handbook/tables/faq.csv#q1"

    runs = {c.info.run_name: c for c in child_runs_of(mlflow_client, summary)}
    m = runs["ingest"].data.metrics
    listed = len(GOOD) + len(BAD) + len(BULK) + 1  # +1: faq.csv is two documents
    assert m["docs_seen"] == listed and m["docs_parsed"] == len(EXPECTED_DOCS)
    assert m["quarantined_unsupported_type"] == len(BULK) and m["quarantined_unsafe_key"] == 2
    assert m["quarantined_empty"] == 1
    (dataset_input,) = runs["ingest"].inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "s3" and f"s3://{BUCKET}/handbook" in dataset_input.dataset.source
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert parent.data.params["aws_conn_id"] == "aws_default" and parent.data.params["text_column"] == "body"


def test_s3_downloads_stay_in_the_work_folder(s3_run, mlflow_client, tmp_path):
    """Downloads are parsed and removed; the FINISHED run's work folder is removed as a whole; the manifest
    (with every object's ETag) stays in the trail."""
    summary, _ = s3_run
    assert summary["status"] == "FINISHED"
    assert not run_workdir("rag_ingest", summary["run_id"]).exists() or \
        not any(run_workdir("rag_ingest", summary["run_id"]).iterdir()), "work files are removed on success"
    ingest_run = {c.info.run_name: c for c in child_runs_of(mlflow_client, summary)}["ingest"]
    local = mlflow_client.download_artifacts(ingest_run.info.run_id, "ingest/manifest.jsonl", str(tmp_path))
    manifest = [json.loads(line) for line in Path(local).read_text().splitlines()]
    assert manifest and all(r["etag"] for r in manifest)
    assert not [p for p in Path(TEST_HOME).rglob("escaped.md")] and not [p for p in Path("/tmp").glob("escaped.md")]


def test_secret_key_never_reaches_logs_params_tags_or_artifacts(s3_run, mlflow_client, tmp_path):
    """Scan the task logs (CLI output, Airflow log folder), MLflow params/tags/artifacts and every stored file."""
    summary, proc = s3_run
    secret = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])["password"]
    assert secret not in proc.stdout and secret not in proc.stderr
    # The task log is really in the run's log file (its path is the CLI's first line; the scan of the data
    # folder below reads it too), and the connection's credentials were really used.
    log_file = Path(proc.stderr.split(" go to ", 1)[1].split(" (", 1)[0])
    assert log_file.is_relative_to(TEST_HOME)
    assert "credentials retrieved from login and password" in log_file.read_text()

    runs = mlflow_client.search_runs([summary["experiment_id"]])
    assert len(runs) >= 5
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags]
        assert not [v for v in values if secret in v], run.info.run_name
        for i, ds in enumerate(run.inputs.dataset_inputs):
            assert secret not in ds.dataset.source and secret not in (ds.dataset.profile or ""), i
        local = Path(mlflow_client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        for f in (p for p in local.rglob("*") if p.is_file()):
            assert secret.encode() not in f.read_bytes(), f

    # Every file of the data folder: Airflow's DB (rendered fields, XCom), its logs, MLflow's store, work files.
    leaked = [p for p in Path(TEST_HOME).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
