"""The BM25 weight of hybrid fusion through the product's own search path, per labelled set.

Builds each corpus's version on Qdrant Edge once (the embeddings cached by ``bench/hybrid.py``), then asks
every question through :func:`ragtrail.stages.evaluation.evaluate_collection` — exactly the gate's search,
one question at a time — in dense mode and in hybrid mode for each fusion × sparse weight (× candidate depth
per side, ``--depths``; the product's is ``prefetch_limit``: 100 for the evaluation's 50 chunks).

Usage::

    python bench/hybrid_weights.py [--corpora faqs,pgdocs,sample] [--out bench/results/hybrid_weights.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
WEIGHTS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
KEYS = ("mrr_at_10", "ndcg_at_10", "recall_at_10")


def measure(name: str, depths: list[int]) -> dict:
    import hybrid
    import hybrid_fusion
    import numpy as np

    from ragtrail.core.settings import DEFAULT_EMBED_BACKEND, DEFAULT_EMBEDDER, DEFAULT_SPARSE_WEIGHT
    from ragtrail.stages.evaluation import evaluate_collection, load_queries
    from ragtrail.store import Point, StoreSettings, edge_query, open_store
    from ragtrail.store.sparse import CONFIG, encoder

    corpus, questions = hybrid_fusion.corpus_of(name)
    texts, owners = hybrid.chunk_corpus(corpus)
    vectors = np.load(REPO / ".data" / "bench" / "hybrid" / f"{corpus.name}-{len(texts)}.npz")["vectors"]
    sparse = encoder(CONFIG).documents(texts)
    queries = load_queries(questions)
    out: dict = {"chunks": len(texts), "queries": len(queries)}
    meta = {"embedder": DEFAULT_EMBEDDER, "embed_backend": DEFAULT_EMBED_BACKEND, "sparse": dict(CONFIG),
            "retrieval_mode": "hybrid", "fusion": "dbsf", "sparse_weight": DEFAULT_SPARSE_WEIGHT}
    default_limit = edge_query.prefetch_limit
    with tempfile.TemporaryDirectory() as tmp, open_store(StoreSettings(path=tmp, kind="edge")) as store:
        store.create("v", int(vectors.shape[1]), meta)
        store.upsert("v", [Point(id=i, vector=vectors[i].tolist(), sparse=sparse[i], payload={"doc_id": owners[i]})
                           for i in range(len(texts))])
        store.finish("v")

        def run(**kw) -> dict:
            m, _ = evaluate_collection(store, "v", queries, show_progress=False, **kw)
            return {k: round(m[k], 4) for k in KEYS}

        out["dense"] = run(mode="dense")
        for depth in depths:
            edge_query.prefetch_limit = (lambda k, d=depth: max(2 * k, d)) if depth else default_limit
            for fusion in ("dbsf", "rrf"):
                for w in WEIGHTS:
                    key = f"{fusion}-w{w}" + (f"-d{depth}" if depth else "")
                    out[key] = run(mode="hybrid", fusion=fusion, sparse_weight=w)
                    d = out["dense"]
                    print(f"{name} {key:18s} {out[key]}  Δ {out[key]['mrr_at_10'] - d['mrr_at_10']:+.4f} / "
                          f"{out[key]['ndcg_at_10'] - d['ndcg_at_10']:+.4f}", flush=True)
        edge_query.prefetch_limit = default_limit
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default="faqs,pgdocs,sample")
    ap.add_argument("--depths", default="0", help="candidates per side to try, comma-separated (0: the product's)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    for name in args.corpora.split(","):
        out[name] = measure(name, [int(d) for d in args.depths.split(",")])
        print(name, "dense", out[name]["dense"], flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
