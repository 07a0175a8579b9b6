"""The roll-up's decision, as a pure function: what the run's tasks did → its status, reasons and summary.

``aggregate_status`` (:mod:`ragtrail_airflow.rag.aggregate`) reads (Airflow's task states, the tasks' XCom
results, the work store's plan, the MLflow child runs), calls :func:`decide` and writes (the parent run's
tags and metrics, the ``summary`` XCom). Nothing here imports Airflow or MLflow, or does I/O: every rule of
the roll-up is testable with plain dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ragtrail.trail import names as n
from ragtrail.trail.rollup import Rollup, Unit, rollup_status

QUALITY = (n.NDCG_AT_10, n.RECALL_AT_10, n.MRR_AT_10, n.LATENCY_P95_MS)
PLANNED = ("docs_added", "docs_updated", "docs_unchanged", "docs_deleted")


@dataclass(frozen=True)
class RunFacts:
    """What the roll-up read about one DAG run, as plain values.

    ``airflow_units``: ``{(task, map_index): Airflow state}``; ``results``: each task's XCom return value;
    ``units``: the units read from MLflow, ``None`` when tracking is off or MLflow could not be read (then
    Airflow's states decide); ``trail``: what the trail reading found (``None`` with tracking off).
    """

    product: str
    version: str
    dag_id: str
    run_id: str
    task_ids: list[str]
    airflow_units: dict[tuple[str, int], str]
    results: dict[str, Any] = field(default_factory=dict)
    planned: dict[str, Any] = field(default_factory=dict)
    publishing: tuple[str, ...] = ("index",)
    units: list[Unit] | None = None
    trail: dict[str, Any] | None = None
    duration_s: float | None = None
    mlflow: dict[str, Any] = field(default_factory=lambda: {"parent_run_id": None, "experiment_id": None,
                                                            "mlflow_url": None})


def airflow_units(states: dict[str, str], task_ids: list[str]) -> dict[tuple[str, int], str]:
    """Map Airflow's ``{"task" | "task_<map_index>": state}`` to ``{(task, map_index): state}``."""
    units: dict[tuple[str, int], str] = {}
    for key, state in states.items():
        if key in task_ids:
            units[(key, -1)] = state or "none"
            continue
        for tid in task_ids:
            m = re.fullmatch(re.escape(tid) + r"_(\d+)", key)
            if m:
                units[(tid, int(m.group(1)))] = state or "none"
    for tid in task_ids:  # a task Airflow reported nothing for never ran
        if not any(t == tid for t, _ in units):
            units[(tid, -1)] = "none"
    return units


def _total(result, key: str) -> int:
    """A count from a task's XCom: a dict, or a list of dicts for a mapped task."""
    if not result:
        return 0
    if isinstance(result, dict):
        return int(result.get(key, 0))
    return sum(int((r or {}).get(key, 0)) for r in result)


def units_from_airflow(airflow: dict[tuple[str, int], str], task_ids: list[str]) -> list[Unit]:
    """Units from Airflow's states alone, ordered as the DAG defines its tasks (reasons read from cause to
    consequence)."""
    ordered = sorted(airflow.items(), key=lambda kv: (task_ids.index(kv[0][0]), kv[0][1]))
    return [Unit(t, m, s.upper()) for (t, m), s in ordered]


def headline_metrics(units: list[Unit]) -> dict[str, float]:
    """Per-run figures worth trending that are not sums: embedding throughput and dimension."""
    ok = [u for u in units if u.ok]
    count = sum(u.metrics.get(n.EMBEDDING_COUNT, 0.0) for u in ok if "processing_time_seconds" in u.metrics)
    seconds = sum(u.metrics.get("processing_time_seconds", 0.0) for u in ok)
    out: dict[str, float] = {}
    if seconds > 0:
        out[n.EMBEDDINGS_PER_SECOND] = count / seconds
    dims = [u.metrics["embedding_dimension"] for u in ok if "embedding_dimension" in u.metrics]
    if dims:
        out["embedding_dimension"] = max(dims)
    return out


def quality_metrics(summary: dict) -> dict[str, float]:
    """The evaluation's headline on the parent run, where compare views and trends see it."""
    out = {k: float(v) for k, v in (summary.get("eval") or {}).items() if k in QUALITY and v is not None}
    live = summary.get("vs_live") or {}
    if live:
        out.update(ndcg_delta_vs_live=float(live["delta"]), ndcg_p_value_vs_live=float(live["p_value"]))
    for mode, values in (summary.get("modes") or {}).items():  # the comparison of retrieval modes
        out.update({n.mode_metric(k, mode): float(v) for k, v in values.items() if k in QUALITY and v is not None})
    if summary.get("gate") is not None:
        out["promoted_worse"] = float(bool(summary.get("promoted_worse")))
    return out


def held_back(results: dict) -> str | None:
    """Why the build did not go live: a person's answer on the approve task wins over the gate's verdict.
    A Reject is a decision, not a shortfall (the run is FINISHED, "not promoted, rejected by <user>"); no
    answer before the timeout is (PARTIAL: nobody looked)."""
    decision, approval = results.get("evaluate") or {}, results.get("approve") or {}
    if approval:
        return None if approval.get("outcome") in ("approved", "rejected") else f"{approval.get('outcome')} by {approval.get('by')}"
    return decision.get("reason") if decision.get("gate") == "rejected" else None


def promotion_outcome(decision: dict | None, approval: dict | None) -> str:
    """One line on whether the run's build went live and who decided (the parent run's ``ragtrail.promotion``)."""
    decision, approval = decision or {}, approval or {}
    if approval.get("approved"):
        return f"promoted, approved by {approval.get('by')}"
    if approval.get("outcome") == "rejected":
        return f"not promoted, rejected by {approval.get('by')}"
    if approval.get("outcome") == "timed_out":
        return "not promoted, no answer before the approval timeout (rejected by default)"
    if decision.get("awaiting_approval"):
        return "not promoted, awaiting approval"
    if decision.get("promoted"):
        return "promoted by the gate"
    return {"rejected": "not promoted, held back by the gate", "not_requested": "not promoted (promote is off)"}.get(
        decision.get("gate"), "not promoted" if decision else "-")


def decide(facts: RunFacts) -> tuple[Rollup, dict[str, Any]]:
    """The run's roll-up (status and reasons) and its summary (the ``summary`` XCom, ``rollup.json``)."""
    units = facts.units if facts.units is not None else units_from_airflow(facts.airflow_units, facts.task_ids)
    results = facts.results
    roll = rollup_status(units, facts.publishing, held_back=held_back(results))
    trail = {"complete": None, "missing_runs": [], "closed_runs": [], "error": None}
    if facts.trail is not None:
        trail.update(facts.trail)
        trail["complete"] = not (trail["missing_runs"] or trail["closed_runs"] or trail["error"])
    ingest, index = results.get("ingest"), results.get("index") or {}
    decision, approval = results.get("evaluate") or {}, results.get("approve") or {}
    summary: dict[str, Any] = {
        "product": facts.product, "version": facts.version, "dag_id": facts.dag_id, "run_id": facts.run_id,
        **facts.mlflow,
        "status": roll.status, "reasons": roll.reasons,
        "docs": _total(ingest, "docs"), "docs_failed": _total(ingest, "quarantined"),
        **{k: facts.planned.get(k, 0) for k in PLANNED},
        "chunks": _total(results.get("chunk"), "chunks"), "embeddings": _total(results.get("embed"), "embeddings"),
        "vectors": index.get("vectors", 0), "vectors_deleted": index.get("deleted", 0),
        "collection": index.get("collection"),
        "live_collection": approval.get("live") or decision.get("live", index.get("live")),
        "promoted": bool(decision.get("promoted") or approval.get("promoted")), "approval": approval.get("outcome"),
        "promotion": promotion_outcome(decision, approval),
        "gate": decision.get("gate"), "gate_reason": decision.get("reason"),
        "promoted_worse": bool(decision.get("promoted_worse")), "vs_live": decision.get("vs_live"),
        "eval": decision.get("metrics"), "modes": decision.get("modes"), "better_mode": decision.get("better_mode"),
        "retrieval_mode": decision.get("retrieval_mode"), "model_version": decision.get("model_version"),
        "duration_s": round(facts.duration_s, 3) if facts.duration_s is not None else None,
        "tasks": {u.label: u.state for u in units},
        "trail": trail,
    }
    return roll, summary


def parent_run_figures(roll: Rollup, units: list[Unit], summary: dict) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and tags the roll-up puts on the parent run besides its status and reasons."""
    warning = f"promoted although worse than live: {summary['gate_reason']}" if summary.get("promoted_worse") else "-"
    return ({**headline_metrics(units), **quality_metrics(summary)},
            {n.WARNINGS_TAG: warning, n.GATE_TAG: summary.get("gate") or "-",
             n.BETTER_MODE_TAG: summary.get("better_mode") or "-",
             n.PROMOTION_TAG: summary.get("promotion") or "-"})
