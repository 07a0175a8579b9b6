"""The event-source watcher under a live dag-processor + triggerer + scheduler: moto's S3 sends its event
notifications to moto's SQS; the product with ``source_events`` gets an asset event — and a run — for an
object under its prefix, none for another prefix's, and a second one for the next change (the provider's
trigger ends after each event: the triggerer starts it again)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from urllib.parse import unquote_plus

import boto3
import pytest
from conftest import TEST_HOME
from live_airflow import LiveAirflow

DAG_ID, ASSET = "rag_ingest__watched_sqs", "ragtrail_source__watched_sqs"


@pytest.fixture(scope="module")
def stack(s3_server):
    home = TEST_HOME / f"events-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    sqs = boto3.client("sqs", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                       aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret)
    bucket = f"events-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3_server.client.create_bucket(Bucket=bucket)
    s3_server.client.put_object(Bucket=bucket, Key="docs/a.md", Body=b"# Alpha\n\nThe first document.\n")
    s3_server.client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    sqs.purge_queue(QueueUrl=url)  # S3's s3:TestEvent
    (home / "products.yml").write_text(f"""
products:
  - {{name: watched_sqs, source: "s3://{bucket}/docs/", schedule: on_change, source_events: "{url}"}}
""")
    env = {"RAGTRAIL_PRODUCTS_FILE": str(home / "products.yml"), "RAGTRAIL_TASK_RETRIES": "0",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
    airflow = LiveAirflow(home, env)
    try:
        airflow.start(DAG_ID)
        airflow.cli("dags", "unpause", DAG_ID)
        airflow.sqs, airflow.queue, airflow.bucket, airflow.s3 = sqs, url, bucket, s3_server.client
        yield airflow
    finally:
        airflow.stop()
        sqs.delete_queue(QueueUrl=url)


def _asset_events(stack) -> list[dict]:
    with sqlite3.connect(stack.db) as con:
        try:
            rows = con.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                               "where a.name = ? order by e.id", (ASSET,)).fetchall()
        except sqlite3.OperationalError:
            return []
    return [json.loads(extra) for (extra,) in rows]


def _keys(event: dict) -> list[str]:
    batch = event["payload"]["message_batch"] if "payload" in event else event["message_batch"]
    return sorted(unquote_plus(r["s3"]["object"]["key"]) for m in batch for r in json.loads(m["Body"])["Records"])


def _watcher_running(stack) -> bool:
    """The triggerer has started the SQS trigger (its log names the queue)."""
    log = stack.home / "triggerer.log"
    return log.exists() and stack.queue in log.read_text(errors="replace")


def test_an_object_under_the_prefix_starts_a_run_and_the_next_change_another(stack):
    stack.wait_for("the triggerer runs the SQS trigger", lambda: _watcher_running(stack), timeout=300)
    stack.s3.put_object(Bucket=stack.bucket, Key="other/x.md", Body=b"another product's")
    stack.s3.put_object(Bucket=stack.bucket, Key="docs/b.md", Body=b"# Beta\n\nThe second document.\n")
    (first,) = stack.wait_for("an asset event of the source", lambda: _asset_events(stack), timeout=300)
    assert _keys(first) == ["docs/b.md"]  # the other prefix's message fired nothing
    runs = stack.wait_for("an asset-triggered run", lambda: _runs(stack), timeout=300)
    assert runs[0][1] == "asset_triggered"

    stack.s3.delete_object(Bucket=stack.bucket, Key="docs/a.md")
    events = stack.wait_for("a second asset event", lambda: (e := _asset_events(stack))[1:] and e, timeout=300)
    assert len(events) == 2 and _keys(events[1]) == ["docs/a.md"]
    attrs = stack.sqs.get_queue_attributes(QueueUrl=stack.queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert sum(int(v) for v in attrs.values()) == 1  # other/x.md's, left for whoever it is for


def _runs(stack) -> list[tuple[str, str]]:
    with sqlite3.connect(stack.db) as con:
        return con.execute("select run_id, run_type from dag_run where dag_id=? order by id", (DAG_ID,)).fetchall()
