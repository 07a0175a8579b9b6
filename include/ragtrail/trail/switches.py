"""The trail's switches: the environment first, then ``[ragtrail]`` values handed in, then defaults.

The trail never reads Airflow's configuration: the Airflow edge reads its ``[ragtrail]`` section and
hands the values in as a plain dict, per call (``section=``) or for the duration of a task
(:func:`use_section`, so that code the task runs, such as ``@track``, sees them too).

Options (environment variable / ``[ragtrail]`` key): ``RAGTRAIL_TRACKING`` / ``tracking_enabled``,
``RAGTRAIL_TRACKING_MODE`` / ``tracking_mode``, ``RAGTRAIL_MLFLOW_UI_URL`` / ``mlflow_ui_url``, and the
guard's ``RAGTRAIL_MLFLOW_{TIMEOUT_S,RETRIES,BACKOFF_S,BUDGET_S}`` / ``mlflow_{timeout_s,…}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from ragtrail.core.settings import env_flag

DEFAULT_UI_URL = "http://127.0.0.1:5000"
_FALSY = {"0", "false", "no", "off"}
_SECTION: ContextVar[Mapping[str, str] | None] = ContextVar("ragtrail_trail_section", default=None)


@contextmanager
def use_section(values: Mapping[str, str]) -> Iterator[None]:
    """Within the block (this thread or task only), ``values`` stand in for the ``[ragtrail]`` section."""
    token = _SECTION.set(dict(values))
    try:
        yield
    finally:
        _SECTION.reset(token)


def setting(env: str | None, key: str, default: str, section: Mapping[str, str] | None = None) -> str:
    """``env`` if set, else ``section[key]`` (default: the values of :func:`use_section`), else ``default``."""
    if env and os.environ.get(env):
        return os.environ[env]
    values = _SECTION.get() if section is None else section
    value = (values or {}).get(key)
    return default if value is None or str(value) == "" else str(value)


def tracking_enabled(section: Mapping[str, str] | None = None) -> bool:
    """Whether to log to MLflow at all (``RAGTRAIL_TRACKING=off`` or ``tracking_enabled = False``)."""
    flag = env_flag("RAGTRAIL_TRACKING")
    if flag is not None:
        return flag
    return setting(None, "tracking_enabled", "True", section).strip().lower() not in _FALSY


def ui_url(section: Mapping[str, str] | None = None) -> str:
    """Base URL of the MLflow UI that links open."""
    return setting("RAGTRAIL_MLFLOW_UI_URL", "mlflow_ui_url", DEFAULT_UI_URL, section).rstrip("/")
