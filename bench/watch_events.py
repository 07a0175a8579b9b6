"""What watching an S3 prefix costs, listing vs an event queue: ``python bench/watch_events.py``.

Against moto's server (S3 and SQS on loopback; S3 sends real event notifications to the queue):

- **listing** (``SourceChangedTrigger``, as without ``source_events``): one poll of a prefix of ``--keys`` keys;
  its ``ListObjectsV2`` requests counted from the server's request log;
- **events** (``MessageQueueTrigger`` on the queue, ``source_events``): the trigger's ``run()`` left idle for
  ``--idle-s`` seconds on an empty queue, its ``ReceiveMessage`` requests counted; then an object is put under
  the prefix while it long-polls, and the seconds from the put to its ``TriggerEvent`` measured (``--rounds``
  times, the median).

Per day: the listing at one poll a minute (``RAGTRAIL_WATCH_POLL_S`` 60) and 1,000 keys a page; the events
from the idle count. Results: ``bench/results/watch_events.json``. moto answers in microseconds where AWS takes
tens of milliseconds: read the latency as the trigger's own, not S3's or SQS's delivery delay (AWS documents
notifications "typically in seconds").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _requests(log: Path, start: int, needle: str) -> int:
    """Request lines of the server log after byte ``start`` that contain ``needle``."""
    with log.open("rb") as f:
        f.seek(start)
        return sum(needle.encode() in line for line in f)


async def _idle(trigger, seconds: float) -> None:
    async def drive():
        async for _ in trigger.run():
            raise AssertionError("an event on an empty queue")

    try:
        await asyncio.wait_for(drive(), seconds)
    except TimeoutError:
        pass


async def _latency(trigger, put) -> float:
    async def first():
        async for event in trigger.run():
            return event

    task = asyncio.create_task(first())
    await asyncio.sleep(2)  # the trigger is inside its long poll
    start = time.perf_counter()
    await asyncio.to_thread(put)
    event = await asyncio.wait_for(task, 60)
    assert event.payload["message_batch"]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--idle-s", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="watch-events-"))
    os.environ.setdefault("RAGTRAIL_HOME", str(tmp / "home"))
    import boto3
    from servers import moto_server

    server = moto_server(tmp).start()
    log = tmp / "moto.log"
    try:
        kw = dict(endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="AKIABENCH",
                  aws_secret_access_key="bench")
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "login": kw["aws_access_key_id"], "password": kw["aws_secret_access_key"],
             "extra": {"endpoint_url": server.url, "region_name": "us-east-1"}})
        s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
        bucket = f"watch-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"docs/page-{i:07d}.md", Body=b"x"),
                          range(args.keys)))
        url = sqs.create_queue(QueueName=bucket)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
        sqs.purge_queue(QueueUrl=url)  # the uploads' notifications came before the configuration: none; the test event

        from ragtrail_airflow.rag.watch import EVENTS_WAIT_S, SourceChangedTrigger, source_events_trigger

        source = f"s3://{bucket}/docs/"
        mark = log.stat().st_size
        t0 = time.perf_counter()
        asyncio.run(SourceChangedTrigger(source=source, key="bench").poll_once())
        poll_s = time.perf_counter() - t0
        lists = _requests(log, mark, "list-type=2")

        mark = log.stat().st_size
        asyncio.run(_idle(source_events_trigger(source, url), args.idle_s))
        receives = _requests(log, mark, '"POST / ')

        time.sleep(EVENTS_WAIT_S + 2)  # the server ends the receive the idle trigger left (else it takes a message)
        latencies = []
        for i in range(args.rounds):
            latencies.append(asyncio.run(_latency(source_events_trigger(source, url), lambda i=i: s3.put_object(
                Bucket=bucket, Key=f"docs/new-{i}.md", Body=b"new"))))

        per_day_events = receives * 86400 / args.idle_s
        result = {
            "keys": args.keys,
            "listing": {"list_requests_per_poll": lists, "poll_seconds": round(poll_s, 3),
                        "list_requests_per_poll_at_10M": 10_000_000 // 1000,
                        "list_requests_per_day_at_10M_one_poll_a_minute": 10_000 * 1440},
            "events": {"idle_seconds": args.idle_s, "receive_requests": receives,
                       "long_poll_seconds": EVENTS_WAIT_S, "receive_requests_per_day": round(per_day_events),
                       "put_to_event_seconds_median": round(statistics.median(latencies), 3),
                       "put_to_event_seconds": [round(x, 3) for x in latencies]},
            "machine": f"{os.cpu_count()} cores, moto {__import__('moto').__version__}",
        }
        out = REPO / "bench" / "results" / "watch_events.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
