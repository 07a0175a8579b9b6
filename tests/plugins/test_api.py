"""The REST API's routes all sit behind the auth dependency that create_app is given."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ragtrail_airflow.api import create_app


def _deny() -> None:
    raise HTTPException(401, "no token")


def test_every_route_is_guarded():
    app = create_app(_deny)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/health", "/api/products", "/api/products/{product}/runs",
                                        "/api/compare", "/api/runs/{run_id}/tasks", "/metrics",
                                        "/dag_runs/{dag_id}/{run_id}"}
    for route in routes:
        assert _deny in [d.call for d in route.dependant.dependencies], route.path


@pytest.mark.parametrize("path", ["/health", "/api/products", "/api/products/p/runs", "/api/summary",
                                  "/api/compare?run_id=a&run_id=b", "/metrics", "/dag_runs/d/r"])
def test_a_refused_request_never_reaches_the_route(path):
    response = TestClient(create_app(_deny)).get(path)
    assert response.status_code == 401
    assert response.json() == {"detail": "no token"}


def test_bad_query_input_is_answered_400_class():
    allowed = TestClient(create_app(lambda: None))
    assert allowed.get("/api/products/p/runs?limit=-1").status_code == 422
    assert allowed.get("/api/compare?run_id=only-one").status_code == 422
