"""Failures a person can act on: stop at once (no retries) with one line in plain words.

A :class:`PlainFailure` is an ``AirflowFailException`` (Airflow does not retry it) whose message is written
for the reader; the trail records it without its class name (``ragtrail.trail.names.PLAIN_ERRORS``), so the
task's MLflow run, the parent run's ``reasons`` and the ``ragtrail ingest`` summary say the same line.

:func:`check_fan_out` is Airflow's map limit said before Airflow says it: a task whose list is mapped over
by a downstream task may return at most ``[core] max_map_length`` items. Past that, Airflow's task runner
fails the task *after* its callable returned (the execution API answers ``400 unmappable_return_value_length``
to the XCom push), and the cause is only in Airflow's log ("pushed value is too large to map as a
downstream's dependency"); the task's own MLflow run would say FINISHED.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from ragtrail.core.spec import BY_NAME

DEFAULT_MAX_MAP_LENGTH = 1024


class PlainFailure(AirflowFailException):
    """Fail the task at once, without retries; the message is the cause in plain words."""


class PreflightFailed(PlainFailure):
    """The pre-flight check found the run cannot work (missing source, unknown connection, no store)."""


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length`` (``AIRFLOW__CORE__MAX_MAP_LENGTH``), 1024 by default."""
    from airflow.sdk import conf

    return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)


def map_limit_message(count: int, limit: int, param: str | None = None, items: str = "items") -> str:
    """E.g. ``1,100 batches exceed Airflow's map limit (max_map_length 1,024): raise docs_per_batch
    (--docs-per-batch) or AIRFLOW__CORE__MAX_MAP_LENGTH``."""
    row = BY_NAME.get(param or "")
    fix = f"raise {row.name} ({row.flag}) or AIRFLOW__CORE__MAX_MAP_LENGTH" if row else \
        "raise AIRFLOW__CORE__MAX_MAP_LENGTH or return fewer items"
    return f"{count:,} {items} exceed Airflow's map limit (max_map_length {limit:,}): {fix}"


def check_fan_out(task, map_index: int | None, result, param: str | None = None, items: str = "batches") -> None:
    """Raise :class:`PlainFailure` when ``task`` (not itself mapped: ``map_index`` None or -1) returns more
    items than a mapped downstream task may expand to (what Airflow's task runner would refuse after the
    callable returned)."""
    if not isinstance(result, (list, tuple, dict)) or (map_index is not None and map_index >= 0):
        return
    if next(task.iter_mapped_dependants(), None) is None:
        return
    limit = max_map_length()
    if len(result) > limit:
        raise PlainFailure(map_limit_message(len(result), limit, param, items))


def known_failure(error: BaseException) -> BaseException:
    """Airflow's own errors that have plain words: the execution API's ``unmappable_return_value_length``
    (a list past the map limit, refused after the callable returned) becomes a :class:`PlainFailure`;
    anything else is returned as it is."""
    detail = getattr(error, "detail", None)
    if isinstance(detail, dict) and detail.get("reason") == "unmappable_return_value_length":
        return PlainFailure(f"the returned list exceeds Airflow's map limit (max_map_length {max_map_length():,}): "
                            "return fewer items or raise AIRFLOW__CORE__MAX_MAP_LENGTH")
    return error


def record_late_failure(task, error) -> None:
    """A ``@task.tracked`` task that Airflow failed after its callable returned (its run already ended
    FINISHED): mark the run FAILED with the cause, so the roll-up's reasons carry it."""
    run = getattr(task, "_task_run", None)
    if run is not None and isinstance(error, BaseException):
        run.fail_after_end(known_failure(error))
