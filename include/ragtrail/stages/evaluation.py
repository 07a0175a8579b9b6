"""Stage 6 — evaluate: measure a collection on a product's own questions (document-level IR metrics).

A query set is a JSON lines file, one question per line::

    {"id": "q01", "text": "How do retries work?", "relevant": ["airflow/retries.md"]}
    {"id": "q02", "text": "…", "relevant": {"a.md": 2, "b.md": 1}}   # graded relevance

Chunk hits are folded into documents first (a document's score is its best chunk's), then each query
is scored on the top 10 documents: nDCG@10 (linear gain = grade, log2 discount), recall@1/5/10,
MRR@10 and hit-rate@10; the run's metrics are the means over the judged queries, plus the p50/p95
latency of one search (embed + query) in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from ragtrail.core.settings import SAMPLE_CORPUS
from ragtrail.core.stage_names import EVAL_METRICS, MODE_METRICS

SAMPLE_QUERIES = SAMPLE_CORPUS.parent / "sample_corpus_queries.jsonl"
K = 10
CHUNKS_PER_QUERY = 50  # chunk hits fetched per query, so that 10 distinct documents remain after folding
METRICS = EVAL_METRICS


def load_queries(path: str | Path) -> list[dict]:
    """Read a query set; ``relevant`` becomes ``{doc_id: grade}`` (a list means grade 1 each).

    Raises ``ValueError`` naming the line for a malformed entry.
    """
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rel = row.get("relevant") or {}
            grades = {str(d): 1.0 for d in rel} if isinstance(rel, list) else {str(d): float(g) for d, g in rel.items()}
            out.append({"id": str(row["id"]), "text": str(row["text"]), "relevant": grades})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}:{n}: not a query ({{id, text, relevant}}): {err}") from err
    ids = [q["id"] for q in out]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: query ids are not unique")
    return out


def resolve_query_file(source: str, eval_queries: str = "") -> Path | None:
    """The query set for a run: the given file, else the bundled one for the bundled sample corpus."""
    if eval_queries:
        return Path(eval_queries).expanduser()
    src = source[len("file://"):] if source.startswith("file://") else source
    # realpath: Path.resolve() raises on a symlink loop (Python 3.11), and a source may be one.
    if "://" not in src and os.path.realpath(Path(src).expanduser()) == os.path.realpath(SAMPLE_CORPUS):
        return SAMPLE_QUERIES
    return None


def documents_from_chunks(hits: list[dict], k: int = K) -> list[tuple[str, float]]:
    """Fold chunk hits into documents (score = best chunk), best first, at most ``k``.

    Example::

        documents_from_chunks([{"doc_id": "a", "score": .5}, {"doc_id": "b", "score": .7},
                               {"doc_id": "a", "score": .9}])  # [("a", .9), ("b", .7)]
    """
    best: dict[str, float] = {}
    for h in hits:
        if h["score"] > best.get(h["doc_id"], -math.inf):
            best[h["doc_id"]] = h["score"]
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def score_query(ranked: list[str], relevant: dict[str, float], k: int = K) -> dict[str, float]:
    """IR metrics of one ranked list of document ids against graded relevance.

    Example::

        score_query(["x", "a"], {"a": 1})["mrr_at_10"]  # 0.5
    """
    top = ranked[:k]
    judged = {d: g for d, g in relevant.items() if g > 0}
    dcg = sum(judged.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sorted(judged.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i + 1 for i, d in enumerate(top) if d in judged), None)

    def recall(n: int) -> float:
        return len(set(top[:n]) & set(judged)) / len(judged) if judged else 0.0

    return {"ndcg_at_10": dcg / idcg if idcg else 0.0, "recall_at_1": recall(1), "recall_at_5": recall(5),
            "recall_at_10": recall(10), "mrr_at_10": 1.0 / first if first else 0.0,
            "hit_rate": 1.0 if first else 0.0}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in 0..100."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _means(rows: list[dict]) -> dict[str, float]:
    """Each of :data:`METRICS` averaged over the judged rows (those with relevant documents)."""
    judged = [r for r in rows if r["relevant"]]
    return {m: sum(r[m] for r in judged) / len(judged) if judged else 0.0 for m in METRICS}


def score_rankings(rankings: list[list[str]], queries: list[dict], k: int = K) -> dict[str, float]:
    """Mean metrics of one ranked list of document ids per query (judged queries only), as a run reports
    them: what the benchmarks score the bare encoders and the LangChain peer with.

    Example::

        score_rankings([["a", "x"], ["x", "b"]], [{"relevant": {"a": 1}}, {"relevant": {"b": 1}}])["mrr_at_10"]  # 0.75
    """
    return _means([{**score_query(ranked, q["relevant"], k), "relevant": q["relevant"]}
                   for ranked, q in zip(rankings, queries, strict=True)])


def summarize(rows: list[dict]) -> dict[str, float]:
    """The run's metrics from the per-query table: means of the judged queries, latency percentiles."""
    judged = [r for r in rows if r["relevant"]]
    out = _means(rows)
    latencies = [r["latency_ms"] for r in rows]
    out.update(queries=len(rows), queries_judged=len(judged),
               latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95))
    return out


