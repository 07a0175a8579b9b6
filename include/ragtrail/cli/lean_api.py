"""The in-process execution API of ``dag.test``, built for the one API version its own client speaks.

``dag.test`` runs every task instance through Airflow's execution API served in this process
(``InProcessExecutionAPI``: a Cadwyn app). On its first request Cadwyn generates a router for **every**
version of that API the release still serves (nine dated versions and the head in Airflow 3.3): ~5 s of
CPU on this machine, a third of ``make run``'s wall, spent to serve one client — the task SDK of this
same release, which sends one version (``API_VERSION``) on every request. :func:`lean_execution_api` builds
the app for the head and that version only (measured: router generation 5.0 → 0.6 s).

Only while ``dag.test`` runs in the ``ragtrail`` CLI's process; a real api-server (``make ui``, a
deployment) is not touched. It is used only when the release's newest API version is the client's, and
after a trial build of the trimmed routers succeeded in this process; anything else — another Airflow
release, a Cadwyn that builds differently — leaves Airflow's own app as it is (``reason`` says why). The
trial's verdict is kept per Airflow and Cadwyn release in a marker file of the Airflow home, so the trial
runs once, not on every run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

log = logging.getLogger(__name__)


def _trimmed():
    """(the head and the client's version as a ``VersionBundle``, the execution API's router without the
    routes that exist only in older versions), or a string saying why not."""
    from airflow.api_fastapi.execution_api import routes, versions
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from cadwyn import HeadVersion, Version, VersionBundle
    from cadwyn.route_generation import _DELETED_ROUTE_TAG
    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    newest = versions.bundle.versions[0].value
    if str(newest) != str(API_VERSION):
        return f"the API's newest version {newest} is not the client's {API_VERSION}"
    router = APIRouter()
    router.routes.extend(r for r in routes.execution_api_router.routes
                         if not (isinstance(r, APIRoute) and _DELETED_ROUTE_TAG in r.tags))
    return VersionBundle(HeadVersion(), Version(newest)), router


def _tried(bundle, router) -> str | None:
    """Build the trimmed app once and generate its routers; ``None`` when that works, else why not."""
    from airflow.api_fastapi.execution_api import app as exec_app
    from airflow.api_fastapi.execution_api import routes, versions

    saved = versions.bundle, routes.execution_api_router
    versions.bundle, routes.execution_api_router = bundle, router
    try:
        exec_app.create_task_execution_api_app()._cadwyn_initialize()
    except Exception as err:  # noqa: BLE001 - any failure: Airflow's own app is used
        return f"{type(err).__name__}: {err}"
    finally:
        versions.bundle, routes.execution_api_router = saved
    return None


def _marker(home: str | Path | None) -> Path | None:
    """The file that says the trimmed build works with the installed Airflow and Cadwyn (``None``: no home)."""
    home = home or os.environ.get("AIRFLOW_HOME")
    if not home:
        return None
    return Path(home) / f".lean-execution-api-ok-{version('apache-airflow-core')}-{version('cadwyn')}"


@contextmanager
def lean_execution_api(home: str | Path | None = None) -> Iterator[str | None]:
    """While the block runs, the in-process execution API is built for the client's version only. Yields
    ``None`` when it is, else the reason it is not (Airflow's own app is used then). ``home``: where the
    trial's verdict is kept (default ``AIRFLOW_HOME``; none: the trial runs every time)."""
    try:
        marker = _marker(home)
        trimmed = _trimmed()
        reason = trimmed if isinstance(trimmed, str) else None
        if reason is None and not (marker and marker.exists()):
            reason = _tried(*trimmed)
            if reason is None and marker:
                marker.touch()
    except Exception as err:  # noqa: BLE001 - internals moved: use Airflow's own app
        reason = f"{type(err).__name__}: {err}"
    if reason is not None:
        log.debug("in-process execution API left as Airflow builds it: %s", reason)
        yield reason
        return
    from airflow.api_fastapi.execution_api import routes, versions

    saved = versions.bundle, routes.execution_api_router
    versions.bundle, routes.execution_api_router = trimmed
    try:
        yield None
    finally:
        versions.bundle, routes.execution_api_router = saved
