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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

DIGEST_KEY = "ragtrail.source_digest"
DEFAULT_POLL_S = 60.0
MIN_POLL_S = 1.0


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


def source_asset(product, poll_interval: float | None = None) -> Asset:
    """The Asset a ``schedule: on_change`` product's DAG is scheduled on, with its watcher.

    ``poll_interval``: seconds; default ``RAGTRAIL_WATCH_POLL_S`` or 60.
    """
    from ragtrail.core import env_kit

    interval = poll_interval if poll_interval is not None else env_kit.WATCH_POLL_S.get()
    name = source_asset_name(product.name)
    trigger = SourceChangedTrigger(source=product.source, key=name, poll_interval=interval,
                                   aws_conn_id=product.aws_conn_id or "aws_default")
    uri = product.source if "://" in product.source else "file://" + product.source
    return Asset(name=name, uri=uri, group="ragtrail-source",
                 watchers=[AssetWatcher(name=f"ragtrail_watch__{product.name}", trigger=trigger)])
