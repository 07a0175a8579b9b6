"""Qdrant Edge's side of a shard for :mod:`.edge`: its schema and build settings (:func:`config`), a point's
named dense + sparse vectors, and a batch of dense, sparse and hybrid queries (a hybrid one: its dense and
its sparse prefetch, fused by :func:`ragtrail.store.base.fuse`). Used by :mod:`.edge` only."""

from __future__ import annotations

import qdrant_edge as qe

from ragtrail.core import env_kit
from ragtrail.store.base import DENSE, SPARSE, Point, SearchQuery, prefetch_limit

# Vectors (KB) a segment holds before ``optimize`` builds its HNSW index: Qdrant's own default, 20 MB ≈ 13k
# 384-d points. Below it, search is exact: at 10k 384-d points a full scan answered in 0.45 ms (p50) with
# recall 1.0, where HNSW cost 4.6 s to build. It was 100 MB (≈ 65k points) while a version was one shard;
# a large version is now in parts of ~20k points (:mod:`.edge_parts`), and exact parts made a query at 320k
# points 82 ms (16 parts scanned) where HNSW in each part answers in ~10 (docs/scaling.md).
INDEXING_THRESHOLD_KB = env_kit.EDGE_INDEXING_THRESHOLD_KB.get()
# HNSW as ``optimize`` builds it (docs/performance.md, "The embedded store"): at 100k 384-d points,
# ef_construct 64 over int8-quantised vectors cost 4-8x less build time than ef_construct 64 or 100 over
# float vectors (Qdrant's default m 16, ef_construct 100, no quantisation); m 8 lost recall (0.87).
HNSW_M = 16
HNSW_EF_CONSTRUCT = 64
# Search: ef 256 over the int8 graph, twice the candidates asked for, rescored with the float vectors:
# recall@10 0.999 at 100k (0.95 with Qdrant's search defaults on the same graph) and 0.975 at 1M, where
# ef 128 gave 0.93; p50 0.9-1.5 ms.
SEARCH = qe.SearchParams(hnsw_ef=256, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0))


def config(dimension: int) -> qe.EdgeConfig:
    """A new shard: cosine, HNSW and int8 quantisation built by ``optimize``, no WAL.

    No write-ahead log: Edge's WAL keeps every operation in its open 32 MB segment, as large as the
    data again (the sample corpus's 222 points: 1,452 KB with it against local mode's 1,108 KB). Every
    upsert or delete call is flushed before it returns instead (and a shard handed to another process
    between two batches is flushed first), so written points are durable when the call returns and a
    writer killed mid-call leaves the last flushed state: whole batches only.

    Memory: the int8 copies the HNSW search walks are pinned in RAM; the float vectors, read only to rescore a
    query's few candidates, stay in their memory-mapped files (``Memory.Cold``: paged in on use, never
    preloaded), Qdrant's own recipe for large collections. Measured (docs/performance.md, "Store memory"):
    150k 384-d points after ``optimize``, a process that loads the shard holds 116 MB instead of 335 MB (2.2 KB
    per point, mostly the floats, down to 0.6 KB); a query costs 0.5-1.0 ms instead of 0.4 ms, recall@10 the same.
    """
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine, memory=qe.Memory.Cold)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000),
        quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99,
                                                        memory=qe.Memory.Pinned),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
        wal_enabled=False)


def vectors(p: Point) -> dict:
    """The named vectors of a point: its dense vector, and its BM25 vector when it has terms."""
    out = {DENSE: p.vector if isinstance(p.vector, list) else list(p.vector)}
    if p.sparse is not None and p.sparse.indices:
        out[SPARSE] = qe.SparseVector(p.sparse.indices, p.sparse.values)
    return out


def requests(queries: list[SearchQuery], k: int, payload, named: bool, params=None) -> tuple[list, list[int]]:
    """The batch's requests, and where each query's begin: a hybrid query is two (its dense and its sparse
    prefetch, ``prefetch_limit(k)`` candidates each and no payloads, fused by
    :func:`ragtrail.store.base.hits_per_query`, payloads fetched for the fused hits only), another one. ``params``: the dense
    searches' HNSW parameters (ef, rescoring of quantised vectors)."""
    depth = prefetch_limit(k)

    def dense(q):
        return qe.Query.Nearest(list(q.dense), using=DENSE) if named else qe.Query.Nearest(list(q.dense))

    def sparse(q):
        return qe.Query.Nearest(qe.SparseVector(list(q.sparse.indices), list(q.sparse.values)), using=SPARSE)

    out, starts = [], []
    for q in queries:
        starts.append(len(out))
        if q.mode != "hybrid":
            out.append(qe.QueryRequest(limit=k, query=dense(q) if q.mode == "dense" else sparse(q),
                                       with_payload=payload, params=params if q.mode == "dense" else None))
            continue
        out += [qe.QueryRequest(limit=depth, query=dense(q), with_payload=False, params=params),
                qe.QueryRequest(limit=depth, query=sparse(q), with_payload=False)]
    return out, starts
