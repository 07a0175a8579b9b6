"""The vector-store interface every stage speaks: collections of points, aliases, filtered scrolls.

A store keeps, per collection, points (an id, a dense vector, a sparse BM25 vector, a JSON payload) and
the collection's metadata (the version config the plan stage checks). A collection built before sparse
vectors existed holds one unnamed dense vector per point: :meth:`VectorStore.has_sparse` is false for it,
and it answers dense queries only. An alias names one collection and moves in one
atomic call. Implementations: :mod:`ragtrail.store.qdrant`, :mod:`ragtrail.store.edge`. Nothing here
imports a client library.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Payload fields the plan and index stages filter on; a store that supports payload indexes builds them.
INDEXED_FIELDS = ("doc_id", "chunk_hash")
# In ``create``'s metadata: where an embedded store may cut the collection into parts (lower bounds of parts
# 1, 2, … by ``doc_id``: :mod:`ragtrail.store.edge_parts`); a store without parts drops it.
PARTS_KEY = "store_parts"


def check_name(kind: str, value: str) -> str:
    """Products and versions become collection names: keep them to a safe alphabet."""
    if not isinstance(value, str) or not _NAME.match(value) or "__" in value:
        raise ValueError(
            f"{kind} {value!r} must be 1-63 characters of letters, digits, '_', '-', '.', start with a "
            "letter or digit and not contain '__'"
        )
    return value


_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_collection(name: str) -> str:
    """A collection name safe as a folder name (stores that keep one folder per collection check it)."""
    if not isinstance(name, str) or not _COLLECTION.match(name):
        raise ValueError(f"collection {name!r} must be 1-128 characters of letters, digits, '_', '-', '.'")
    return name


def collection_name(product: str, version: str) -> str:
    return f"{check_name('product', product)}__{check_name('version', version)}"


# The named vectors of a collection built with both (Qdrant's names; stored in the collection config).
DENSE, SPARSE = "dense", "bm25"
MODES = ("dense", "sparse", "hybrid")
FUSIONS = ("rrf", "dbsf")
RRF_K = 60  # the constant of reciprocal-rank fusion (Cormack et al.'s 60; set explicitly in every store)


def prefetch_limit(k: int) -> int:
    """How many candidates each prefetch (dense, sparse) hands the fusion: deep enough that a hit ranked low
    by one side can still be lifted by the other, and at least 100 whatever ``k`` — DBSF normalises each side
    over its candidates, so a search for 10 hits ranks them as the evaluation's search for 50 does."""
    return max(2 * k, 100)


@dataclass(frozen=True)
class Sparse:
    """A sparse vector: token ids (a stable hash of each stemmed token) and their weights."""

    indices: list[int]
    values: list[float]


@dataclass
class Point:
    """One stored chunk: ``id`` (a UUID string or an int), its dense vector, its sparse BM25 vector (``None``:
    none, e.g. in a dense-only collection) and its payload."""

    id: Any
    vector: list[float] | None = None
    payload: dict = field(default_factory=dict)
    sparse: Sparse | None = None


@dataclass
class Hit:
    """One query result, best first: the point's id, its score and (selected) payload. ``found_by``: which of
    the query's searches (``dense``, ``sparse``) had the point among its candidates."""

    id: Any
    score: float
    payload: dict = field(default_factory=dict)
    found_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchQuery:
    """One question for :meth:`VectorStore.query_batch`: ``mode`` ``dense`` (the dense vector), ``sparse`` (the
    BM25 vector; IDF applied by the store) or ``hybrid`` (both searched — the dense and the sparse prefetch —
    and fused by :func:`fuse`: ``fusion`` ``rrf`` or ``dbsf``, the sparse side weighted ``sparse_weight``, the
    dense side ``1 − sparse_weight``; 0.5 ranks as Qdrant's own, unweighted RRF / DBSF)."""

    dense: list[float] | None = None
    sparse: Sparse | None = None
    mode: str = "dense"
    fusion: str = "rrf"
    sparse_weight: float = 0.5

    def __post_init__(self):
        if self.mode not in MODES or self.fusion not in FUSIONS:
            raise ValueError(f"mode must be one of {', '.join(MODES)} and fusion one of {', '.join(FUSIONS)} "
                             f"(got {self.mode!r}, {self.fusion!r})")
        check_sparse_weight(self.sparse_weight)
        if (self.mode != "sparse" and self.dense is None) or (self.mode != "dense" and self.sparse is None):
            raise ValueError(f"a {self.mode} query needs its {'dense' if self.dense is None else 'sparse'} vector")


