"""Is the trail's backing store reachable, and the index? One quick, bounded look at each (the index only
when the RAG kit is installed)."""

from __future__ import annotations

import time

from ragtrail.trail.names import redact_uri

HEALTH_POLICY = dict(timeout_s=3.0, retries=0, backoff_s=0.0, budget_s=5.0)


def mlflow_status() -> dict:
    """Ask MLflow for one experiment; report the (credential-free) URI, ok, latency or the error."""
    from ragtrail.trail.client import guarded_client
    from ragtrail_airflow.config import mlflow_ui_url, policy

    client = guarded_client(policy(**HEALTH_POLICY))
    out = {"uri": redact_uri(client.tracking_uri), "mlflow_url": mlflow_ui_url()}
    t0 = time.perf_counter()
    try:
        client.search_experiments(max_results=1)
        out.update(ok=True, latency_ms=round((time.perf_counter() - t0) * 1000, 1))
    except Exception as err:  # reported, not raised: this is a health check
        out.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
    return out


def qdrant_status() -> dict:
    """The pipeline's store (:func:`ragtrail_airflow.rag.store_conn.store_status`), or a note that the RAG kit
    (``ragtrail[rag]``) is not installed: the tracking provider alone has no store to look at."""
    from ragtrail_airflow.config import kit_installed

    if not kit_installed():
        return {"ok": True, "mode": None, "installed": False,
                "note": "the RAG kit is not installed (pip install 'ragtrail[rag]')"}
    from ragtrail_airflow.rag.store_conn import store_status  # noqa: TID251 - only with the kit installed

    return store_status()


def check() -> dict:
    """``{"ok", "mlflow": {...}, "qdrant": {...}, "mlflow_url"}``; ``ok`` only when both are."""
    mlflow, qdrant = mlflow_status(), qdrant_status()
    return {"ok": bool(mlflow["ok"] and qdrant["ok"]), "mlflow": mlflow, "qdrant": qdrant,
            "mlflow_url": mlflow["mlflow_url"]}
