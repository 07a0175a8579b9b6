"""The pipeline's first task: source, connection and store checked in a second, before any work.

A problem fails the task at once, without retries (:class:`ragtrail_airflow.failures.PreflightFailed`), as
the first line the task logs, on its MLflow run (``ragtrail.error``), in the parent run's reasons and in the
``ragtrail ingest`` summary: ``preflight: failed (source /data/docs does not exist: …)``. The checks
themselves are Airflow-free (:mod:`ragtrail.sources.reachability`); here they get Airflow's connections.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def connection_problem(conn_id: str) -> str | None:
    """A named AWS connection that Airflow does not know (``aws_default`` may be absent: boto3's own
    credential chain then applies)."""
    from ragtrail_airflow.rag.s3 import DEFAULT_CONN_ID
    from ragtrail_airflow.rag.store_conn import has_connection

    if conn_id == DEFAULT_CONN_ID or has_connection(conn_id):
        return None
    return (f"Airflow connection {conn_id} is not defined: add it (Admin → Connections, or "
            f"AIRFLOW_CONN_{conn_id.upper()}) or leave aws_conn_id empty for aws_default")


def store_check(settings) -> str | None:
    """A server must list its collections; a local store's folder must be creatable and writable (opening it
    would wait on its lock and load it, which is the plan task's job)."""
    from ragtrail.sources.reachability import store_problem
    from ragtrail.store import open_store

    where = settings.describe().get("url") or settings.describe().get("path") or settings.mode
    if settings.mode == "server":
        return store_problem(lambda: open_store(settings.with_timeout(5)), where)
    if settings.mode == "local":
        folder = Path(settings.path)
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not _writable(existing):
            return f"the Qdrant local store {where} cannot be written: check the data folder's permissions"
    return None


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK | os.X_OK)


def problems(cfg) -> list[str]:
    """Everything pre-flight finds wrong with a run's config (:class:`ragtrail.core.spec.RunConfig`)."""
    from ragtrail.sources.reachability import answer, source_problem
    from ragtrail_airflow.rag.s3 import DEFAULT_CONN_ID, s3_client_factory
    from ragtrail_airflow.rag.store_conn import store_settings

    conn_id = cfg.aws_conn_id or DEFAULT_CONN_ID
    found = []
    if cfg.source.startswith("s3://"):
        found.append(connection_problem(conn_id))
    if not any(found):
        found.append(source_problem(cfg.source, s3_client_factory(conn_id), conn_id))
    try:
        found.append(store_check(answer(store_settings)))
    except Exception as err:  # the qdrant_default connection does not resolve
        found.append(f"the Qdrant connection does not resolve: {type(err).__name__}: {err}")
    return [p for p in found if p]


def check(cfg) -> dict:
    """Run the checks; raise :class:`PreflightFailed` (no retries) with every problem on one line."""
    from ragtrail.trail.names import redact_text
    from ragtrail_airflow.failures import PreflightFailed

    found = problems(cfg)
    if found:
        cause = redact_text(" | ".join(found))
        log.error("pre-flight failed: %s", cause)
        raise PreflightFailed(cause)
    log.info("pre-flight passed: source %s readable, store answers", cfg.source)
    return {"source": cfg.source, "ok": True}
