"""The event-source watcher: a product with ``source_events`` is watched by ``MessageQueueTrigger`` on its SQS
queue (moto's server: S3 sends real event notifications to its SQS), fires on an object under its prefix,
leaves other prefixes' messages alone, and its DAG carries that trigger instead of the listing one."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import unquote_plus

import boto3
import pytest

from ragtrail_airflow.rag.watch import (
    SourceChangedTrigger,
    s3_event_filter,
    source_asset,
    source_events_trigger,
)

SQS_TRIGGER = "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"


@pytest.fixture
def notified(s3_server):
    """A bucket whose object events S3 (moto) sends to a fresh SQS queue (visibility 0: a message another
    watcher received but left is at once visible again, so no step of a test waits for it)."""
    sqs = boto3.client("sqs", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                       aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret)
    name = f"src-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3_server.client.create_bucket(Bucket=name)
    s3_server.client.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    _drain(sqs, url)  # S3's s3:TestEvent, if the server sends one
    yield sqs, url, name
    sqs.delete_queue(QueueUrl=url)


def _drain(sqs, url) -> None:
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]}
                                                        for m in msgs])


def _keys(messages) -> list[str]:
    """The object keys the messages are about (S3 writes them URL-encoded)."""
    return sorted(unquote_plus(r["s3"]["object"]["key"]) for m in messages
                  for r in json.loads(m["Body"]).get("Records", []))


def _queued(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                   "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


async def _first_event(trigger):
    async for event in trigger.run():
        return event


async def _one_poll(trigger):
    """One poll of the provider's trigger (one ReceiveMessage): the messages it kept."""
    inner = trigger.trigger
    async with await inner.hook.get_async_conn() as client:
        return await inner.poke(client=client)


def test_an_object_under_the_prefix_fires_and_other_prefixes_do_not(s3_server, notified):
    sqs, url, bucket = notified
    s3 = s3_server.client
    s3.put_object(Bucket=bucket, Key="other/x.md", Body=b"not ours")
    s3.put_object(Bucket=bucket, Key="docs/a b.md", Body=b"ours")  # in the event: docs/a+b.md (moto: docs%2Fa+b.md)
    assert _queued(sqs, url) == 2

    # a product on a prefix with no change: one poll receives both messages and keeps (and deletes) none
    quiet = source_events_trigger(f"s3://{bucket}/elsewhere/", url)
    assert asyncio.run(_one_poll(quiet)) == [] and _queued(sqs, url) == 2

    event = asyncio.run(_first_event(source_events_trigger(f"s3://{bucket}/docs/", url)))
    assert event.payload["status"] == "success"
    assert _keys(event.payload["message_batch"]) == ["docs/a b.md"]
    assert _queued(sqs, url) == 1  # its message was deleted, the other prefix's is left for whoever it is for
    (left,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert _keys([left]) == ["other/x.md"]


def test_a_deleted_object_fires_too(s3_server, notified):
    sqs, url, bucket = notified
    s3_server.client.put_object(Bucket=bucket, Key="docs/gone.md", Body=b"x")
    _drain(sqs, url)
    s3_server.client.delete_object(Bucket=bucket, Key="docs/gone.md")
    event = asyncio.run(_first_event(source_events_trigger(f"s3://{bucket}/docs/", url)))
    (message,) = event.payload["message_batch"]
    assert json.loads(message["Body"])["Records"][0]["eventName"].startswith("ObjectRemoved")


@pytest.mark.parametrize("key, ours", [
    ("docs/a.md", True), ("docs/sub/b.md", True), ("docs%2Fa.md", True), ("Docs/a.md", False),
    ("docsx/a.md", False), ("x/docs/a.md", False), ("doc", False),
])
def test_the_filter_matches_the_prefix_from_its_start(key, ours):
    import jsonpath_ng.ext

    body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]}
    assert bool(jsonpath_ng.ext.parse(s3_event_filter("s3://b/docs/")).find(body)) is ours
    other_bucket = {"Records": [{**body["Records"][0], "s3": {"bucket": {"name": "c"}, "object": {"key": key}}}]}
    assert not jsonpath_ng.ext.parse(s3_event_filter("s3://b/docs/")).find(other_bucket)


def test_the_filter_takes_the_url_encoded_spelling_of_an_odd_prefix():
    """S3 URL-encodes the key in its notifications; quotes and backslashes survive jsonpath's string lexer."""
    import jsonpath_ng.ext

    expr = jsonpath_ng.ext.parse(s3_event_filter('s3://b/hand book (v1)/"q"\\/'))

    def ours(key):
        return bool(expr.find({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]}))

    assert ours("hand+book+%28v1%29/%22q%22%5C/a.md") and ours('hand book (v1)/"q"\\/a.md')
    assert ours("hand+book+%28v1%29%2F%22q%22%5C%2Fa.md")  # "/" encoded too, as moto writes it
    assert not ours("hand+book/a.md") and not expr.find({"Service": "Amazon S3", "Event": "s3:TestEvent"})


def _product_dag(tmp_path, monkeypatch, entry: str):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from conftest import REPO

    path = tmp_path / "products.yml"
    path.write_text(f"products:\n  - {entry}\n")
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("rag_ingest__w")
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    return asset, watcher, DagSerialization.to_dict(dag)


def _serialized_watcher(data: dict) -> dict:
    (watcher,) = data["dag"]["timetable"]["__var"]["asset_condition"]["objects"][0]["watchers"]
    return watcher


def test_a_product_with_source_events_is_watched_by_the_message_queue_trigger(tmp_path, monkeypatch):
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/handbook-source"
    asset, watcher, data = _product_dag(tmp_path, monkeypatch, "{name: w, source: 's3://b/docs/', schedule: on_change, "
                                        f"source_events: {{queue: '{queue}', aws_conn_id: aws_events}}}}")
    assert asset.name == "ragtrail_source__w" and asset.uri == "s3://b/docs"  # Airflow drops the last "/"
    assert isinstance(watcher.trigger, MessageQueueTrigger) and watcher.trigger.scheme == "sqs"
    stored = _serialized_watcher(data)["trigger"]  # what the dag processor stores and the triggerer runs
    assert stored["classpath"] == SQS_TRIGGER
    kwargs = stored["kwargs"]
    assert (kwargs["sqs_queue"], kwargs["aws_conn_id"]) == (queue, "aws_events")
    assert kwargs["message_filtering"] == "jsonpath-ext"
    assert kwargs["message_filtering_config"] == s3_event_filter("s3://b/docs/")
    assert kwargs["wait_time_seconds"] == 20 and kwargs["delete_message_on_reception"] is True


def test_without_source_events_the_listing_trigger_stays(tmp_path, monkeypatch):
    _, watcher, data = _product_dag(tmp_path, monkeypatch, "{name: w, source: 's3://b/docs/', schedule: on_change}")
    assert isinstance(watcher.trigger, SourceChangedTrigger)
    assert _serialized_watcher(data)["trigger"]["classpath"] == "ragtrail_airflow.rag.watch.SourceChangedTrigger"
    plain = type("P", (), {"name": "w", "source": "s3://b/docs/", "aws_conn_id": None, "source_events": None})()
    assert isinstance(source_asset(plain, 5).watchers[0].trigger, SourceChangedTrigger)
