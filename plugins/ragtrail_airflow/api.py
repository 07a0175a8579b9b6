"""The REST API and metrics page the plugin mounts at ``/ragtrail`` in the Airflow API server.

It serves :class:`ragtrail.trail.queries.Trail` as JSON. Plugin apps are not protected by Airflow on their
own, so every route depends on Airflow's auth manager: a request needs a valid Airflow JWT (the
``Authorization: Bearer`` header, or the UI's session cookie) of a user allowed to read DAG runs —
401 without one, 403 with an invalid token or a user without that permission. Every answer carries
the MLflow UI URL of what it describes.

    GET /ragtrail/health                              MLflow and Qdrant reachability
    GET /ragtrail/api/products                        products with a trail
    GET /ragtrail/api/products/{product}/runs         ?version&status&where&since&until&order_by&ascending&limit
    GET /ragtrail/api/products/{product}/latest       how the latest version did
    GET /ragtrail/api/products/{product}/trend        ?metric=vector_count&by=version|time&limit
    GET /ragtrail/api/products/{product}/best         ?metric&mode=max|min&any_status
    GET /ragtrail/api/products/{product}/compare      ?last=5 (newest run against the last five)
    GET /ragtrail/api/compare                         ?run_id=…&run_id=…
    GET /ragtrail/api/runs/{run_id}/tasks             per-task breakdown
    GET /ragtrail/api/summary                         ?product=… (repeatable)
    GET /ragtrail/api/dag_runs/{dag_id}/{run_id}      the pipeline run of one Airflow DAG run
    POST /ragtrail/api/params/check                   a run conf checked against the run spec (400: per field, in words)
    GET /ragtrail/metrics                             the metrics page (HTML)
    GET /ragtrail/dag_runs/{dag_id}/{run_id}          the DAG run's "MLflow" tab in the Airflow UI (HTML)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from ragtrail.trail.guard import TrackingError, set_http_limits
from ragtrail.trail.names import experiments_url

# A browser waits on these: try MLflow briefly, then say it is unavailable.
REQUEST_POLICY = dict(timeout_s=5.0, retries=1, backoff_s=0.5, budget_s=10.0)


def trail():
    """A query object on a fresh, short-budget guarded client (one per request)."""
    from ragtrail.trail.client import guarded_client
    from ragtrail.trail.queries import Trail
    from ragtrail_airflow.config import mlflow_ui_url, policy

    client = guarded_client(policy(**REQUEST_POLICY))
    return Trail(tracking_uri=client.tracking_uri, ui_url=mlflow_ui_url(), client=client)


def answer(fn: Callable[[], Any]) -> Any:
    """Run a query; map its errors to HTTP: unknown → 404, bad input → 400, MLflow down → 503."""
    try:
        return fn()
    except LookupError as err:
        raise HTTPException(404, str(err)) from err
    except ValueError as err:
        raise HTTPException(400, str(err)) from err
    except TrackingError as err:
        raise HTTPException(503, str(err)) from err


def auth_dependency() -> Callable:
    """Airflow's own check: an authenticated user who may read DAG runs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN)


router = APIRouter()  # the routes below; create_app mounts them behind the auth dependency


def create_app(dependency: Callable | None = None) -> FastAPI:
    """Build the app; ``dependency`` guards every route (default: :func:`auth_dependency`).

    Only the API server builds it, so its MLflow HTTP timeout is set here, before any client: a browser's
    request (and the health check) gets short attempts (:func:`ragtrail.trail.guard.set_http_limits`)."""
    set_http_limits(min(REQUEST_POLICY["timeout_s"], REQUEST_POLICY["budget_s"]))
    app = FastAPI(title="ragtrail", description=__doc__)
    app.include_router(router, dependencies=[Depends(dependency or auth_dependency())])
    return app


@router.get("/health")
def health() -> dict:
    """Whether MLflow and Qdrant are reachable from the API server."""
    from ragtrail_airflow.health import check

    return check()


@router.get("/api/products")
def products() -> dict:
    t = trail()
    return answer(lambda: {"products": t.products(), "mlflow_url": experiments_url(t.ui_url)})


@router.get("/api/products/{product}/runs")
def runs(product: str, version: str | None = None, status: str | None = None, where: str | None = None,
         since: str | None = None, until: str | None = None, order_by: str = "start_time",
         ascending: bool = False, limit: Annotated[int, Query(ge=0, le=10_000)] = 20) -> dict:
    return answer(lambda: trail().runs(product, version=version, status=status, where=where, since=since,
                                       until=until, order_by=order_by, ascending=ascending,
                                       limit=limit or None))


@router.get("/api/products/{product}/latest")
def latest(product: str) -> dict:
    return answer(lambda: trail().latest(product))


@router.get("/api/products/{product}/trend")
def trend(product: str, metric: str = "vector_count", by: str = "version",
          limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> dict:
    return answer(lambda: trail().trend(product, metric, by=by, limit=limit))


@router.get("/api/products/{product}/best")
def best(product: str, metric: str, mode: str = "max", any_status: bool = False) -> dict:
    return answer(lambda: trail().best(product, metric, mode=mode, status=None if any_status else "FINISHED"))


@router.get("/api/products/{product}/compare")
def compare_last(product: str, last: Annotated[int, Query(ge=1, le=100)] = 5) -> dict:
    return answer(lambda: trail().compare(product=product, last=last))


@router.get("/api/compare")
def compare(run_id: Annotated[list[str], Query(min_length=2)]) -> dict:
    return answer(lambda: trail().compare(run_id))


@router.get("/api/runs/{run_id}/tasks")
def tasks(run_id: str) -> dict:
    return answer(lambda: trail().tasks(run_id))


@router.get("/api/summary")
def summary(product: Annotated[list[str] | None, Query()] = None) -> dict:
    return answer(lambda: trail().summary(product or None))


@router.get("/api/dag_runs/{dag_id}/{run_id}")
def dag_run(dag_id: str, run_id: str) -> dict:
    return answer(lambda: trail().for_dag_run(dag_id, run_id))


@router.get("/dag_runs/{dag_id}/{run_id}", response_class=HTMLResponse)
def dag_run_page(dag_id: str, run_id: str) -> HTMLResponse:
    from ragtrail_airflow.page import render_dag_run

    t = trail()
    try:
        run = t.for_dag_run(dag_id, run_id)
    except LookupError as err:
        return HTMLResponse(render_dag_run(t, None, str(err)))
    return HTMLResponse(answer(lambda: render_dag_run(t, run)))


@router.post("/api/params/check")
def check_params(conf: Annotated[dict[str, Any], Body()]) -> dict:
    """Check a run conf (``rag_ingest``'s params) with the run spec's rules before triggering a run: 400 with
    one plain message per bad field (``chunk_size must be a whole number from 16 to 510 (got -5)``)."""
    from ragtrail.core.spec import conf_errors

    errors = conf_errors(conf)
    if errors:
        raise HTTPException(400, {"message": "; ".join(errors.values()), "errors": errors})
    return {"ok": True, "conf": conf}


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(product: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> HTMLResponse:
    from ragtrail_airflow.page import render

    return HTMLResponse(answer(lambda: render(trail(), product=product, limit=limit)))