def evaluate_collection(store, collection: str, queries: list[dict],
                        chunks_per_query: int = CHUNKS_PER_QUERY, show_progress: bool = True,
                        mode: str | None = None, fusion: str | None = None,
                        sparse_weight: float | None = None) -> tuple[dict, list[dict]]:
    """Run every query against ``collection`` (a name or alias) on an open store.

    Questions go through :func:`ragtrail.stages.search.search_collection` — the collection's own embedder,
    backend and retrieval mode (``mode`` / ``fusion`` / ``sparse_weight`` override it), exactly as a user's
    search does.

    Returns:
        ``(metrics, per_query_rows)``; each row has the query, its relevant and retrieved documents,
        its metrics and ``latency_ms`` (embedding the question plus the vector search).
    """
    from ragtrail.core.progress import Progress
    from ragtrail.stages.search import query_embedder, resolve_mode, search_collection

    embed = query_embedder(store, collection)
    mode, fusion = resolve_mode(store, collection, mode, fusion)
    embed(["warm-up"])  # the first call loads the model; keep it out of the latencies
    rows = []
    progress = Progress("evaluate", len(queries), "queries") if show_progress else None
    for q in queries:
        t0 = time.perf_counter()
        hits = search_collection(store, collection, [q["text"]], chunks_per_query, mode=mode, fusion=fusion,
                                 sparse_weight=sparse_weight, fields=["doc_id"], embed=embed)[0]
        latency = (time.perf_counter() - t0) * 1000
        docs = documents_from_chunks([{"doc_id": h.payload.get("doc_id"), "score": h.score} for h in hits])
        ranked = [d for d, _ in docs]
        rows.append({"query_id": q["id"], "text": q["text"], "relevant": json.dumps(q["relevant"], sort_keys=True),
                     "retrieved": json.dumps(ranked), **score_query(ranked, q["relevant"]),
                     "latency_ms": latency})
        if progress:
            progress.update(1)
    if progress:
        progress.finish()
    return summarize([{**r, "relevant": json.loads(r["relevant"])} for r in rows]), rows


def evaluate_modes(store, collection: str, queries: list[dict], configured: dict | None = None) -> dict[str, dict]:
    """The collection measured in each retrieval mode — ``dense``, ``sparse`` and ``hybrid`` (in the version's
    own fusion) — on the same questions: ``{mode: {ndcg_at_10, recall_at_10, mrr_at_10, latency_p95_ms}}``.

    ``configured``: the metrics already measured in the version's own mode (reused, not measured again).
    A version without sparse vectors answers in dense mode only: ``{}`` (nothing to compare).
    """
    from ragtrail.stages.search import resolve_mode, sparse_ready

    if not sparse_ready(store, collection):
        return {}
    own, fusion = resolve_mode(store, collection)
    out = {}
    for mode in ("dense", "sparse", "hybrid"):
        metrics = configured if (configured is not None and mode == own) else evaluate_collection(
            store, collection, queries, show_progress=False, mode=mode, fusion=fusion)[0]
        out[mode] = {m: metrics[m] for m in MODE_METRICS}
    return out


def better_mode(by_mode: dict[str, dict], configured: str, tolerance: float) -> str | None:
    """The mode whose nDCG@10 beats the ``configured`` one's by more than ``tolerance`` (the best such), or ``None``.

    Example::

        better_mode({"dense": {"ndcg_at_10": .5}, "sparse": {"ndcg_at_10": .9}}, "dense", .02)  # "sparse"
    """
    if configured not in by_mode:
        return None
    base = by_mode[configured]["ndcg_at_10"]
    ahead = [(m["ndcg_at_10"], mode) for mode, m in by_mode.items() if m["ndcg_at_10"] > base + tolerance]
    return max(ahead)[1] if ahead else None
