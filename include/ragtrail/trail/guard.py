"""Bounded MLflow calls: a timeout per attempt, a few retries, and one time budget per task.

MLflow's own client retries a dead server for minutes. Here MLflow's HTTP retries are switched off
and every call goes through a :class:`Guard` instead: each attempt gets at most
``RAGTRAIL_MLFLOW_TIMEOUT_S``, transient failures are retried ``RAGTRAIL_MLFLOW_RETRIES`` times with
exponential backoff, and all calls of one task together spend at most ``RAGTRAIL_MLFLOW_BUDGET_S``
(default 30 s). When a call still fails, the guard *opens*: later calls of that task fail at once,
so a dead server costs a task one bounded wait, not one per call.

What happens then is the tracking mode's business (``RAGTRAIL_TRACKING_MODE``): **lenient** (default)
lets the data pipeline go on untracked, **strict** fails the task with :class:`TrackingUnavailable`.

Example::

    guard = Guard("http://mlflow:5000")
    client = GuardedClient(MlflowClient("http://mlflow:5000"), guard)
    client.search_experiments(max_results=1)  # raises TrackingUnavailable after ≤ 30 s when down
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LENIENT, STRICT = "lenient", "strict"
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
_STATUS = re.compile(r"error code (\d{3})")


def _setting(env: str, key: str, default: str) -> str:
    if os.environ.get(env):
        return os.environ[env]
    from ragtrail_airflow.config import airflow_conf

    return airflow_conf(key, default)


@dataclass(frozen=True)
class Policy:
    """How hard to try MLflow before giving up, and what giving up means.

    Args:
        timeout_s: longest wait for one HTTP attempt.
        retries: further attempts after a transient failure.
        backoff_s: first pause between attempts (doubles each time).
        budget_s: all MLflow calls of one task together, waits included.
        mode: ``lenient`` (go on untracked) or ``strict`` (fail the task).
    """

    timeout_s: float = 10.0
    retries: int = 4
    backoff_s: float = 0.5
    budget_s: float = 30.0
    mode: str = LENIENT

    @classmethod
    def from_env(cls) -> Policy:
        """Read ``RAGTRAIL_MLFLOW_{TIMEOUT_S,RETRIES,BACKOFF_S,BUDGET_S}`` and ``RAGTRAIL_TRACKING_MODE``
        (or the ``[ragtrail]`` options ``mlflow_timeout_s``… ``tracking_mode``)."""
        mode = _setting("RAGTRAIL_TRACKING_MODE", "tracking_mode", LENIENT).strip().lower()
        if mode not in (LENIENT, STRICT):
            raise ValueError(f"tracking mode must be {LENIENT!r} or {STRICT!r}, got {mode!r}")
        return cls(
            timeout_s=float(_setting("RAGTRAIL_MLFLOW_TIMEOUT_S", "mlflow_timeout_s", str(cls.timeout_s))),
            retries=int(_setting("RAGTRAIL_MLFLOW_RETRIES", "mlflow_retries", str(cls.retries))),
            backoff_s=float(_setting("RAGTRAIL_MLFLOW_BACKOFF_S", "mlflow_backoff_s", str(cls.backoff_s))),
            budget_s=float(_setting("RAGTRAIL_MLFLOW_BUDGET_S", "mlflow_budget_s", str(cls.budget_s))),
            mode=mode,
        )

    @property
    def strict(self) -> bool:
        return self.mode == STRICT


class TrackingError(RuntimeError):
    """A tracked task could not write its trail (strict mode). The message names the tracking URI."""


class TrackingUnavailable(TrackingError):
    """MLflow could not be reached within the policy. The message names the tracking URI."""


STRICT_NOTE = ("strict tracking mode (RAGTRAIL_TRACKING_MODE=strict) fails the task; "
               "lenient mode would let the pipeline go on untracked")


def redact_uri(uri: str) -> str:
    return _USERINFO.sub(r"\g<scheme>***@", uri)


def is_transient(err: BaseException) -> bool:
    """Whether an MLflow error may go away by itself (network, timeout, 5xx, 429, a locked SQLite).

    Errors that retrying cannot fix (a bad parameter, a missing run, a 404) are not transient and
    propagate at once.
    """
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    text = str(err)
    if "database is locked" in text:
        return True
    try:
        import requests

        if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
    except ImportError:  # pragma: no cover - requests comes with mlflow
        pass
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, RestException):
        return err.get_http_status_code() in (429, 500, 502, 503, 504)
    if isinstance(err, MlflowException) and text.startswith("API request to"):
        status = _STATUS.search(text)
        return status is None or int(status.group(1)) in (429, 500, 502, 503, 504)
    return False


class Guard:
    """Run MLflow calls under one :class:`Policy` and one time budget (one guard per task).

    Attributes:
        spent_s: seconds spent in calls so far, waits included.
        attempts: attempts made so far.
        open: ``True`` once a call gave up; later calls raise at once.
    """

    def __init__(self, uri: str, policy: Policy | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.uri = redact_uri(uri)
        self.policy = policy or Policy.from_env()
        self.clock, self.sleep = clock, sleep
        self.spent_s = 0.0
        self.attempts = 0
        self.open = False
        self.last_error: BaseException | None = None

    def remaining_s(self) -> float:
        return self.policy.budget_s - self.spent_s

    def _error(self, what: str) -> TrackingUnavailable:
        cause = self.last_error
        why = f"{type(cause).__name__}: {str(cause)[:300]}" if cause is not None else "no time left"
        note = f" — {STRICT_NOTE}" if self.policy.strict else ""
        return TrackingUnavailable(
            f"MLflow tracking at {self.uri} is unavailable ({what}; last error {why}; "
            f"{self.attempts} attempts, {self.spent_s:.1f} s of a {self.policy.budget_s:g} s budget){note}")

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` with bounded retries; raise :class:`TrackingUnavailable` when out of tries or time.

        Non-transient errors propagate unchanged and do not open the guard.
        """
        if self.open:
            raise self._error("gave up earlier in this task")
        failures = 0
        while True:
            remaining = self.remaining_s()
            if remaining < 1:  # MLflow's timeouts are whole seconds: no room for another attempt
                self.open = True
                raise self._error("time budget spent")
            _limit_http(min(self.policy.timeout_s, remaining))
            start = self.clock()
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if not is_transient(err):
                    raise
                self.last_error = err
                failures += 1
                log.warning("MLflow call %s failed (%s: %s), attempt %d of %d", getattr(fn, "__name__", fn),
                            type(err).__name__, str(err)[:200], failures, self.policy.retries + 1)
            finally:
                self.spent_s += self.clock() - start
            if failures > self.policy.retries:
                self.open = True
                raise self._error(f"{failures} failed attempts")
            pause = min(self.policy.backoff_s * 2 ** (failures - 1), max(self.remaining_s(), 0.0))
            t0 = self.clock()
            self.sleep(pause)
            self.spent_s += self.clock() - t0


def _limit_http(timeout_s: float) -> None:
    # MLflow reads these per request. Its own retries would multiply ours (and ignore the budget);
    # its timeout is whole seconds, rounded down so an attempt never outlives the budget.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.floor(timeout_s)))


class GuardedClient:
    """An ``MlflowClient`` whose every method call goes through a :class:`Guard`."""

    def __init__(self, client: Any, guard: Guard):
        self._client, self.guard = client, guard

    @property
    def tracking_uri(self) -> str:
        return self._client.tracking_uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.guard.call(attr, *args, **kwargs)

        guarded.__name__ = name
        return guarded
