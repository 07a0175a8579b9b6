"""S3 through the Amazon provider: the ingest stage's S3 client comes from an Airflow connection.

``S3Hook`` resolves the connection (``aws_default`` unless the DAG run says otherwise): credentials,
region, and ``endpoint_url`` from its extra for MinIO or any other S3 API. The domain code in
``ragtrail.sources.listing`` only sees the boto3 client, so it stays free of Airflow. The provider is
imported when a client is first needed, never at DAG parse time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragtrail.core import env_kit

DEFAULT_CONN_ID = env_kit.WORK_CONN_ID.default


def s3_client_factory(aws_conn_id: str | None = DEFAULT_CONN_ID) -> Callable[[], Any]:
    """Return a callable making the boto3 S3 client of ``aws_conn_id`` (called only for s3:// sources).

    Example::

        ingest_source("s3://docs/handbook", workdir, s3_client=s3_client_factory("minio"))
    """

    def make() -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=aws_conn_id or DEFAULT_CONN_ID).get_conn()

    return make


def open_work(dag_id: str, run_id: str):
    """The run's :class:`ragtrail.core.workstore.RunWork`: the local work folder, or with ``RAGTRAIL_WORK_URL``
    (``s3://bucket/prefix``) the work store, reached through the ``RAGTRAIL_WORK_CONN_ID`` connection
    (default ``aws_default``: credentials, region and ``endpoint_url`` from the connection)."""
    from ragtrail.core.workstore import open_run, work_url

    conn_id = env_kit.WORK_CONN_ID.get()
    return open_run(dag_id, run_id, url=work_url() or "", s3_client=s3_client_factory(conn_id))


def open_source_state(collection: str):
    """The committed source state of ``collection`` (:class:`ragtrail.core.statefile.StateFile`): beside the
    runs' work, in the work store when ``RAGTRAIL_WORK_URL`` names one (through the same connection)."""
    from ragtrail.core.statefile import open_state
    from ragtrail.core.workstore import work_url

    return open_state(collection, url=work_url() or "", s3_client=s3_client_factory(env_kit.WORK_CONN_ID.get()))