def check_sparse_weight(value) -> float:
    """A sparse weight is a number from 0 (dense alone decides) to 1 (BM25 alone decides)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"sparse weight must be a number from 0 to 1 (got {value!r})")
    return float(value)


def _distr_norm(scores: list[float]) -> list[float]:
    """DBSF's normalisation, as Qdrant computes it (``distr_norm``): ``(s − (μ − 3σ)) / 6σ`` over one side's
    candidates, σ the sample standard deviation, not clipped; one candidate, or all equal: 0.5."""
    n = len(scores)
    if n < 2:
        return [0.5] * n
    mean = sum(scores) / n
    sd = (sum((s - mean) ** 2 for s in scores) / (n - 1)) ** 0.5
    return [0.5] * n if sd == 0 else [(s - mean + 3 * sd) / (6 * sd) for s in scores]


def fuse(dense: list[Hit], sparse: list[Hit], fusion: str, sparse_weight: float, k: int) -> list[Hit]:
    """The ``k`` best of a hybrid query's two candidate lists (each best first), fused.

    ``dbsf``: each side's scores normalised by :func:`_distr_norm`, then ``(1 − w)·dense + w·sparse``
    (a side that lacks the hit adds 0); ``rrf``: ``(1 − w)/(60 + dense rank) + w/(60 + sparse rank)``, ranks
    from 0 as Qdrant counts them (:data:`RRF_K`). ``w`` = ``sparse_weight``; at 0.5 both rank as Qdrant's
    own DBSF / RRF (their scores halved). Each hit says which side found it (``found_by``) and keeps the
    payload its candidate had. Ties: by id, so a ranking is the same on every store.
    """
    w = check_sparse_weight(sparse_weight)
    score: dict = {}
    found: dict = {}
    held: dict = {}
    for name, side, weight in (("dense", dense, 1.0 - w), ("sparse", sparse, w)):
        if fusion == "dbsf":
            parts = [weight * x for x in _distr_norm([h.score for h in side])]
        else:
            parts = [weight / (RRF_K + rank) for rank in range(len(side))]
        for h, part in zip(side, parts, strict=True):
            if h.id in score:
                score[h.id] += part
                found[h.id] += (name,)
            else:
                score[h.id], found[h.id], held[h.id] = part, (name,), h
    best = heapq.nsmallest(k, score, key=lambda i: (-score[i], str(i)))
    return [Hit(id=i, score=score[i], payload=held[i].payload, found_by=found[i]) for i in best]


def hits_per_query(queries: list[SearchQuery], starts: list[int], hits: list[list[Hit]], k: int) -> list[list[Hit]]:
    """One hit list per query from a batch where query i's requests begin at ``starts[i]``: a hybrid query's
    two (its dense prefetch, its sparse prefetch; fused here by :func:`fuse`), another's one."""
    out = []
    for q, a in zip(queries, starts, strict=True):
        if q.mode == "hybrid":
            out.append(fuse(hits[a], hits[a + 1], q.fusion, q.sparse_weight, k))
            continue
        for h in hits[a]:
            h.found_by = (q.mode,)
        out.append(hits[a])
    return out


def fill_payloads(queries: list[SearchQuery], found: list[list[Hit]], fields, fetch: Callable[[list], dict]) -> None:
    """A hybrid query's prefetches come back without payloads (2·depth candidates, most of them dropped by
    the fusion): fetch the payloads of the hits that stayed, all queries' in one call of ``fetch(ids) ->
    {id: payload}``. Nothing to fetch when no fields are asked for."""
    if fields is False or fields == []:
        return
    hybrid = [hits for q, hits in zip(queries, found, strict=True) if q.mode == "hybrid"]
    ids = list({h.id: None for hits in hybrid for h in hits})
    if not ids:
        return
    payloads = fetch(ids)
    for hits in hybrid:
        for h in hits:
            h.payload = dict(payloads.get(h.id) or {})


def refuse_sparse_on_dense_only(name: str, queries: list, named: bool) -> None:
    """A collection of one unnamed dense vector (an earlier release's) answers dense queries only: say so."""
    if not named and any(q.mode != "dense" for q in queries):
        raise ValueError(f"{name} was built before sparse vectors: it answers dense queries only")


class VectorStore(Protocol):
    """What the stages need of a vector store. Cosine similarity; vectors L2-normalised by the embedder."""

    def exists(self, name: str) -> bool: ...
    def dimension(self, name: str) -> int: ...
    def metadata(self, name: str) -> dict: ...
    def create(self, name: str, dimension: int, metadata: dict) -> None: ...
    def delete_collection(self, name: str) -> None: ...
    def collections(self) -> list[str]: ...
    # The points (or, with ``where``, those whose payload ``where[0]`` is one of ``where[1]``).
    def count(self, name: str, where: tuple[str, list] | None = None) -> int: ...
    def upsert(self, name: str, points: list[Point]) -> None: ...
    # Delete points by id; ``docs`` (optional): each id's ``doc_id``, so that a store in parts visits only theirs.
    def delete(self, name: str, ids: list, docs: list | None = None) -> None: ...
    # Delete every point whose payload ``field`` is one of ``values`` (no read first; batched by the store);
    # how many points there were.
    def delete_where(self, name: str, field: str, values: list) -> int: ...
    def scroll(self, name: str, fields: list[str] | None, *, where: tuple[str, list] | None = None,
               with_vectors: bool = False) -> Iterator[Point]: ...
    def query(self, name: str, vector: list[float], k: int, fields: list[str] | bool = True) -> list[Hit]: ...
    # Sparse and fused search: whether the collection holds BM25 vectors (false for one built before them),
    # and many queries in one call (each hybrid one: its dense and sparse prefetches, fused by ``fuse``).
    def has_sparse(self, name: str) -> bool: ...
    def query_batch(self, name: str, queries: list[SearchQuery], k: int,
                    fields: list[str] | bool = True) -> list[list[Hit]]: ...
    def alias_target(self, alias: str) -> str | None: ...
    def point_alias(self, alias: str, collection: str) -> None: ...
    def finish(self, name: str) -> None: ...  # a version's writes are done: build its index (may be a no-op)
    def close(self) -> None: ...
