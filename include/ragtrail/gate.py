"""Stage 7 — evaluate and gate: measure the newly built version, then decide whether it goes live.

The index stage only builds ``<product>__<version>``; this stage queries that collection by name (not
the alias), compares it with the live version on the same questions, and moves the alias only when
the new version passes ``min_ndcg`` and is not worse than the live one by more than ``tolerance``
(nDCG@10). Without a query set nothing is measured and the alias moves as requested (no gate).
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.evaluation import load_queries
from ragtrail.indexing import alias_target, collection_name, open_qdrant, point_alias, prune_versions
from ragtrail.recorder import Recorder

PASSED, REJECTED, SKIPPED, NOT_REQUESTED = "passed", "rejected", "skipped", "not_requested"


def gate(metrics: dict, live_metrics: dict | None, *, min_ndcg: float = 0.0, tolerance: float = 0.02,
         live_name: str = "live") -> tuple[bool, str]:
    """Decide on the metrics; return ``(passes, reason)``.

    Example::

        gate({"ndcg_at_10": 0.4}, {"ndcg_at_10": 0.7}, tolerance=0.05)
        # (False, "nDCG@10 0.4000 is worse than live's 0.7000 by more than the tolerance 0.05")
    """
    ndcg = metrics["ndcg_at_10"]
    if ndcg < min_ndcg:
        return False, f"nDCG@10 {ndcg:.4f} is below min_ndcg {min_ndcg}"
    if live_metrics is not None and ndcg < live_metrics["ndcg_at_10"] - tolerance:
        return False, (f"nDCG@10 {ndcg:.4f} is worse than {live_name}'s {live_metrics['ndcg_at_10']:.4f} "
                       f"by more than the tolerance {tolerance}")
    if live_metrics is not None:
        return True, f"nDCG@10 {ndcg:.4f} (live {live_name}: {live_metrics['ndcg_at_10']:.4f}, min {min_ndcg})"
    return True, f"nDCG@10 {ndcg:.4f} (no live version, min {min_ndcg})"


def evaluate_and_promote(
    *,
    location: str | Path,
    product: str,
    version: str,
    embedder: str,
    queries_path: str | Path | None,
    promote: bool = True,
    min_ndcg: float = 0.0,
    tolerance: float = 0.02,
    keep_versions: int = 2,
    recorder: Recorder | None = None,
) -> dict:
    """Evaluate the version's collection, apply the gate, move the alias (or not), prune old versions.

    Returns:
        ``{"collection", "live", "promoted", "gate", "reason", "metrics", "live_metrics", "rows"}``;
        ``gate`` is passed / rejected / skipped (no query set) / not_requested (``promote`` off).
    """
    from ragtrail.evaluation import evaluate_collection

    rec = recorder or Recorder()
    name = collection_name(product, version)
    queries = load_queries(queries_path) if queries_path else None
    rec.param(collection=name, eval_queries=str(queries_path or ""), min_ndcg=min_ndcg, tolerance=tolerance,
              promote=promote, keep_versions=keep_versions)
    metrics = live_metrics = None
    rows: list[dict] = []
    with open_qdrant(location) as client:
        if not client.collection_exists(name):
            raise RuntimeError(f"{name} was not built: nothing to evaluate")
        live_before = alias_target(client, product)
        if queries:
            backend = (client.get_collection(name).config.metadata or {}).get("embed_backend") or "torch"
            metrics, rows = evaluate_collection(client, name, queries, embedder, backend=backend)
            if live_before and live_before != name:
                live_meta = client.get_collection(live_before).config.metadata or {}
                live_metrics, _ = evaluate_collection(client, live_before, queries, live_meta.get("embedder", embedder),
                                                      backend=live_meta.get("embed_backend") or "torch")
            passes, reason = gate(metrics, live_metrics, min_ndcg=min_ndcg, tolerance=tolerance,
                                  live_name=live_before or "live")
            verdict = PASSED if passes else REJECTED
        else:
            passes, verdict, reason = True, SKIPPED, "no query set: not evaluated, no gate"
        if not promote:
            verdict, reason = (NOT_REQUESTED if verdict != REJECTED else verdict), f"promote is off; {reason}"
        promoted = promote and passes
        dropped: list[str] = []
        if promoted:
            point_alias(client, product, name)
            dropped = prune_versions(client, product, keep_versions)
        live = alias_target(client, product)
    if metrics:
        rec.metric(**metrics)
        rec.metric(**{f"live_{k}": v for k, v in (live_metrics or {}).items()})
        rec.table("eval/per_query.json", rows)
    rec.metric(promoted=int(promoted), versions_pruned=len(dropped))
    rec.tag(**{"ragtrail.gate": verdict, "ragtrail.gate_reason": reason, "ragtrail.live_collection": live or "-"})
    return {"collection": name, "live": live, "promoted": promoted, "gate": verdict, "reason": reason,
            "metrics": metrics, "live_metrics": live_metrics, "rows": len(rows)}
