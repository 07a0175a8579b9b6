"""Pure functions over pipeline runs and times (the dicts :class:`ragtrail.trail.queries.Trail` returns): trends,
side-by-side comparison, per-product summary. No MLflow here, so they are easy to check by hand.

Example::

    trend_points(runs_oldest_first, "vector_count", by="version")  # [{"x": "v1", "value": 2.0, …}, …]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

STAGE_ORDER = ("preflight", "split", "ingest", "plan", "chunk", "dedupe", "embed", "write", "index", "evaluate")
RUN_FIELDS = ("run_id", "product", "version", "status", "start_time", "duration_s", "mlflow_url")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | int | float | datetime | None, *, now: datetime | None = None) -> int | None:
    """Milliseconds since the epoch from an ISO date/time (UTC unless it says otherwise), a datetime,
    epoch seconds, or an age like ``7d`` / ``12h`` / ``30m`` (that long ago)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)):
        return int(value * 1000)
    else:
        text = str(value).strip()
        m = _RELATIVE.match(text)
        if m:
            dt = (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
        else:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as err:
                raise ValueError(f"not a time: {value!r} (use 2024-05-01, 2024-05-01T12:00 or 7d / 12h)") from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms else None


def _as_compared(value: Any) -> Any:
    """A value as a comparison sees it: numbers (and params, which MLflow keeps as text, that read as
    numbers) by their value, so ``24``, ``24.0`` and ``"24.0"`` are the same; anything else as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if number == number:  # not NaN
                return number
    return json.dumps(value, sort_keys=True)


def differs(values: list) -> bool:
    """Whether a row of values (params or metrics of several runs) is not all the same."""
    return len({_as_compared(v) for v in values}) > 1


def trend_points(runs: list[dict], metric: str, by: str = "version") -> list[dict]:
    """Points of a metric (or ``status``) over runs given oldest first.

    Args:
        by: ``version`` — one point per version, in order of first appearance, from the version's
            newest FINISHED run (its newest run if none finished); ``time`` — one point per run.

    Returns:
        ``[{"x", "value", "status", "version", "run_id", "start_time", "mlflow_url"}]``; ``value`` is
        ``None`` where a run did not log the metric.
    """
    if by not in ("version", "time"):
        raise ValueError("by must be 'version' or 'time'")

    def point(r: dict, x: str) -> dict:
        value = r["status"] if metric == "status" else r["metrics"].get(metric)
        return {"x": x, "value": value, "status": r["status"], "version": r["version"], "run_id": r["run_id"],
                "start_time": r["start_time"], "mlflow_url": r["mlflow_url"]}

    if by == "time":
        return [point(r, r["start_time"]) for r in runs]
    per_version: dict[str, list[dict]] = {}
    for r in runs:
        per_version.setdefault(r["version"], []).append(r)
    points = []
    for version, rs in per_version.items():
        finished = [r for r in rs if r["status"] == "FINISHED"]
        points.append(point((finished or rs)[-1], version))
    return points


def side_by_side(runs: list[dict]) -> dict:
    """Params and metrics of 2+ runs in columns (baseline first), the keys that differ, and each metric's
    change against the baseline. Raises ``LookupError`` for fewer than two runs."""
    if len(runs) < 2:
        raise LookupError("compare needs at least two pipeline runs")
    params = {k: [r["params"].get(k) for r in runs] for k in sorted({k for r in runs for k in r["params"]})}
    metrics = {k: [r["metrics"].get(k) for r in runs] for k in sorted({k for r in runs for k in r["metrics"]})}
    deltas = {k: [None if v is None or vs[0] is None else v - vs[0] for v in vs] for k, vs in metrics.items()}
    return {
        "runs": [{k: r[k] for k in RUN_FIELDS} for r in runs],
        "baseline": runs[0]["run_id"],
        "params": params, "metrics": metrics, "deltas": deltas,
        "status": [r["status"] for r in runs],
        "diff": {"params": [k for k, vs in params.items() if differs(vs)],
                 "metrics": [k for k, vs in metrics.items() if differs(vs)]},
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def product_summary(runs: list[dict], stage_durations: dict[str, list[float]]) -> dict[str, Any]:
    """Runs (newest first) of one product: counts by status, success rate, mean durations, the latest.

    ``success_rate`` is FINISHED runs over ended ones (runs in flight do not count).
    """
    counts = Counter(r["status"] for r in runs)
    ended = [r for r in runs if r["mlflow_status"] != "RUNNING"]
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    return {
        "runs": len(runs),
        "by_status": dict(sorted(counts.items())),
        "success_rate": round(counts["FINISHED"] / len(ended), 4) if ended else None,
        "mean_duration_s": _mean([r["duration_s"] for r in ended if r["duration_s"] is not None]),
        "mean_stage_duration_s": {s: _mean(v) for s, v in sorted(stage_durations.items(),
                                                                key=lambda kv: order.get(kv[0], len(order)))},
        "latest": {k: ended[0][k] for k in ("run_id", "version", "status", "start_time", "mlflow_url")}
        if ended else None,
    }


def totals(rows: list[dict]) -> dict[str, Any]:
    """Add up :func:`product_summary` rows."""
    by_status: Counter = Counter()
    for row in rows:
        by_status.update(row["by_status"])
    runs = sum(row["runs"] for row in rows)
    ended = runs - by_status.get("RUNNING", 0)
    return {"products": len(rows), "runs": runs, "by_status": dict(sorted(by_status.items())),
            "success_rate": round(by_status["FINISHED"] / ended, 4) if ended else None}
