"""Stage 7 — evaluate and gate: measure the newly built version, then decide whether it goes live.

The index stage only builds ``<product>__<version>``; this stage queries that collection by name (not
the alias), compares it with the live version on the same questions, and moves the alias only when
the new version passes ``min_ndcg`` and is not worse than the live one: a drop in nDCG@10 larger
than ``tolerance`` is rejected, and so is any drop that a paired permutation test over the per-query
nDCG@10 finds significant (one-sided, p < ``ALPHA``). A smaller, not significant drop still goes live,
but is marked (``worse_than_live``) so nobody misses it. Without a query set nothing is measured and
the alias moves as requested (no gate).

The version is judged in its configured retrieval mode (``retrieval_mode`` / ``fusion`` of its run spec), and
also measured in each other mode on the same questions (``ndcg_at_10.dense``, ``ndcg_at_10.sparse``,
``ndcg_at_10.hybrid``, … and the table ``eval/modes.json``). When another mode beats the configured one by
more than ``tolerance`` on nDCG@10, the reason says so and ``ragtrail.better_mode`` names it; the configured
mode is never changed here (a new run spec changes it).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.core.stage_names import (
    BETTER_MODE_TAG,
    GATE_REASON_TAG,
    GATE_TAG,
    LIVE_COLLECTION_TAG,
    VS_LIVE_TAG,
    mode_metric,
)
from ragtrail.stages.evaluation import load_queries
from ragtrail.store import collection_name, open_store, put_live

PASSED, REJECTED, SKIPPED, NOT_REQUESTED = "passed", "rejected", "skipped", "not_requested"
ALPHA = 0.05  # a drop this unlikely under "no difference" is a real drop
_EXACT_UP_TO = 16  # sign flips enumerated exactly up to this many non-zero differences


def paired_permutation_p(new: list[float], old: list[float], resamples: int = 20000, seed: int = 0) -> float:
    """One-sided p-value that ``new`` scores below ``old`` by chance: a sign-flip (paired permutation)
    test on the per-query differences. Exact for up to 16 differing queries, else Monte Carlo (seeded).

    Example::

        paired_permutation_p([0.5] * 10, [1.0] * 10)  # 0.00098 (= 1 / 2**10): every query got worse
    """
    diffs = [a - b for a, b in zip(new, old, strict=True) if a != b]
    if not diffs:
        return 1.0
    observed = sum(diffs) + 1e-12  # ties (and the observed sign pattern itself) count as "as extreme"
    if len(diffs) <= _EXACT_UP_TO:
        sums = (sum(d if keep else -d for d, keep in zip(diffs, signs, strict=True))
                for signs in itertools.product((True, False), repeat=len(diffs)))
        return sum(1 for total in sums if total <= observed) / 2 ** len(diffs)
    rng = random.Random(seed)
    hits = sum(1 for _ in range(resamples) if sum(d if rng.random() < 0.5 else -d for d in diffs) <= observed)
    return (hits + 1) / (resamples + 1)


def compare_with_live(rows: list[dict], live_rows: list[dict]) -> dict:
    """Per-query nDCG@10 of the new and the live version, paired by query id (judged queries only):
    ``{"delta", "p_value", "queries", "better", "worse"}`` (the queries that moved, largest first)."""
    live = {r["query_id"]: r["ndcg_at_10"] for r in live_rows if r.get("relevant") not in (None, "{}", "[]", "")}
    judged = [r for r in rows if r["query_id"] in live]
    pairs = [(r["ndcg_at_10"], live[r["query_id"]]) for r in judged]
    if not pairs:
        return {"delta": 0.0, "p_value": 1.0, "queries": 0, "better": [], "worse": []}
    new, old = [a for a, _ in pairs], [b for _, b in pairs]
    moves = sorted(({"query_id": r["query_id"], "delta": round(a - b, 4)} for r, (a, b) in zip(judged, pairs, strict=True)
                    if a != b), key=lambda m: -abs(m["delta"]))
    return {"delta": (sum(new) - sum(old)) / len(pairs), "p_value": paired_permutation_p(new, old),
            "queries": len(pairs), "better": [m for m in moves if m["delta"] > 0][:20],
            "worse": [m for m in moves if m["delta"] < 0][:20]}


def gate(metrics: dict, live_metrics: dict | None, *, min_ndcg: float = 0.0, tolerance: float = 0.02,
         live_name: str = "live", p_value: float | None = None, already_live: bool = False) -> tuple[bool, str]:
    """Decide on the metrics; return ``(passes, reason)``. ``already_live``: the version measured is the live
    one (a re-index of it), named ``live_name``; there is nothing else to compare it with.

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
    if live_metrics is not None and ndcg < live_metrics["ndcg_at_10"] and p_value is not None and p_value < ALPHA:
        return False, (f"nDCG@10 {ndcg:.4f} is significantly worse than {live_name}'s "
                       f"{live_metrics['ndcg_at_10']:.4f} (paired permutation test p={p_value:.3f} < {ALPHA})")
    if live_metrics is not None and ndcg < live_metrics["ndcg_at_10"]:
        return True, (f"WORSE than live {live_name}: nDCG@10 {ndcg:.4f} vs {live_metrics['ndcg_at_10']:.4f}, "
                      f"within the tolerance {tolerance}" + (f", not significant (p={p_value:.3f})"
                                                             if p_value is not None else ""))
    if live_metrics is not None:
        return True, f"nDCG@10 {ndcg:.4f} (live {live_name}: {live_metrics['ndcg_at_10']:.4f}, min {min_ndcg})"
    if already_live:
        return True, f"nDCG@10 {ndcg:.4f} (re-index of the live version {live_name}, min {min_ndcg})"
    return True, f"nDCG@10 {ndcg:.4f} (no live version, min {min_ndcg})"


