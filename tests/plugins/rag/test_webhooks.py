"""The MLflow webhook receiver accepts only deliveries MLflow signed with the shared secret, recently,
and turns only ``@production`` moves of ``ragtrail-*`` models into registry asset events."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from ragtrail_airflow.rag import webhooks
from ragtrail_airflow.rag.webhooks import create_hooks_app, registry_change, sign, verify

SECRET = "s3cr3t"


def _headers(body: bytes, *, secret=SECRET, stamp=None, delivery="d-1") -> dict:
    stamp = str(int(stamp if stamp is not None else time.time()))
    return {"X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body.decode()),
            "X-MLflow-Timestamp": stamp, "X-MLflow-Delivery-Id": delivery}


def test_our_signature_is_mlflows():
    """The receiver recomputes exactly what MLflow 3.17's delivery code sends."""
    body = b'{"entity": "model_version_alias"}'
    assert sign(SECRET, "d-1", "1700000000", body) == _generate_hmac_signature(SECRET, "d-1", "1700000000", body.decode())


@pytest.mark.parametrize(("case", "status"), [("no secret configured", 503), ("unsigned", 401),
                                              ("wrong secret", 401), ("tampered body", 401), ("stale", 401)])
def test_a_delivery_that_is_not_signed_right_is_refused(case, status):
    body = b'{"a": 1}'
    headers = _headers(body, secret="other" if case == "wrong secret" else SECRET,
                       stamp=time.time() - 3600 if case == "stale" else None)
    if case == "unsigned":
        headers.pop("X-MLflow-Signature")
    with pytest.raises(HTTPException) as err:
        verify(None if case == "no secret configured" else SECRET, headers,
               b'{"a": 2}' if case == "tampered body" else body)
    assert err.value.status_code == status
    verify(SECRET, _headers(body), body)  # the same delivery, signed right, passes


def test_only_production_moves_of_ragtrail_models_count():
    data = {"name": "ragtrail-handbook", "alias": "production", "version": "3"}
    assert registry_change({"entity": "model_version_alias", "action": "created", "data": data}) == {
        "product": "handbook", "alias": "production", "version": "3", "action": "created"}
    assert registry_change({"entity": "model_version_alias", "action": "created", "data": {**data, "alias": "candidate"}}) is None
    assert registry_change({"entity": "model_version_alias", "action": "created", "data": {**data, "name": "other"}}) is None
    assert registry_change({"entity": "model_version", "action": "created", "data": data}) is None


def test_the_route_emits_an_asset_event_for_a_signed_production_move(monkeypatch):
    """Signed and relevant → one registry asset event with the delivery id; signed but irrelevant → none."""
    monkeypatch.setenv(webhooks.SECRET_ENV, SECRET)
    emitted = []
    monkeypatch.setattr(webhooks, "emit_registry_event", emitted.append)
    client = TestClient(create_hooks_app())
    move = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": "ragtrail-handbook", "alias": "production", "version": "2"}}).encode()
    answer = client.post("/mlflow", content=move, headers=_headers(move, delivery="d-42"))
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    other = json.dumps({"entity": "model_version_alias", "action": "created",
                        "data": {"name": "ragtrail-handbook", "alias": "candidate", "version": "2"}}).encode()
    assert client.post("/mlflow", content=other, headers=_headers(other)).json()["accepted"] is False
    assert client.post("/mlflow", content=move, headers={"X-MLflow-Delivery-Id": "x"}).status_code == 401
    assert emitted == [{"product": "handbook", "alias": "production", "version": "2", "action": "created",
                        "delivery_id": "d-42"}]
