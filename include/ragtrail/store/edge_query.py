"""Qdrant Edge requests for named vectors: a point's dense + sparse vectors, and a batch of dense, sparse and
fused (RRF / DBSF over a dense and a sparse prefetch) queries. Used by :mod:`.edge` only."""

from __future__ import annotations

import qdrant_edge as qe

from ragtrail.store.base import DENSE, RRF_K, SPARSE, Point, SearchQuery, prefetch_limit


def vectors(p: Point) -> dict:
    """The named vectors of a point: its dense vector, and its BM25 vector when it has terms."""
    out = {DENSE: list(p.vector)}
    if p.sparse is not None and p.sparse.indices:
        out[SPARSE] = qe.SparseVector(list(p.sparse.indices), list(p.sparse.values))
    return out


def requests(queries: list[SearchQuery], k: int, payload, named: bool) -> tuple[list, list[int]]:
    """The batch's requests, and where each query's begin: a hybrid query is three (the fused query, then
    each prefetch alone, for :func:`ragtrail.store.base.hits_per_query`), another one."""
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
                                       with_payload=payload))
            continue
        fusion = qe.Fusion.Rrf(k=RRF_K) if q.fusion == "rrf" else qe.Fusion.Dbsf()
        out += [qe.QueryRequest(limit=k, prefetches=[qe.Prefetch(limit=depth, query=dense(q)),
                                                     qe.Prefetch(limit=depth, query=sparse(q))],
                                query=fusion, with_payload=payload),
                qe.QueryRequest(limit=depth, query=dense(q), with_payload=False),
                qe.QueryRequest(limit=depth, query=sparse(q), with_payload=False)]
    return out, starts
