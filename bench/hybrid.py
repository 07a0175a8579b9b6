"""Dense vs sparse (BM25) vs hybrid (RRF, DBSF; equal weights and the default BM25 weight 0.25) retrieval on
labelled corpora, and what the sparse vectors cost.

Per corpus (the sample corpus and the PostgreSQL manual of :mod:`pgdocs`): parse every file as ingest does
(in process), chunk it at the pipeline's defaults, embed the chunks with the default backend, and build a
version on Qdrant Edge (the default store) twice — with BM25 vectors (this release) and dense-only — timing
each step. Then every question is asked in each mode through the one search path the gate uses
(:func:`ragtrail.stages.evaluation.evaluate_collection`: embedding + query per question, documents ranked by
their best chunk), giving MRR@10 / nDCG@10 / recall@10 and latency p50/p95 per mode.

Ingest cost of the sparse vectors = BM25 encoding + (index with sparse − index dense-only), as a share of the
build's wall time (parse + chunk + embed + index with sparse).

Usage::

    python bench/hybrid.py [--pgdocs 150] [--out bench/results/hybrid.json]
    python bench/hybrid.py --faqs --no-sample --pgdocs 0 --out bench/results/hybrid.json   # adds "faqs"

``--faqs`` adds the Perl + Python FAQ set of :mod:`faqs` (``faqs.prepare``). An existing ``--out`` file is
updated (the corpora measured replace theirs, the others stay).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
# (mode, fusion, BM25 weight): hybrid at 0.5 ranks as Qdrant's own RRF / DBSF; 0.25 is the default weight.
MODES = (("dense", "rrf", 0.5), ("sparse", "rrf", 0.5), ("hybrid", "rrf", 0.5), ("hybrid", "dbsf", 0.5),
         ("hybrid", "rrf", 0.25), ("hybrid", "dbsf", 0.25))


def mode_key(mode: str, fusion: str, weight: float) -> str:
    """``dense``, ``sparse``, ``hybrid-dbsf`` (equal weights), ``hybrid-dbsf-w0.25``."""
    if mode != "hybrid":
        return mode
    return f"hybrid-{fusion}" if weight == 0.5 else f"hybrid-{fusion}-w{weight}"


def chunk_corpus(corpus: Path) -> tuple[list[str], list[str]]:
    """Every file of ``corpus`` parsed and chunked at the defaults: the chunk texts and each one's file."""
    from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
    from ragtrail.sources.parsing import parse_bytes
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import load_tokenizer, token_window

    tok, window = load_tokenizer(), token_window()
    texts, owners = [], []
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(corpus))
        for c in chunk_document(parse_bytes(rel, path.read_bytes()).text, tok, DEFAULT_CHUNK_SIZE,
                                DEFAULT_CHUNK_OVERLAP, window):
            texts.append(c["text"])
            owners.append(rel)
    return texts, owners


def build_and_measure(corpus: Path, questions: Path) -> dict:
    import numpy as np

    from ragtrail.core.settings import DEFAULT_EMBED_BACKEND, DEFAULT_EMBEDDER, DEFAULT_SPARSE_WEIGHT
    from ragtrail.stages.embedding import embed_texts
    from ragtrail.stages.evaluation import evaluate_collection, load_queries
    from ragtrail.store import Point, StoreSettings, open_store
    from ragtrail.store.sparse import CONFIG, encoder

    t_build = time.perf_counter()
    texts, owners = chunk_corpus(corpus)
    parse_chunk_s = time.perf_counter() - t_build
    cache = REPO / ".data" / "bench" / "hybrid" / f"{corpus.name}-{len(texts)}.npz"
    if cache.exists():  # the embeddings of an earlier run of this corpus (its embed_s kept with them)
        held = np.load(cache)
        vectors, embed_s = held["vectors"], float(held["embed_s"])
    else:
        t0 = time.perf_counter()
        vectors = embed_texts(texts, DEFAULT_EMBEDDER, backend=DEFAULT_EMBED_BACKEND)
        embed_s = time.perf_counter() - t0
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors, embed_s=embed_s)
    t0 = time.perf_counter()
    sparse = encoder(CONFIG).documents(texts)
    sparse_encode_s = time.perf_counter() - t0
    bm25_lengths = [len(s.indices) for s in sparse]
    meta = {"embedder": DEFAULT_EMBEDDER, "embed_backend": DEFAULT_EMBED_BACKEND, "sparse": dict(CONFIG)}
    queries = load_queries(questions)
    out: dict = {"docs": len(set(owners)), "chunks": len(texts), "queries": len(queries),
                 "distinct_bm25_terms_per_chunk_mean": round(float(np.mean(bm25_lengths)), 1)}
    with tempfile.TemporaryDirectory() as tmp, open_store(StoreSettings(path=tmp, kind="edge")) as store:
        index_s = {}
        for name, with_sparse in (("dense_only", False), ("with_sparse", True)):
            store.create(name, int(vectors.shape[1]), {**meta, "retrieval_mode": "hybrid", "fusion": "dbsf",
                                                       "sparse_weight": DEFAULT_SPARSE_WEIGHT})
            points = [Point(id=i, vector=vectors[i].tolist(), sparse=sparse[i] if with_sparse else None,
                            payload={"doc_id": owners[i], "text": texts[i]}) for i in range(len(texts))]
            t0 = time.perf_counter()
            store.upsert(name, points)
            store.finish(name)
            index_s[name] = time.perf_counter() - t0
        build_s = parse_chunk_s + embed_s + sparse_encode_s + index_s["with_sparse"]
        sparse_cost = sparse_encode_s + max(0.0, index_s["with_sparse"] - index_s["dense_only"])
        out["build"] = {"parse_chunk_s": round(parse_chunk_s, 2), "embed_s": round(embed_s, 2),
                        "sparse_encode_s": round(sparse_encode_s, 3),
                        "index_dense_only_s": round(index_s["dense_only"], 3),
                        "index_with_sparse_s": round(index_s["with_sparse"], 3), "build_wall_s": round(build_s, 2),
                        "sparse_cost_s": round(sparse_cost, 3),
                        "sparse_share_of_build": round(sparse_cost / build_s, 4)}
        modes = {}
        for mode, fusion, weight in MODES:
            metrics, _rows = evaluate_collection(store, "with_sparse", queries, show_progress=False,
                                                 mode=mode, fusion=fusion, sparse_weight=weight)
            key = mode_key(mode, fusion, weight)
            modes[key] = {m: round(metrics[m], 4) for m in ("mrr_at_10", "ndcg_at_10", "recall_at_10")}
        for key, lat in latencies(store, "with_sparse", queries).items():
            modes[key].update(lat)
        out["modes"] = modes
        dense = modes["dense"]
        out["hybrid_minus_dense"] = {k: {m: round(v[m] - dense[m], 4) for m in ("mrr_at_10", "ndcg_at_10", "recall_at_10")}
                                     for k, v in modes.items() if k.startswith("hybrid")}
        out["p95_ratio_vs_dense"] = {k: {"search": round(v["search_p95_ms"] / dense["search_p95_ms"], 3),
                                         "end_to_end": round(v["e2e_p95_ms"] / dense["e2e_p95_ms"], 3)}
                                     for k, v in modes.items()}
    return out


