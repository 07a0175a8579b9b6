"""The canary: score the live index on the product's questions and say whether quality held.

It queries whatever the ``<product>`` alias points at now — the collection users search — and compares
nDCG@10 with a *baseline*: the nDCG@10 the last promoted build scored when the evaluation gate let it go
live (the caller reads it from the registry's ``production`` version). A drop by more than
``tolerance`` is a failed canary; so is a live alias that points at nothing. Nothing is changed.

Example::

    verdict = check_live(location=None, product="handbook", queries_path="q.jsonl",
                         baseline={"ndcg_at_10": 0.93, "collection": "handbook__v1"}, tolerance=0.05)
    verdict["ok"], verdict["reason"]
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.core.stage_names import CANARY_REASON_TAG, CANARY_TAG, LIVE_COLLECTION_TAG
from ragtrail.stages.evaluation import load_queries
from ragtrail.store import open_store


def judge(ndcg: float, baseline: float | None, tolerance: float) -> tuple[bool, str]:
    """``(ok, reason)`` for a live nDCG@10 against the baseline's.

    Example::

        judge(0.60, 0.90, 0.05)  # (False, "nDCG@10 0.6000 dropped 0.3000 below the last promoted build's 0.9000 …")
    """
    if baseline is None:
        return True, f"nDCG@10 {ndcg:.4f} (no promoted build to compare with)"
    drop = baseline - ndcg
    if drop > tolerance:
        return False, (f"nDCG@10 {ndcg:.4f} dropped {drop:.4f} below the last promoted build's {baseline:.4f} "
                       f"(tolerance {tolerance})")
    return True, f"nDCG@10 {ndcg:.4f} vs the last promoted build's {baseline:.4f} (tolerance {tolerance})"


def check_live(*, location, product: str, queries_path: str | Path | None, baseline: dict | None,
               tolerance: float = 0.05, recorder: Recorder | None = None) -> dict:
    """Evaluate the live collection of ``product``; return ``{"ok", "reason", "live", "metrics", "baseline"}``.

    ``baseline``: ``{"ndcg_at_10", "collection", "version"}`` of the last promoted build, or ``None``.
    """
    from ragtrail.stages.evaluation import evaluate_collection

    rec = recorder or Recorder()
    base_ndcg = (baseline or {}).get("ndcg_at_10")
    rec.param(eval_queries=str(queries_path or ""), tolerance=tolerance,
              baseline_collection=(baseline or {}).get("collection") or "-")
    if not queries_path:
        return _verdict(rec, False, f"{product} has no query set: the canary cannot score it", None, {}, baseline)
    with open_store(location) as store:
        live = store.alias_target(product)
        if not live or not store.exists(live):
            return _verdict(rec, False, f"the alias {product} points at no collection", live, {}, baseline)
        metrics, rows = evaluate_collection(store, live, load_queries(queries_path))
    ok, reason = judge(metrics["ndcg_at_10"], base_ndcg, tolerance)
    rec.metric(**metrics)
    if base_ndcg is not None:
        rec.metric(baseline_ndcg_at_10=base_ndcg, ndcg_drop_vs_baseline=base_ndcg - metrics["ndcg_at_10"])
    rec.table("canary/per_query.json", rows)
    return _verdict(rec, ok, reason, live, metrics, baseline)


def _verdict(rec: Recorder, ok: bool, reason: str, live: str | None, metrics: dict, baseline: dict | None) -> dict:
    rec.metric(canary_ok=int(ok))
    rec.tag(**{CANARY_TAG: "ok" if ok else "failed", CANARY_REASON_TAG: reason,
               LIVE_COLLECTION_TAG: live or "-"})
    return {"ok": ok, "reason": reason, "live": live, "metrics": metrics, "baseline": baseline}
