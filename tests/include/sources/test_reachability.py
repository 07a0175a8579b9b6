"""Pre-flight's source and store checks: a transient failure is tried again, a definite answer is not."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ragtrail.sources import reachability


class FlakyS3:
    """An S3 client whose first ``failures`` listings fail with ``error`` (the one error path a real endpoint
    does not give on demand), then list one key."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def list_objects_v2(self, **kw):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {"KeyCount": 1, "Contents": [{"Key": kw["Prefix"] + "a.md"}]}


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(reachability, "PAUSE_S", 0.0)


def test_a_listing_that_fails_twice_transiently_passes_on_the_third_try():
    client = FlakyS3(2, EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert reachability.s3_source_problem("s3://docs/handbook/", client, "aws_default") is None
    assert client.calls == 3


def test_a_source_that_never_answers_is_reported_after_three_tries():
    client = FlakyS3(99, EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    problem = reachability.s3_source_problem("s3://docs/handbook/", client, "aws_default")
    assert problem.startswith("source s3://docs/handbook/ does not answer through connection aws_default: "
                              "EndpointConnectionError")
    assert client.calls == 3


def test_a_missing_bucket_is_a_definite_answer_asked_once():
    err = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"}},
                      "ListObjectsV2")
    client = FlakyS3(99, err)
    problem = reachability.s3_source_problem("s3://docs/handbook/", client, "aws_default")
    assert problem == "source s3://docs/handbook/: bucket docs does not exist (through connection aws_default)"
    assert client.calls == 1


def test_a_throttled_listing_is_transient():
    err = ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "ListObjectsV2")
    client = FlakyS3(1, err)
    assert reachability.s3_source_problem("s3://docs/handbook/", client, "aws_default") is None
    assert client.calls == 2


def test_a_store_busy_once_answers_on_the_next_try():
    opened = []

    @contextmanager
    def open_store():
        opened.append(1)
        if len(opened) == 1:
            raise ConnectionError("connection refused")
        yield type("Store", (), {"collections": lambda self: []})()

    assert reachability.store_problem(open_store, "http://qdrant:6333") is None
    assert len(opened) == 2