def latencies(store, name: str, queries: list[dict], rounds: int = 3) -> dict:
    """Per mode, p50/p95 of the search alone (BM25 encoding of the question + the store's query, the
    question's embedding made beforehand) and end to end (:func:`search_collection`: embedding included).
    The modes take turns question by question (rotating who goes first), so a busy moment of the shared
    machine falls on all of them alike."""
    import time

    from ragtrail.stages.evaluation import CHUNKS_PER_QUERY, percentile
    from ragtrail.stages.search import query_embedder, search_collection
    from ragtrail.store.base import SearchQuery
    from ragtrail.store.sparse import encoder_for

    embed = query_embedder(store, name)
    bm25 = encoder_for(store.metadata(name))
    texts = [q["text"] for q in queries]
    dense = embed(texts)
    keys = [mode_key(*m) for m in MODES]
    search = {k: [] for k in keys}
    e2e = {k: [] for k in keys}
    for r in range(rounds):
        for i, text in enumerate(texts):
            order = [MODES[(j + i + r) % len(MODES)] for j in range(len(MODES))]
            for mode, fusion, weight in order:
                key = mode_key(mode, fusion, weight)
                t0 = time.perf_counter()
                sv = bm25.queries([text])[0] if mode != "dense" else None
                store.query_batch(name, [SearchQuery(dense=dense[i].tolist(), sparse=sv, mode=mode, fusion=fusion,
                                                     sparse_weight=weight)], CHUNKS_PER_QUERY, ["doc_id"])
                search[key].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                search_collection(store, name, [text], CHUNKS_PER_QUERY, mode=mode, fusion=fusion,
                                  sparse_weight=weight, fields=["doc_id"], embed=embed)
                e2e[key].append((time.perf_counter() - t0) * 1000)
    return {k: {"search_p50_ms": round(percentile(search[k], 50), 3), "search_p95_ms": round(percentile(search[k], 95), 3),
                "e2e_p50_ms": round(percentile(e2e[k], 50), 2), "e2e_p95_ms": round(percentile(e2e[k], 95), 2)}
            for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgdocs", type=int, default=150, help="pages of the PostgreSQL manual (0: skip)")
    ap.add_argument("--faqs", action="store_true", help="also the Perl + Python FAQ set (bench/faqs.py)")
    ap.add_argument("--no-sample", action="store_true", help="skip the sample corpus")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from ragtrail.core.settings import SAMPLE_CORPUS

    out = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    out["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                      "note": "2 shared cores (other jobs running); latencies: modes interleaved per question, 3 rounds"}
    if not args.no_sample:
        out["sample"] = build_and_measure(SAMPLE_CORPUS, REPO / "include" / "sample_corpus_queries.jsonl")
        print(json.dumps(out["sample"], indent=1), flush=True)
    if args.faqs:
        import faqs

        corpus, questions, _ = faqs.prepare(REPO / ".data" / "bench" / "faqs")
        out["faqs"] = {"date": faqs.time_stamp(), **build_and_measure(corpus, questions)}
        print(json.dumps(out["faqs"], indent=1), flush=True)
    if args.pgdocs:
        import pgdocs

        corpus, questions, _ = pgdocs.prepare(REPO / ".data" / "bench" / "pgdocs", args.pgdocs)
        out["pgdocs"] = {"pages": args.pgdocs, **build_and_measure(corpus, questions)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
