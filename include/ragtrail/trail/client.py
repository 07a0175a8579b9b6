"""The one MLflow client factory: a client per tracking URI and process, used behind a :class:`Guard`.

Everything in ragtrail that talks to MLflow gets its client here, with explicit run ids rather than
the fluent API's process-global "active run" (one process may serve many tasks). ``mlflow`` is
imported inside functions, so parsing a DAG or starting the CLI stays cheap.

Example::

    client = guarded_client()            # MLFLOW_TRACKING_URI or the data folder's SQLite store
    exp_id = get_or_create_experiment(client, "handbook")
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

from ragtrail.core import env
from ragtrail.core.products import artifact_location, experiment_name, product_id
from ragtrail.core.settings import load as load_settings
from ragtrail.trail.guard import Guard, GuardedClient, Policy, set_http_limits
from ragtrail.trail.names import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, KIND_TAG, PRODUCT_ID_TAG, PRODUCT_TAG
from ragtrail.trail.switches import setting


def get_client(uri: str | None = None):
    """The plain ``MlflowClient`` on ``uri`` (default: ``MLFLOW_TRACKING_URI`` or the data folder's SQLite).

    One client per tracking URI and process: tasks that share a process (``dag.test``) share it.
    Call MLflow through :func:`guarded_client` instead; this one is for tests and read-only tools.
    MLflow's HTTP limits are set before the first client is built (:func:`~ragtrail.trail.guard.set_http_limits`).
    """
    set_http_limits(min(setting(env.MLFLOW_TIMEOUT_S), setting(env.MLFLOW_BUDGET_S)))
    return _client(uri or load_settings().mlflow_tracking_uri)


def cache_schema_head(warm: bool = False) -> None:
    """Compute MLflow's newest store schema revision once per process instead of at every store open.

    MLflow checks a SQL store's schema each time it opens it, and finds the newest revision by parsing
    its ~100 migration scripts with alembic: 1-3 s of CPU in every task process that opens a SQLite
    store. That revision is a fact of the installed MLflow, so it is cached; ``warm`` computes it now
    (the scheduler does, before the LocalExecutor forks task processes, which then inherit it).
    """
    try:
        from mlflow.store.db import utils

        if not hasattr(utils._get_latest_schema_revision, "cache_info"):
            utils._get_latest_schema_revision = lru_cache(maxsize=1)(utils._get_latest_schema_revision)
        if warm:
            utils._get_latest_schema_revision()
    except Exception:  # another MLflow layout: every open checks the scripts again, as before
        pass


def warm_sql_store(uri: str) -> None:
    """Import MLflow's SQL store and configure the process's ORM mappers now, when ``uri`` is a database.

    The first open of a SQL tracking store in a process imports ``mlflow.store.tracking.sqlalchemy_store``,
    whose import runs ``configure_mappers()``, and that configures every SQLAlchemy registry of the process:
    in a task process, Airflow's too (it imports all of Airflow's models first). About 1 s of CPU per task
    process, measured: a task run's start in a forked process took 1.05 s, and 0.09 s once its parent had done
    this (``bench/scale.py``'s task instances). A parent that forks task processes (the LocalExecutor's
    scheduler, see :mod:`ragtrail_airflow.preload`) calls this once and every child inherits it. No
    connection is opened. A tracking server's URI (``http``…) needs none of it and is left alone.
    """
    from urllib.parse import urlparse

    try:
        from mlflow.store.db.db_types import DATABASE_ENGINES

        if urlparse(uri).scheme.split("+", 1)[0] not in DATABASE_ENGINES:
            return
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
    except Exception:  # another MLflow layout: each task process configures its own, as before
        pass


def client_opened() -> bool:
    """Whether this process has opened a client yet (the first costs the import of MLflow)."""
    return _client.cache_info().currsize > 0


@lru_cache(maxsize=8)
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:"):
        return MlflowClient(tracking_uri=uri)
    cache_schema_head()
    # A new SQLite store is created and migrated by whoever opens it first. Task processes starting
    # together raced on it ("duplicate column name"), and a migration that lost half-way left the
    # store unusable for good ("table _alembic_tmp_experiments already exists"): one opener at a time.
    from filelock import FileLock

    path = uri.split(":///", 1)[-1].split("?", 1)[0]
    lock = None
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{path}.open.lock")
    with lock if lock is not None else nullcontext():
        client = MlflowClient(tracking_uri=uri)
        _fast_sqlite(client)
    return client


def _fast_sqlite(client) -> None:
    """Put a SQLite store in WAL mode with ``synchronous=NORMAL``.

    Every MLflow call is a transaction; with SQLite's default rollback journal each one waits for
    fsyncs (~25 ms apiece on a busy disk, 4-5 per task). WAL keeps readers and one writer apart across
    processes and survives a crashed process; only an OS crash can lose the last commits.
    """
    from sqlalchemy import event

    engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
    if engine is None:  # another store layout: stay correct, just slower
        return

    def pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened before the listener reconnect with it


def _forget_parent_connections() -> None:
    """In a forked child: never use the parent's pooled SQLite connections (SQLite forbids it; it shows as
    ``disk I/O error`` or a corrupt WAL). MLflow keeps one engine per URI for the whole process
    (``SqlAlchemyStore._engine_map``); SQLAlchemy's recipe for a fork is ``dispose(close=False)``."""
    store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    try:
        for engine in list(getattr(getattr(store, "SqlAlchemyStore", None), "_engine_map", {}).values()):
            engine.dispose(close=False)
    except Exception:  # never fail a fork over this
        pass


os.register_at_fork(after_in_child=_forget_parent_connections)


def guarded_client(policy: Policy | None = None, uri: str | None = None) -> GuardedClient:
    """:func:`get_client` behind a fresh :class:`~ragtrail.trail.guard.Guard` (one per task or request)."""
    policy = policy or Policy.from_env()
    set_http_limits(policy.http_timeout_s)  # this guard's timeout, if it is the process's first
    client = get_client(uri)
    return GuardedClient(client, Guard(client.tracking_uri, policy))


def get_or_create_experiment(client, product: str, kind: str = "product") -> str:
    """Return the product's experiment id, creating it with an explicit artifact location.

    The name comes from :func:`ragtrail.core.products.experiment_name`, the one place that decides it.
    ``kind`` is ``product`` for pipelines and ``feature`` for :func:`ragtrail.trail.track.track`.
    """
    from mlflow.exceptions import MlflowException

    name = experiment_name(product)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # made before ragtrail set it
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(product),
                                        tags={PRODUCT_TAG: product, PRODUCT_ID_TAG: product_id(product),
                                              KIND_TAG: kind, EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException as err:  # another task created it a moment ago
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise err
        return exp.experiment_id
