"""Bounded MLflow calls: a timeout per attempt, a few retries, and one time budget per task.

MLflow's own client retries a dead server for minutes. Here every call goes through a :class:`Guard`
instead (the retry loop is ``tenacity``'s): each attempt gets at most ``RAGTRAIL_MLFLOW_TIMEOUT_S``,
transient failures are retried ``RAGTRAIL_MLFLOW_RETRIES`` times with exponential backoff, and all
calls of one task together spend at most ``RAGTRAIL_MLFLOW_BUDGET_S`` (default 30 s). When a call
still fails, the guard *opens*: later calls of that task fail at once, so a dead server costs a task
one bounded wait, not one per call.

MLflow reads its HTTP timeout and retries from the environment (``MLFLOW_HTTP_REQUEST_TIMEOUT``,
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``). They are set the way MLflow reads them: once per process, before
the trail builds its first client (:func:`set_http_limits`), to the first policy's timeout (never more
than its budget; whole seconds) and no retries of MLflow's own (ours would multiply them and ignore the
budget). Values the user set win, and later guards find them set: every guard takes the effective
timeout as the length of one attempt. The budget stays exact without cutting attempts short: an
attempt starts only when what is left of the budget covers a whole attempt, else the guard opens
("time budget spent"). With your own ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` above 0 one attempt may take
several timeouts, and the budget is no longer exact.

What happens when MLflow stays away is the tracking mode's business (``RAGTRAIL_TRACKING_MODE``):
**lenient** (default) lets the data pipeline go on untracked, **strict** fails the task with
:class:`TrackingUnavailable` (see :func:`tracking_failed`).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import tenacity

from ragtrail.core import env
from ragtrail.trail.names import redact_uri
from ragtrail.trail.switches import setting

log = logging.getLogger(__name__)

LENIENT, STRICT = "lenient", "strict"
_STATUS = re.compile(r"error code (\d{3})")


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
    def from_env(cls, section: Mapping[str, str] | None = None) -> Policy:
        """Read ``RAGTRAIL_MLFLOW_{TIMEOUT_S,RETRIES,BACKOFF_S,BUDGET_S}`` and ``RAGTRAIL_TRACKING_MODE``,
        else the ``[ragtrail]`` values ``mlflow_timeout_s``… ``tracking_mode`` handed in (see
        :mod:`ragtrail.trail.switches`)."""
        return cls(timeout_s=setting(env.MLFLOW_TIMEOUT_S, section), retries=setting(env.MLFLOW_RETRIES, section),
                   backoff_s=setting(env.MLFLOW_BACKOFF_S, section), budget_s=setting(env.MLFLOW_BUDGET_S, section),
                   mode=setting(env.TRACKING_MODE, section))

    def replace(self, **changes: Any) -> Policy:
        """This policy with some fields changed (e.g. a short budget for a request a browser waits on)."""
        return Policy(**{**self.__dict__, **changes})

    @property
    def http_timeout_s(self) -> float:
        """The HTTP timeout this policy asks MLflow for: its timeout, never more than its whole budget."""
        return min(self.timeout_s, self.budget_s)

    @property
    def strict(self) -> bool:
        return self.mode == STRICT


class TrackingError(RuntimeError):
    """A tracked task could not write its trail (strict mode). The message names the tracking URI."""


class TrackingUnavailable(TrackingError):
    """MLflow could not be reached within the policy. The message names the tracking URI."""


STRICT_NOTE = ("strict tracking mode (RAGTRAIL_TRACKING_MODE=strict) fails the task; "
               "lenient mode would let the pipeline go on untracked")


def tracking_failed(policy: Policy, uri: str, where: str, err: BaseException, lenient: str) -> str:
    """The one place that decides what a failed trail write means.

    Strict: raise ``err`` if it is a :class:`TrackingError` already, else a :class:`TrackingError`
    naming the (redacted) tracking URI and ``where`` it failed. Lenient: log a warning ending in
    ``lenient`` (what happens instead) and return the error's text.
    """
    if policy.strict:
        if isinstance(err, TrackingError):
            raise err
        raise TrackingError(f"MLflow tracking at {redact_uri(uri)} failed {where}: "
                            f"{type(err).__name__}: {err} — {STRICT_NOTE}") from err
    text = f"{type(err).__name__}: {err}"
    log.warning("MLflow tracking failed %s (%s); lenient mode: %s", where, text[:1000], lenient)
    return text


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
    import requests

    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
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
        set_http_limits(self.policy.http_timeout_s)
        self.clock, self._sleep = clock, sleep
        self.spent_s = 0.0
        self.attempts = 0
        self.open = False
        self.last_error: BaseException | None = None

    def remaining_s(self) -> float:
        return self.policy.budget_s - self.spent_s

    @property
    def attempt_s(self) -> int:
        """How long one attempt may take: the process's MLflow HTTP timeout, read when it is needed (a later
        guard may have lowered it, see :func:`set_http_limits`)."""
        return http_attempt_s(max(1, math.floor(self.policy.http_timeout_s)))

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
        if self.remaining_s() < self.attempt_s:  # no room for a whole attempt
            self.open = True
            raise self._error(f"time budget spent: {max(self.remaining_s(), 0):.1f} s left, one attempt may take "
                              f"{self.attempt_s} s ({HTTP_TIMEOUT})")
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(is_transient), stop=self._stop,
                                     wait=self._pause, sleep=self._timed_sleep, before_sleep=self._log_failure,
                                     retry_error_callback=self._give_up)
        return retrying(self._attempt, fn, args, kwargs)

    def _attempt(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        start = self.clock()
        self.attempts += 1
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if is_transient(err):
                self.last_error = err
            raise
        finally:
            self.spent_s += self.clock() - start

    def _pause(self, state: tenacity.RetryCallState) -> float:
        return min(self.policy.backoff_s * 2 ** (state.attempt_number - 1), max(self.remaining_s(), 0.0))

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        # Stop when out of tries, or when the pause would leave too little for a whole attempt.
        return state.attempt_number > self.policy.retries or self.remaining_s() - self._pause(state) < self.attempt_s

    def _timed_sleep(self, seconds: float) -> None:
        t0 = self.clock()
        self._sleep(seconds)
        self.spent_s += self.clock() - t0

    def _log_failure(self, state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception()
        log.warning("MLflow call %s failed (%s: %s), attempt %d of %d", getattr(state.args[0], "__name__", "?"),
                    type(err).__name__, str(err)[:200], state.attempt_number, self.policy.retries + 1)

    def _give_up(self, state: tenacity.RetryCallState) -> Any:
        self.open = True
        failures = state.attempt_number
        raise self._error(f"{failures} failed attempts" if failures > self.policy.retries else "time budget spent")


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


HTTP_TIMEOUT, HTTP_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def set_http_limits(timeout_s: float) -> int:
    """Give MLflow's HTTP layer this process's limits, unless the environment has its own; return the
    effective timeout (whole seconds), which is how long one guarded attempt may take.

    MLflow reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` from the
    environment on every request; the first guard or trail client of a process sets them (``timeout_s``
    rounded down, at least 1 s, and 0 retries). A later one that asks for a shorter timeout lowers a value
    ragtrail set (in this process or a parent, ``RAGTRAIL_MLFLOW_HTTP_TIMEOUT_SET``) (the API server's short request budget after a task-sized guard), so every
    guard's attempt fits its budget; a value the user set is never changed.
    """
    want = max(1, math.floor(timeout_s))
    if HTTP_MAX_RETRIES not in os.environ:
        os.environ[HTTP_MAX_RETRIES] = "0"
    current = os.environ.get(HTTP_TIMEOUT)
    # Which value is ours travels with the environment: a child (the API server `ragtrail ui start` spawns, a
    # task process) inherits both, and may still lower what a parent of ragtrail's set.
    ours = current is not None and str(env.MLFLOW_HTTP_TIMEOUT_SET.get()) == current
    if current is None or (ours and want < http_attempt_s(want)):
        os.environ[HTTP_TIMEOUT] = os.environ[env.MLFLOW_HTTP_TIMEOUT_SET.name] = str(want)
    return http_attempt_s(want)


def http_attempt_s(fallback: int) -> int:
    """How long one MLflow request may take in this process (``MLFLOW_HTTP_REQUEST_TIMEOUT``, whole seconds)."""
    try:
        return max(1, int(os.environ[HTTP_TIMEOUT]))
    except (KeyError, ValueError):  # unset, or not a number: MLflow itself refuses it on the first request
        return fallback

