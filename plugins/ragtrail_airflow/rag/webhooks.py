"""MLflow registry webhooks → an asset event → the ``rag_registry_sync`` DAG moves the Qdrant alias.

``POST /ragtrail/hooks/mlflow`` (mounted in the plugin's app, outside Airflow's login: MLflow cannot
send an Airflow token) accepts MLflow's ``model_version_alias.created`` / ``.deleted`` deliveries. A
delivery counts only when its HMAC is right: MLflow signs ``<delivery id>.<timestamp>.<body>`` with
HMAC-SHA256 under the webhook's secret and sends ``X-MLflow-Signature: v1,<base64>``; we recompute it
with ``RAGTRAIL_WEBHOOK_SECRET`` (constant-time compare) and refuse timestamps more than five minutes
away (replays). No secret configured → 503, bad signature → 401, stale → 401. An alias other than
``production`` or a model not named ``ragtrail-<product>`` is acknowledged and ignored.

An accepted delivery becomes an event of the Asset ``ragtrail_registry`` (extra: product, alias,
version, action, delivery id), registered through Airflow's asset manager in the API server's own
database session; the ``rag_registry_sync`` DAG, scheduled on it, reconciles that product (the
registry wins). Register the webhook with ``ragtrail webhook create --url …`` (see docs/pipeline.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from fastapi import FastAPI, HTTPException, Request

from ragtrail.core import env_kit

SECRET_ENV = env_kit.WEBHOOK_SECRET.name
MAX_SKEW_S = 300
SIGNATURE, TIMESTAMP, DELIVERY = "X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's webhook signature of a body: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str | None, headers, body: bytes, now: float | None = None) -> None:
    """Raise ``HTTPException`` unless the delivery is signed with ``secret`` and recent."""
    if not secret:
        raise HTTPException(503, f"webhooks are not configured: set {SECRET_ENV}")
    signature, stamp, delivery = headers.get(SIGNATURE), headers.get(TIMESTAMP), headers.get(DELIVERY)
    if not (signature and stamp and delivery):
        raise HTTPException(401, "unsigned delivery")
    try:
        skew = abs((now if now is not None else time.time()) - int(stamp))
    except ValueError:
        raise HTTPException(401, "bad timestamp") from None
    if skew > MAX_SKEW_S:
        raise HTTPException(401, "stale delivery")
    if not hmac.compare_digest(signature.encode(), sign(secret, delivery, stamp, body).encode()):
        raise HTTPException(401, "bad signature")


def registry_change(payload: dict) -> dict | None:
    """The production-alias change a delivery describes (``{"product", "alias", "version", "action"}``), or ``None``."""
    from ragtrail.trail.names import MODEL_PREFIX, PRODUCTION_ALIAS

    data = payload.get("data") or {}
    name, alias = str(data.get("name") or ""), data.get("alias")
    if payload.get("entity") != "model_version_alias" or alias != PRODUCTION_ALIAS or not name.startswith(MODEL_PREFIX):
        return None
    return {"product": name[len(MODEL_PREFIX):], "alias": alias, "version": str(data.get("version") or ""),
            "action": payload.get("action")}


def emit_registry_event(extra: dict) -> None:
    """Register an event of ``ragtrail_registry`` in Airflow's database (this process is the API server)."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from ragtrail_airflow.rag.assets import REGISTRY_ASSET

    with create_session() as session:
        model = session.scalar(select(AssetModel).where(AssetModel.name == REGISTRY_ASSET.name,
                                                        AssetModel.uri == REGISTRY_ASSET.uri))
        if model is None:
            raise HTTPException(503, "the asset ragtrail_registry is unknown: is the rag_registry_sync DAG parsed?")
        asset_manager.register_asset_change(asset=model, extra=extra, source_is_api=True, session=session)


def create_hooks_app() -> FastAPI:
    """The webhook receiver (no Airflow login; every request must carry MLflow's HMAC signature)."""
    app = FastAPI(title="ragtrail webhooks", description=__doc__)

    @app.post("/mlflow", status_code=202)
    async def mlflow_webhook(request: Request) -> dict:
        body = await request.body()
        verify(env_kit.WEBHOOK_SECRET.get(), request.headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            raise HTTPException(400, "not JSON") from None
        change = registry_change(payload) if isinstance(payload, dict) else None
        if change is None:
            return {"accepted": False, "reason": "not a production alias of a ragtrail model"}
        extra = {**change, "delivery_id": request.headers[DELIVERY]}
        emit_registry_event(extra)
        return {"accepted": True, **extra}

    return app
