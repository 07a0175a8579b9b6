"""Fusion variants of hybrid retrieval, measured on cached candidates: which dense + BM25 fusion beats dense.

Per corpus (the sample corpus, the FAQ set of :mod:`faqs`, the PostgreSQL manual of :mod:`pgdocs`): chunk as
:mod:`hybrid` does, load its cached embeddings (``.data/bench/hybrid/<corpus>-<chunks>.npz``; embedded once by
``bench/hybrid.py``), build a Qdrant Edge version with BM25 vectors and fetch, per question, the dense and the
sparse candidates with their scores (``--depth`` chunks each, the store's own queries). Every fusion variant is
then computed client-side from those lists — no re-embedding — and scored as the gate scores a run (50 chunks,
documents ranked by their best chunk; MRR@10, nDCG@10, recall@10). A BM25 variant (``k1``, ``b``, ``avg_len``)
re-encodes the chunks and rebuilds only the store.

Sanity check: the client-side ``dbsf`` and ``rrf`` at depth 100 reproduce the store's own fused queries
(``store-dbsf`` / ``store-rrf``, measured through :func:`ragtrail.stages.evaluation.evaluate_collection`).

Usage::

    python bench/hybrid_fusion.py [--corpora sample,faqs,pgdocs] [--out bench/results/hybrid_fusion.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
CHUNKS = 50  # what the evaluation asks for per question


def corpus_of(name: str) -> tuple[Path, Path]:
    from ragtrail.core.settings import SAMPLE_CORPUS

    if name == "sample":
        return SAMPLE_CORPUS, REPO / "include" / "sample_corpus_queries.jsonl"
    if name == "faqs":
        import faqs

        corpus, questions, _ = faqs.prepare(REPO / ".data" / "bench" / "faqs")
        return corpus, questions
    import pgdocs

    corpus, questions, _ = pgdocs.prepare(REPO / ".data" / "bench" / "pgdocs", 150)
    return corpus, questions


# -- fusion (client-side, from each side's candidates: [(chunk, score)] best first) ----------------------------
def dbsf_norm(scores):
    """Qdrant's DBSF normalisation (``distr_norm``): (s − (μ − 3σ)) / 6σ over the list, σ the sample standard
    deviation, not clipped; one score: 0.5."""
    import numpy as np

    if len(scores) < 2:
        return np.full_like(scores, 0.5)
    mu, sd = scores.mean(), scores.std(ddof=1)
    if sd == 0:
        return np.full_like(scores, 0.5)
    return (scores - (mu - 3 * sd)) / (6 * sd)


def minmax_norm(scores):
    import numpy as np

    if len(scores) == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)


def fuse(dense: list, sparse: list, how: str, w: float, depth: int, rrf_k: int = 60) -> list[tuple[int, float]]:
    """Chunks by fused score: ``w`` is the sparse side's weight, the dense side's ``1 − w`` for score fusions
    (``dbsf``, ``minmax``) and 1 for ``rrf`` (weights [1, w], Qdrant's weighted RRF)."""
    import numpy as np

    d, s = dense[:depth], sparse[:depth]
    out: dict[int, float] = {}
    if how == "rrf":
        for side, weight in ((d, 1.0), (s, w)):
            for rank, (cid, _) in enumerate(side):
                out[cid] = out.get(cid, 0.0) + weight / (rrf_k + rank + 1)
    else:
        norm = dbsf_norm if how == "dbsf" else minmax_norm
        for side, weight in ((d, 1.0 - w), (s, w)):
            if not side:
                continue
            ns = norm(np.array([x for _, x in side], dtype=float))
            for (cid, _), x in zip(side, ns, strict=True):
                out[cid] = out.get(cid, 0.0) + weight * float(x)
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def docs_of(chunks: list[tuple[int, float]], owners: list[str], n: int = CHUNKS) -> list[str]:
    best: dict[str, float] = {}
    for cid, score in chunks[:n]:
        best[owners[cid]] = max(best.get(owners[cid], -1e18), score)
    return [d for d, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]


def doc_level(side: list, owners: list[str]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for cid, score in side:
        if score > best.get(owners[cid], -1e18):
            best[owners[cid]] = score
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


def score(rankings, queries) -> dict:
    from ragtrail.stages.evaluation import score_rankings

    m = score_rankings(rankings, queries)
    return {k: round(m[k], 4) for k in ("mrr_at_10", "ndcg_at_10", "recall_at_10")}


def candidates(corpus: Path, questions: Path, bm25: dict, depth: int, store_check: bool) -> dict:
    """Build the Edge version (BM25 config ``bm25``) and fetch every question's dense and sparse candidates."""
    import hybrid
    import numpy as np

    from ragtrail.core.settings import DEFAULT_EMBED_BACKEND, DEFAULT_EMBEDDER
    from ragtrail.stages.evaluation import evaluate_collection, load_queries
    from ragtrail.stages.search import query_embedder
    from ragtrail.store import Point, StoreSettings, open_store
    from ragtrail.store.base import SearchQuery
    from ragtrail.store.sparse import CONFIG, encoder

    texts, owners = hybrid.chunk_corpus(corpus)
    cache = REPO / ".data" / "bench" / "hybrid" / f"{corpus.name}-{len(texts)}.npz"
    vectors = np.load(cache)["vectors"]
    config = {**CONFIG, **bm25}
    enc = encoder(config)
    sparse = enc.documents(texts)
    queries = load_queries(questions)
    meta = {"embedder": DEFAULT_EMBEDDER, "embed_backend": DEFAULT_EMBED_BACKEND, "sparse": config,
            "retrieval_mode": "hybrid", "fusion": "dbsf"}
    out = {"owners": owners, "queries": queries, "chunks": len(texts)}
    with tempfile.TemporaryDirectory() as tmp, open_store(StoreSettings(path=tmp, kind="edge")) as store:
        store.create("v", int(vectors.shape[1]), meta)
        store.upsert("v", [Point(id=i, vector=vectors[i].tolist(), sparse=sparse[i], payload={"doc_id": owners[i]})
                           for i in range(len(texts))])
        store.finish("v")
        qtexts = [q["text"] for q in queries]
        qd = query_embedder(store, "v")(qtexts)
        qs = enc.queries(qtexts)
        dq = [SearchQuery(dense=qd[i].tolist(), mode="dense") for i in range(len(qtexts))]
        out["dense"] = [[(int(h.id), h.score) for h in hits] for hits in store.query_batch("v", dq, depth, False)]
        sq = [SearchQuery(dense=None, sparse=qs[i], mode="sparse") for i in range(len(qtexts)) if qs[i].indices]
        sh = iter(store.query_batch("v", sq, depth, False))
        out["sparse"] = [[(int(h.id), h.score) for h in next(sh)] if qs[i].indices else [] for i in range(len(qtexts))]
        if store_check:
            for fusion in ("rrf", "dbsf"):
                m, _ = evaluate_collection(store, "v", queries, show_progress=False, mode="hybrid", fusion=fusion)
                out[f"store-{fusion}"] = {k: round(m[k], 4) for k in ("mrr_at_10", "ndcg_at_10", "recall_at_10")}
    return out


def variants(c: dict) -> dict:
    owners, queries = c["owners"], c["queries"]
    res = {}
    res["dense"] = score([docs_of(d, owners) for d in c["dense"]], queries)
    res["sparse"] = score([docs_of(s, owners) for s in c["sparse"]], queries)
    for how in ("dbsf", "rrf", "minmax"):
        weights = (0.5, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4) if how != "rrf" else (1.0, 0.2, 0.3, 0.5, 0.7)
        for w in weights:
            for depth in (50, 100, 200):
                key = f"{how}-w{w}-d{depth}"
                res[key] = score([docs_of(fuse(d, s, how, w, depth), owners)
                                  for d, s in zip(c["dense"], c["sparse"], strict=True)], queries)
    # document-level: each side's documents by best chunk (all candidates), then fused
    for how in ("dbsf", "rrf", "minmax"):
        for w in ((0.5, 0.3, 0.2) if how != "rrf" else (1.0, 0.5, 0.3)):
            rank = []
            for d, s in zip(c["dense"], c["sparse"], strict=True):
                dd, ss = doc_level(d[:100], owners), doc_level(s[:100], owners)
                ids = {x: i for i, x in enumerate(sorted({o for o, _ in dd + ss}))}
                inv = {i: x for x, i in ids.items()}
                fused = fuse([(ids[o], v) for o, v in dd], [(ids[o], v) for o, v in ss], how, w, 10_000)
                rank.append([inv[i] for i, _ in fused[:10]])
            res[f"doc-{how}-w{w}"] = score(rank, queries)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default="sample,faqs,pgdocs")
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--bm25", default="", help="JSON list of BM25 configs to try besides the default, e.g. "
                    "'[{\"k1\": 0.9, \"b\": 0.4}]'")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    for name in args.corpora.split(","):
        corpus, questions = corpus_of(name)
        c = candidates(corpus, questions, {}, args.depth, store_check=True)
        res = {"chunks": c["chunks"], "queries": len(c["queries"]), "store-rrf": c["store-rrf"],
               "store-dbsf": c["store-dbsf"], "variants": variants(c)}
        for extra in json.loads(args.bm25 or "[]"):
            ce = candidates(corpus, questions, extra, args.depth, store_check=False)
            v = variants(ce)
            res[f"bm25 {json.dumps(extra, sort_keys=True)}"] = {k: v[k] for k in v if k == "sparse" or k.startswith(
                ("dbsf-", "rrf-", "minmax-")) and k.endswith("-d100")}
        out[name] = res
        best = sorted(res["variants"].items(), key=lambda kv: -kv[1]["ndcg_at_10"])[:12]
        print(name, "store:", c["store-rrf"], c["store-dbsf"], flush=True)
        for k, v in best:
            print(f"  {k:24s} {v}", flush=True)
        print("  dense", res["variants"]["dense"], flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