def better_mode_note(by_mode: dict, configured: str | None, better: str | None, tolerance: float) -> str:
    """The line the gate's reason gets when another mode beats the configured one ("" when none does)."""
    if not better:
        return ""
    new, own = by_mode[better]["ndcg_at_10"], by_mode[configured]["ndcg_at_10"]
    return (f"; {better} mode beats the configured {configured} mode by {new - own:+.4f} nDCG@10 ({new:.4f} vs "
            f"{own:.4f}, tolerance {tolerance}): set retrieval_mode: {better} in the run spec to use it")


def record_modes(rec: Recorder, by_mode: dict, configured: str | None, fusion: str | None,
                 sparse_weight: float | None = None) -> None:
    """The comparison of retrieval modes on the evaluate run: ``<metric>.<mode>`` metrics and ``eval/modes.json``
    (the hybrid row names its fusion and the BM25 side's weight)."""
    for mode, values in by_mode.items():
        rec.metric(**{mode_metric(k, mode): v for k, v in values.items()})
    if by_mode:
        rec.table("eval/modes.json", [{"mode": mode, "fusion": fusion if mode == "hybrid" else "-",
                                       "sparse_weight": sparse_weight if mode == "hybrid" else None,
                                       "configured": mode == configured, **values} for mode, values in by_mode.items()])


