"""Is the trail's backing store reachable, and the index? One quick, bounded look at each."""

from __future__ import annotations

import time
from pathlib import Path

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
    """The pipeline's store (the ``qdrant_default`` connection, else the environment's): a server is asked
    for its collections with its API key, bounded by a short timeout. A local-mode store is only looked
    at, never opened: it admits one process at a time, and that should be the pipeline."""
    from ragtrail.store import open_store
    from ragtrail_airflow.qdrant import store_settings

    settings = store_settings()
    if settings.mode == "server":
        out = {"mode": "server", "url": redact_uri(settings.url)}
        t0 = time.perf_counter()
        try:
            with open_store(settings.with_timeout(3)) as store:
                out.update(ok=True, collections=len(store.collections()),
                           latency_ms=round((time.perf_counter() - t0) * 1000, 1))
        except Exception as err:  # reported, not raised: this is a health check
            out.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
        return out
    path = Path(settings.path or "")
    collections = sorted(p.name for p in (path / "collection").glob("*") if p.is_dir())
    ok = path.is_dir() or not path.exists()  # not created yet is fine: the first index task creates it
    return {"mode": settings.mode, "path": str(path), "ok": ok, "exists": path.is_dir(), "collections": collections}


def check() -> dict:
    """``{"ok", "mlflow": {...}, "qdrant": {...}, "mlflow_url"}``; ``ok`` only when both are."""
    mlflow, qdrant = mlflow_status(), qdrant_status()
    return {"ok": bool(mlflow["ok"] and qdrant["ok"]), "mlflow": mlflow, "qdrant": qdrant,
            "mlflow_url": mlflow["mlflow_url"]}
