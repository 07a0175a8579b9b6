"""The trail's switches: the environment first, then ``[ragtrail]`` values handed in, then defaults.

The trail never reads Airflow's configuration: the Airflow edge reads its ``[ragtrail]`` section and
hands the values in as a plain dict, per call (``section=``) or for the duration of a task
(:func:`use_section`, so that code the task runs, such as ``@track``, sees them too).

Options (environment variable / ``[ragtrail]`` key): ``RAGTRAIL_TRACKING`` / ``tracking_enabled``,
``RAGTRAIL_TRACKING_MODE`` / ``tracking_mode``, ``RAGTRAIL_MLFLOW_UI_URL`` / ``mlflow_ui_url``, and the
guard's ``RAGTRAIL_MLFLOW_{TIMEOUT_S,RETRIES,BACKOFF_S,BUDGET_S}`` / ``mlflow_{timeout_s,…}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ragtrail.core import env
from ragtrail.core.envvar import Var

DEFAULT_UI_URL = env.MLFLOW_UI_URL.default
_SECTION: ContextVar[Mapping[str, str] | None] = ContextVar("ragtrail_trail_section", default=None)


@contextmanager
def use_section(values: Mapping[str, str]) -> Iterator[None]:
    """Within the block (this thread or task only), ``values`` stand in for the ``[ragtrail]`` section."""
    token = _SECTION.set(dict(values))
    try:
        yield
    finally:
        _SECTION.reset(token)


def setting(var: Var, section: Mapping[str, str] | None = None) -> Any:
    """``var`` from the environment if set, else ``section[var.option]`` (default: the values of
    :func:`use_section`), else its default; :class:`~ragtrail.core.envvar.BadSetting` for a bad value."""
    return var.get(section=_SECTION.get() if section is None else section)


def tracking_enabled(section: Mapping[str, str] | None = None) -> bool:
    """Whether to log to MLflow at all (``RAGTRAIL_TRACKING=off`` or ``tracking_enabled = False``)."""
    return setting(env.TRACKING, section)


def ui_url(section: Mapping[str, str] | None = None) -> str:
    """Base URL of the MLflow UI that links open."""
    return setting(env.MLFLOW_UI_URL, section).rstrip("/")
