"""Event-driven re-ingest: an Asset per watched source, fed by an ``AssetWatcher`` whose trigger polls it.

A product with ``schedule: on_change`` in the products file is scheduled on :func:`source_asset`. The
triggerer runs :class:`SourceChangedTrigger`: every ``poll_interval`` seconds (``asyncio.sleep``, never
a busy loop) it computes the source's cheap digest (:mod:`ragtrail.sources.digests`: a folder's paths, sizes and
mtimes; an S3 prefix's keys and ETags through the ``aws_conn_id`` connection) in a worker thread and
fires one event — an asset event that starts the product's DAG run — only when the digest differs
from the last one it remembered. The digest is remembered in the asset's state store (Airflow's
metadata database), so a restarted triggerer compares with what it saw before; outside a triggerer
(a unit test) it falls back to a file under ``$RAGTRAIL_HOME/watch``. The first digest ever seen is
the baseline: remembered, not fired — build a product once by hand, then it follows its source.
A source that cannot be read (bucket gone, credentials wrong) is logged and polled again; it never
ends the trigger.

An S3 source whose product names ``source_events`` (an SQS queue receiving the bucket's event
notifications) is watched by the queue instead, at a cost per change, not per key: :func:`source_asset`
gives its asset ``AssetWatcher(trigger=MessageQueueTrigger(scheme="sqs", ...))`` (the common-messaging
provider; the Amazon provider's ``SqsSensorTrigger`` does the work), long-polling the queue and keeping only
messages about an object of the product's bucket under its prefix (:func:`s3_event_filter`). The run an
event starts still lists the prefix and merges it against the version's state: an event only says *that*
something changed, so a lost or duplicated one costs nothing but a late or an empty run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

DIGEST_KEY = "ragtrail.source_digest"
DEFAULT_POLL_S = 60.0
MIN_POLL_S = 1.0
EVENTS_WAIT_S = 20  # one ReceiveMessage waits up to this long for a message (SQS's longest long poll)
EVENTS_IDLE_S = 1  # pause after an empty receive: a server that ignores the long poll is not hammered
EVENTS_BATCH = 10  # messages per ReceiveMessage (SQS's most)


def source_asset_name(product: str) -> str:
    return f"ragtrail_source__{product}"


class SourceChangedTrigger(BaseEventTrigger):
    """Fire when the digest of ``source`` changes; poll every ``poll_interval`` seconds.

    Args:
        source: a folder, ``file://`` URI or ``s3://bucket/prefix``.
        key: what the last digest is remembered under (the product's source asset name).
        aws_conn_id: the Airflow connection for ``s3://`` sources.
        poll_interval: seconds between two polls (at least one second).
    """

    def __init__(self, *, source: str, key: str, aws_conn_id: str = "aws_default",
                 poll_interval: float = DEFAULT_POLL_S):
        super().__init__()
        self.source, self.key, self.aws_conn_id = source, key, aws_conn_id
        self.poll_interval = max(float(poll_interval), MIN_POLL_S)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"source": self.source, "key": self.key, "aws_conn_id": self.aws_conn_id,
                 "poll_interval": self.poll_interval})

    def _s3_client(self):
        """One boto3 client for the trigger's life: building one costs seconds of CPU (and the GIL)."""
        if getattr(self, "_client", None) is None:
            from ragtrail_airflow.rag.s3 import s3_client_factory

            self._client = s3_client_factory(self.aws_conn_id)()
        return self._client

    def _digest(self) -> str:
        from ragtrail.sources.digests import source_digest

        return source_digest(self.source, self._s3_client)

    async def _recall(self) -> str | None:
        if self.asset_state_store is not None:
            value = await self.asset_state_store.aget(DIGEST_KEY)
            return value if isinstance(value, str) else None
        from ragtrail.sources.digests import last_digest

        return last_digest(self.key)

    async def _remember(self, digest: str) -> None:
        if self.asset_state_store is not None:
            await self.asset_state_store.aset(DIGEST_KEY, digest)
            return
        from ragtrail.sources.digests import remember_digest

        remember_digest(self.key, digest)

    async def poll_once(self) -> TriggerEvent | None:
        """One poll: the event to fire, or ``None`` (unchanged, the first baseline, or unreadable)."""
        try:
            digest = await asyncio.to_thread(self._digest)
        except Exception as err:  # noqa: BLE001 - a bad poll is logged and retried, never fatal
            log.warning("ragtrail: cannot read %s to watch it (%s: %s); next poll in %.0f s",
                        self.source, type(err).__name__, err, self.poll_interval)
            return None
        previous = await self._recall()
        if digest == previous:
            return None
        await self._remember(digest)
        if previous is None:
            log.info("ragtrail: watching %s from digest %s (baseline, no run)", self.source, digest[:12])
            return None
        log.info("ragtrail: %s changed (digest %s -> %s)", self.source, previous[:12], digest[:12])
        return TriggerEvent({"source": self.source, "digest": digest, "previous_digest": previous})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            event = await self.poll_once()
            if event is not None:
                yield event
            await asyncio.sleep(self.poll_interval)


def _jsonpath_string(text: str) -> str:
    """``text`` as a double-quoted jsonpath-ng string literal (its lexer drops the backslash of ``\\x``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def s3_event_filter(source: str) -> str:
    """The JSONPath (``jsonpath-ext``) that keeps an S3 event notification about ``source``'s bucket and prefix.

    It selects the message's ``Records`` whose bucket is the source's and whose key starts with its prefix;
    a message without one (another prefix or bucket, S3's ``s3:TestEvent``) selects nothing and is
    ignored. S3 writes the key URL-encoded (``a b`` → ``a+b``; some S3-compatible servers, moto among them,
    ``/`` → ``%2F`` too): each spelling of the prefix matches.
    """
    from urllib.parse import quote_plus

    from ragtrail.sources.listing import parse_s3_uri

    bucket, prefix = parse_s3_uri(source)
    spellings = sorted({re.escape(p) for p in (prefix, quote_plus(prefix, safe="/"), quote_plus(prefix, safe=""))})
    key = "^(?:" + "|".join(spellings) + ")"
    return (f"Records[?(@.s3.bucket.name == {_jsonpath_string(bucket)} && "
            f"@.s3.object.key =~ {_jsonpath_string(key)})]")


def source_events_trigger(source: str, queue: str, aws_conn_id: str = "aws_default"):
    """The ``MessageQueueTrigger`` that fires when ``queue`` receives an S3 event notification about ``source``.

    One long-poll ``ReceiveMessage`` (``EVENTS_WAIT_S``) after another; the messages that match
    :func:`s3_event_filter` are deleted and fire one event (extra: ``message_batch``), the others stay in the
    queue for whoever they are for.
    """
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    return MessageQueueTrigger(scheme="sqs", sqs_queue=queue, aws_conn_id=aws_conn_id,
                               max_messages=EVENTS_BATCH, wait_time_seconds=EVENTS_WAIT_S,
                               waiter_delay=EVENTS_IDLE_S, message_filtering="jsonpath-ext",
                               message_filtering_config=s3_event_filter(source))


def source_asset(product, poll_interval: float | None = None) -> Asset:
    """The Asset a ``schedule: on_change`` product's DAG is scheduled on, with its watcher.

    The watcher long-polls the product's ``source_events`` queue when it names one, else it polls the source
    itself every ``poll_interval`` seconds (default ``RAGTRAIL_WATCH_POLL_S`` or 60).
    """
    from ragtrail.core import env_kit

    name = source_asset_name(product.name)
    events = getattr(product, "source_events", None)
    if events:
        trigger = source_events_trigger(product.source, events["queue"], events.get("aws_conn_id") or "aws_default")
    else:
        interval = poll_interval if poll_interval is not None else env_kit.WATCH_POLL_S.get()
        trigger = SourceChangedTrigger(source=product.source, key=name, poll_interval=interval,
                                       aws_conn_id=product.aws_conn_id or "aws_default")
    uri = product.source if "://" in product.source else "file://" + product.source
    return Asset(name=name, uri=uri, group="ragtrail-source",
                 watchers=[AssetWatcher(name=f"ragtrail_watch__{product.name}", trigger=trigger)])
