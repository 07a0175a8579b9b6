"""Roll a pipeline run's task outcomes up into one status: FINISHED, PARTIAL or FAILED.

The rule (also in docs/pipeline.md):

- **FINISHED** — every unit of work (each task, each map index of a mapped task) ended successfully.
  Documents quarantined at ingest do not change this: they are reported as ``docs_failed`` and listed
  in the quarantine artifact.
- **PARTIAL** — every unit of the *publishing* task (``index``) succeeded, so the index was updated
  and searches see the new data, but some other unit failed, was killed or never ran (a failed
  batch, a failed evaluation…): part of what the run should have done is missing.
- **FAILED** — the publishing task did not succeed (or was skipped): nothing new reached the live index.

Reasons name each cause once: a task that failed, was killed or never ran gets its own line; the
tasks that did not run *because* of it (upstream failed, or the publishing task skipped behind it)
share one line after it.

A version the evaluation gate held back (built, measured, not promoted because its metrics fail the
thresholds or fall behind the live version) makes an otherwise FINISHED run **PARTIAL**: the build
is there, but the run did not achieve what it was for — a better live index — and the DAG run should
turn red so that someone looks. Asking for no promotion (``promote=False``) is not held back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ragtrail.trail.names import CHUNK_COUNT, DOCS_PARSED, EMBEDDING_COUNT, VECTOR_COUNT

FINISHED, PARTIAL, FAILED = "FINISHED", "PARTIAL", "FAILED"
# SKIPPED: a mapped task over an empty list (nothing changed) did all it had to do.
OK_STATES = {"FINISHED", "SUCCESS", "SKIPPED"}
# Summed over units; the rest of a child's metrics are reported per task.
SUMMED = ("docs_seen", DOCS_PARSED, "docs_failed", "bytes_in", "docs_added", "docs_updated", "docs_unchanged",
          "docs_deleted", CHUNK_COUNT, "total_tokens", "truncated_chunks", EMBEDDING_COUNT, "embeddings_skipped",
          "points_upserted", "vectors_added", "vectors_deleted")


@dataclass(frozen=True)
class Unit:
    """The outcome of one task (or one map index of a mapped task) in a pipeline run."""

    task_id: str
    map_index: int
    state: str  # FINISHED / FAILED / KILLED / RUNNING (MLflow) or an Airflow state, upper-cased
    metrics: dict = field(default_factory=dict)
    duration_s: float | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def ok(self) -> bool:
        return self.state.upper() in OK_STATES


@dataclass(frozen=True)
class Rollup:
    status: str
    reasons: list[str]
    metrics: dict[str, float]


def rollup_status(units: Iterable[Unit], publishing_tasks: Iterable[str] = ("index",),
                  held_back: str | None = None) -> Rollup:
    """Decide the run's status from its units (see the module docstring for the rule).

    ``held_back``: why the gate kept the built version from going live, if it did.

    Example::

        rollup_status([Unit("ingest", -1, "FINISHED"), Unit("index", -1, "FAILED")]).status  # "FAILED"
    """
    units = list(units)
    publishing = set(publishing_tasks)
    bad = [u for u in units if not u.ok]
    published = [u for u in units if u.task_id in publishing]
    consequence = [u for u in units if u.state.upper() == "UPSTREAM_FAILED"
                   or (u.task_id in publishing and u.state.upper() == "SKIPPED")]
    reasons = [f"{u.label}: {u.state.lower()}" + (f" ({u.error})" if u.error else "") for u in bad
               if u not in consequence]
    if consequence:
        reasons.append("not run because of the failure above: " + ", ".join(u.label for u in consequence))
    status, reasons = _status(units, bad, consequence, published, reasons)
    if held_back and status != FAILED:
        status = PARTIAL
        reasons.append(f"evaluate: not promoted ({held_back})")
    metrics = _summed_metrics(units)
    metrics["tasks_total"] = len(units)
    metrics["tasks_failed"] = len(bad)
    return Rollup(status=status, reasons=reasons, metrics=metrics)


def _status(units: list[Unit], bad: list[Unit], consequence: list[Unit], published: list[Unit],
            reasons: list[str]) -> tuple[str, list[str]]:
    """The status before the gate's verdict, and the reasons (extended by a never-run index)."""
    if not units:
        return FAILED, ["no task ran"]
    if not bad and not consequence:
        return FINISHED, reasons
    if published and all(u.ok and u.state.upper() != "SKIPPED" for u in published):
        return PARTIAL, reasons
    return FAILED, reasons if published else [*reasons, "index: never ran"]


def _summed_metrics(units: list[Unit]) -> dict[str, float]:
    """The successful units' counts summed (:data:`SUMMED`), and the largest ``vector_count``."""
    metrics: dict[str, float] = {}
    for u in units:
        if not u.ok:
            continue
        for key in SUMMED:
            if key in u.metrics:
                metrics[key] = metrics.get(key, 0.0) + float(u.metrics[key])
        if VECTOR_COUNT in u.metrics:  # points in the collection: a level, not a sum
            metrics[VECTOR_COUNT] = max(metrics.get(VECTOR_COUNT, 0.0), float(u.metrics[VECTOR_COUNT]))
    return metrics