def evaluate_and_promote(
    *,
    location,
    product: str,
    version: str,
    queries_path: str | Path | None,
    promote: bool = True,
    min_ndcg: float = 0.0,
    tolerance: float = 0.02,
    keep_versions: int = 2,
    recorder: Recorder | None = None,
    hold: bool = False,
) -> dict:
    """Evaluate the version's collection, apply the gate, move the alias (or not), prune old versions.

    ``hold``: gate as usual but leave the alias where it is — a person decides (approval ``always``); the
    verdict and its reason are the gate's own, ``promoted`` is false.

    Each collection is queried with its own embedder and backend (from its metadata), as searches are.
    ``location``: anything :func:`ragtrail.store.resolve_store` accepts.

    Returns:
        ``{"collection", "live", "promoted", "gate", "reason", "metrics", "live_metrics", "rows", "modes",
        "better_mode", …}`` (``modes``: :func:`ragtrail.stages.evaluation.evaluate_modes`);
        ``gate`` is passed / rejected / skipped (no query set) / not_requested (``promote`` off).
    """
    from ragtrail.stages.evaluation import better_mode, evaluate_collection, evaluate_modes
    from ragtrail.stages.search import resolve_mode, resolve_sparse_weight

    rec = recorder or Recorder()
    name = collection_name(product, version)
    queries = load_queries(queries_path) if queries_path else None
    rec.param(collection=name, eval_queries=str(queries_path or ""), min_ndcg=min_ndcg, tolerance=tolerance,
              promote=promote, keep_versions=keep_versions)
    metrics = live_metrics = None
    rows: list[dict] = []
    versus: dict = {}
    by_mode: dict = {}
    own_mode = own_fusion = own_weight = better = None
    with open_store(location) as store:
        if not store.exists(name):
            raise RuntimeError(f"{name} was not built: nothing to evaluate")
        live_before = store.alias_target(product)
        if queries:
            metrics, rows = evaluate_collection(store, name, queries)
            own_mode, own_fusion = resolve_mode(store, name)
            own_weight = resolve_sparse_weight(store, name)
            by_mode = evaluate_modes(store, name, queries, configured=metrics)
            better = better_mode(by_mode, own_mode, tolerance)
            if live_before and live_before != name:
                live_metrics, live_rows = evaluate_collection(store, live_before, queries)
                versus = compare_with_live(rows, live_rows)
            passes, reason = gate(metrics, live_metrics, min_ndcg=min_ndcg, tolerance=tolerance,
                                  live_name=live_before or "live", p_value=versus.get("p_value"),
                                  already_live=live_before == name)
            verdict = PASSED if passes else REJECTED
            reason += better_mode_note(by_mode, own_mode, better, tolerance)
        else:
            passes, verdict, reason = True, SKIPPED, "no query set: not evaluated, no gate"
        if not promote:
            verdict, reason = (NOT_REQUESTED if verdict != REJECTED else verdict), f"promote is off; {reason}"
        promoted = promote and passes and not hold
        dropped: list[str] = []
        if promoted:  # the store's half of going live; the registry's follows at registration
            dropped = put_live(store, product, name, keep_versions)
        live = store.alias_target(product)
    worse = bool(metrics and live_metrics and metrics["ndcg_at_10"] < live_metrics["ndcg_at_10"])
    if metrics:
        rec.metric(**metrics)
        rec.metric(**{f"live_{k}": v for k, v in (live_metrics or {}).items()})
        if versus:
            rec.metric(ndcg_delta_vs_live=versus["delta"], ndcg_p_value_vs_live=versus["p_value"])
        rec.table("eval/per_query.json", rows)
        record_modes(rec, by_mode, own_mode, own_fusion, own_weight)
    rec.metric(promoted=int(promoted), versions_pruned=len(dropped), promoted_worse=int(promoted and worse))
    rec.tag(**{GATE_TAG: verdict, GATE_REASON_TAG: reason, LIVE_COLLECTION_TAG: live or "-",
               VS_LIVE_TAG: ("worse" if worse else "not worse") if live_metrics else "-",
               BETTER_MODE_TAG: better or "-"})
    return {"collection": name, "live": live, "promoted": promoted, "gate": verdict, "reason": reason,
            "metrics": metrics, "live_metrics": live_metrics, "rows": len(rows),
            "worse_than_live": worse, "promoted_worse": promoted and worse, "vs_live": versus or None,
            "pruned": dropped, "retrieval_mode": own_mode, "fusion": own_fusion,
            "sparse_weight": own_weight, "modes": by_mode or None,
            "better_mode": better}
