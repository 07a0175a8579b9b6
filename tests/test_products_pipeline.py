"""A product's own scheduled DAG, run for real: its experiment name, and artifacts in S3 (a moto server)."""

from __future__ import annotations

import pytest
from conftest import write_corpus
from servers import moto_server

from ragtrail.cli.main import run_ingest

PRODUCT_ID = "5e0c3b1a-7d2f-4e6a-9b8c-0a1b2c3d4e5f"


@pytest.fixture()
def s3(tmp_path, monkeypatch):
    server = moto_server(tmp_path).start()
    for key, value in {"MLFLOW_S3_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3", endpoint_url=server.url)
    client.create_bucket(Bucket="trail-artifacts")
    yield client
    server.stop()


def test_product_dag_logs_to_its_named_experiment_with_s3_artifacts(s3, tmp_path, monkeypatch, mlflow_client):
    """rag_ingest__<name> builds with the file's configuration; the experiment is '<prefix> - <name> (<id8>)'
    and the stages' artifacts land under the product's s3:// artifact location."""
    corpus = write_corpus(tmp_path / "corpus", {"a.md": "Airflow schedules DAG runs.", "b.md": "MLflow keeps the trail."})
    products = tmp_path / "products.yml"
    products.write_text(f"""
products:
  - id: {PRODUCT_ID}
    name: s3docs
    source: corpus
    schedule: "@daily"
    version: v2
    chunking: {{chunk_size: 96, chunk_overlap: 8}}
    artifact_location: s3://trail-artifacts/mlflow/s3docs
""")
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(products))
    monkeypatch.setenv("RAGTRAIL_EXPERIMENT_PREFIX", "Docs search")
    summary = run_ingest({}, dag_id="rag_ingest__s3docs")
    assert summary["status"] == "FINISHED", summary
    assert summary["product"] == "s3docs" and summary["version"] == "v2" and summary["vectors"] == 2

    exp = mlflow_client.get_experiment(summary["experiment_id"])
    assert exp.name == "Docs search - s3docs (5e0c3b1a)"
    assert exp.artifact_location == "s3://trail-artifacts/mlflow/s3docs"
    assert exp.tags["ragtrail.product_id"] == PRODUCT_ID
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert parent.data.params["chunk_size"] == "96" and parent.data.params["source"] == str(corpus.resolve())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="trail-artifacts", Prefix="mlflow/s3docs/")["Contents"]]
    assert any(k.endswith("/artifacts/ingest/manifest.jsonl") for k in keys), keys
    assert any(k.endswith(f"{summary['parent_run_id']}/artifacts/rollup.json") for k in keys), keys
