"""The Qdrant implementation of the store: a server (URL, API key, TLS), local mode, or ``:memory:``.

This is the one module that imports ``qdrant_client``. Local mode admits one process per folder and
*fails* the second, so opening a local store queues on a lock file beside it (see
:func:`ragtrail.core.locks.file_lock`). On a server, payload indexes are built for the fields the plan
and index stages filter on, and points go through qdrant-client's ``upload_points`` (batches of
``RAGTRAIL_UPLOAD_BATCH``, ``RAGTRAIL_UPLOAD_PARALLEL`` worker processes, its own per-batch retries;
deterministic point ids make a retried batch rewrite the same points).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragtrail.core import env_kit
from ragtrail.core.locks import file_lock
from ragtrail.store.base import (
    DENSE,
    INDEXED_FIELDS,
    PARTS_KEY,
    SPARSE,
    Hit,
    Point,
    SearchQuery,
    fill_payloads,
    hits_per_query,
    prefetch_limit,
    refuse_sparse_on_dense_only,
)
from ragtrail.store.resolve import StoreSettings

log = logging.getLogger(__name__)
UPLOAD_BATCH = env_kit.UPLOAD_BATCH.get()
UPLOAD_RETRIES = env_kit.UPLOAD_RETRIES.get()
UPLOAD_PARALLEL = env_kit.UPLOAD_PARALLEL.get()
RETRY_BACKOFF_S = 0.5
INDEXING_THRESHOLD_KB = 20_000  # Qdrant's default (config.yaml, optimizers.indexing_threshold_kb)


def _transient(err: Exception) -> bool:
    """Worth another try: the server was unreachable, overloaded or timed out (not a bad request)."""
    if isinstance(err, UnexpectedResponse):
        return err.status_code is None or err.status_code == 429 or err.status_code >= 500
    return isinstance(err, ResponseHandlingException | ConnectionError | TimeoutError)


def _any_of(where: tuple[str, list] | None):
    return None if where is None else models.Filter(must=[
        models.FieldCondition(key=where[0], match=models.MatchAny(any=list(where[1])))])


def connect(settings: StoreSettings) -> QdrantClient:
    """A raw client for the settings (no lock: :func:`open_kind` holds it for local mode)."""
    if settings.url:
        kw = {"verify": settings.verify} if settings.verify is not True else {}
        return QdrantClient(url=settings.url, api_key=settings.api_key, prefix=settings.prefix,
                            grpc_port=settings.grpc_port, prefer_grpc=settings.prefer_grpc,
                            timeout=settings.timeout_s, **kw)
    if settings.memory:
        return QdrantClient(":memory:")
    return QdrantClient(path=settings.path)


class QdrantStore:
    """:class:`~ragtrail.store.base.VectorStore` over one open ``QdrantClient`` (``.client`` for tools)."""

    def __init__(self, client: QdrantClient, settings: StoreSettings, batch: int = UPLOAD_BATCH,
                 retries: int = UPLOAD_RETRIES, backoff_s: float = RETRY_BACKOFF_S, parallel: int = UPLOAD_PARALLEL):
        self.client, self.settings = client, settings
        self.batch, self.backoff_s, self.parallel = batch, backoff_s, parallel
        self.retries = retries if settings.mode == "server" else 0  # local mode has no transient errors
        self.upload_calls = 0
        self._named: dict[str, bool] = {}

    def _is_named(self, name: str) -> bool:
        """Whether the collection holds named vectors (dense + sparse); one built before them has one unnamed."""
        if name not in self._named:
            self._named[name] = isinstance(self.client.get_collection(name).config.params.vectors, dict)
        return self._named[name]

    def has_sparse(self, name: str) -> bool:
        return SPARSE in (self.client.get_collection(name).config.params.sparse_vectors or {})

    def exists(self, name: str) -> bool:
        return self.client.collection_exists(name)

    def dimension(self, name: str) -> int:
        vectors = self.client.get_collection(name).config.params.vectors
        return (vectors[DENSE] if isinstance(vectors, dict) else vectors).size

    def metadata(self, name: str) -> dict:
        return dict(self.client.get_collection(name).config.metadata or {})

    def create(self, name: str, dimension: int, metadata: dict) -> None:
        """A new version. On a server, as Qdrant's bulk-upload guide says: payload indexes up front, and HNSW
        indexing off (``indexing_threshold`` 0) until :meth:`finish` turns it back on."""
        server = self.settings.mode == "server"
        metadata = {k: v for k, v in metadata.items() if k != PARTS_KEY}  # a server shards on its own
        self.client.create_collection(
            name, metadata=metadata,
            vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            **({"optimizers_config": models.OptimizersConfigDiff(indexing_threshold=0)} if server else {}))
        self._named[name] = True
        if server:  # local mode has no payload indexes (and warns)
            for key in INDEXED_FIELDS:
                self.client.create_payload_index(name, key, field_schema=models.PayloadSchemaType.KEYWORD, wait=True)

    def delete_collection(self, name: str) -> None:
        self._named.pop(name, None)
        self.client.delete_collection(name)

    def collections(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def count(self, name: str, where: tuple[str, list] | None = None) -> int:
        return self.client.count(name, count_filter=_any_of(where), exact=True).count

    def _retrying(self, call, what: str):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Exception as err:
                if attempt == self.retries or not _transient(err):
                    raise
                log.warning("%s failed (%s: %s); try %d of %d in %.1f s", what, type(err).__name__,
                            str(err)[:200], attempt + 2, self.retries + 1, self.backoff_s * 2 ** attempt)
                time.sleep(self.backoff_s * 2 ** attempt)

    def upsert(self, name: str, points: list[Point]) -> None:
        """Write points in batches of ``batch`` (named dense + sparse vectors where the collection has them).

        On a server: one ``upload_points`` call (``wait=True``: the points are applied when it returns),
        which splits them into batches of ``batch``, sends them from ``parallel`` worker processes when
        there are at least two batches per worker (a pool starts per call: not worth it for less), and
        retries a failed batch up to ``retries`` times itself, at once. A transient error that outlasts those
        (a server restarting) repeats the whole call after a backoff, up to ``retries`` times (the same
        ids rewrite the same points). Local mode: one ``upsert`` per batch.
        """
        named = self._is_named(name)
        if self.settings.mode == "server":
            if not points:
                return
            batches = -(-len(points) // self.batch)
            parallel = self.parallel if batches >= 2 * self.parallel else 1
            structs = [models.PointStruct(id=p.id, vector=self._vector(p) if named else p.vector, payload=p.payload)
                       for p in points]
            self._retrying(lambda: self.client.upload_points(name, structs, batch_size=self.batch, parallel=parallel,
                                                             max_retries=self.retries, wait=True),
                           f"upload into {name}")
            self.upload_calls += batches
            return
        for i in range(0, len(points), self.batch):
            structs = [models.PointStruct(id=p.id, vector=self._vector(p) if named else p.vector, payload=p.payload)
                       for p in points[i : i + self.batch]]
            self._retrying(lambda s=structs: self.client.upsert(name, points=s, wait=True), f"upsert into {name}")
            self.upload_calls += 1

    @staticmethod
    def _vector(p: Point) -> dict:
        out = {DENSE: p.vector}
        if p.sparse is not None and p.sparse.indices:
            out[SPARSE] = models.SparseVector(indices=p.sparse.indices, values=p.sparse.values)
        return out

    def delete(self, name: str, ids: list, docs: list | None = None) -> None:  # noqa: ARG002 (a hint for parts)
        for i in range(0, len(ids), 1000):
            selector = models.PointIdsList(points=ids[i : i + 1000])
            self._retrying(lambda s=selector: self.client.delete(name, points_selector=s, wait=True), f"delete in {name}")

    def delete_where(self, name: str, field: str, values: list) -> int:
        """Delete the points whose payload ``field`` is one of ``values``, 1,000 values a filter; how many there
        were (each filter counted first)."""
        removed = 0
        for i in range(0, len(values := list(values)), 1000):
            flt = _any_of((field, values[i : i + 1000]))
            removed += self._retrying(lambda f=flt: self.client.count(name, count_filter=f, exact=True).count, f"count in {name}")
            self._retrying(lambda f=flt: self.client.delete(name, points_selector=models.FilterSelector(filter=f),
                                                            wait=True), f"delete by {field} in {name}")
        return removed

    def scroll(self, name: str, fields: list[str] | None, *, where: tuple[str, list] | None = None,
               with_vectors: bool = False) -> Iterator[Point]:
        """Every point (or those whose payload ``where[0]`` is one of ``where[1]``), page by page."""
        flt = _any_of(where)
        offset = None
        named = with_vectors and self._is_named(name)
        while True:
            page, offset = self.client.scroll(name, scroll_filter=flt, limit=1024, offset=offset,
                                              with_payload=fields if fields is not None else True,
                                              with_vectors=[DENSE] if named else with_vectors)
            for p in page:
                vector = (p.vector or {}).get(DENSE) if named else p.vector if with_vectors else None
                yield Point(id=p.id, vector=vector, payload=p.payload or {})
            if offset is None:
                return

    def query(self, name: str, vector: list[float], k: int, fields: list[str] | bool = True) -> list[Hit]:
        return self.query_batch(name, [SearchQuery(dense=list(vector))], k, fields)[0]

    def query_batch(self, name: str, queries: list[SearchQuery], k: int,
                    fields: list[str] | bool = True) -> list[list[Hit]]:
        """Every query in one ``query_batch_points`` call; a hybrid one is its dense and its sparse prefetch
        (``prefetch_limit(k)`` candidates each, no payloads), fused by :func:`ragtrail.store.base.fuse`, then
        the fused hits' payloads in one ``retrieve``."""
        named = self._is_named(name)
        if not queries:
            return []
        refuse_sparse_on_dense_only(name, queries, named)
        using = {"using": DENSE} if named else {}
        depth = prefetch_limit(k)

        def dense(q, limit):
            return models.QueryRequest(query=q.dense, limit=limit, with_payload=fields, **using)

        def sparse(q, limit):
            return models.QueryRequest(query=models.SparseVector(indices=q.sparse.indices, values=q.sparse.values),
                                       using=SPARSE, limit=limit, with_payload=fields)

        requests, starts = [], []
        for q in queries:
            starts.append(len(requests))
            if q.mode == "dense":
                requests.append(dense(q, k))
            elif q.mode == "sparse":
                requests.append(sparse(q, k))
            else:
                requests += [dense(q, depth).model_copy(update={"with_payload": False}),
                             sparse(q, depth).model_copy(update={"with_payload": False})]
        answers = self.client.query_batch_points(name, requests=requests)
        hits = [[Hit(id=h.id, score=float(h.score), payload=h.payload or {}) for h in a.points] for a in answers]
        found = hits_per_query(queries, starts, hits, k)
        fill_payloads(queries, found, fields, lambda ids: {
            r.id: r.payload for r in self.client.retrieve(name, ids, with_payload=fields, with_vectors=False)})
        return found

    def alias_target(self, alias: str) -> str | None:
        for a in self.client.get_aliases().aliases:
            if a.alias_name == alias:
                return a.collection_name
        return None

    def point_alias(self, alias: str, collection: str) -> None:
        """Move ``alias`` to ``collection`` in one atomic call (searches never see a gap)."""
        ops = []
        if self.alias_target(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection,
                                                                               alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def finish(self, name: str, poll_s: float = 1.0) -> None:
        """A version's writes are done. On a server: indexing back on (Qdrant's default threshold), then wait
        until the collection is green — HNSW built — before the gate judges it and the alias may move (at
        most ``RAGTRAIL_INDEX_WAIT_S``; past it the version is still searchable, a warning says so).
        Local mode searches by brute force: nothing to do."""
        if self.settings.mode != "server":
            return
        self._retrying(lambda: self.client.update_collection(
            name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=INDEXING_THRESHOLD_KB)),
            f"indexing on for {name}")
        deadline = time.monotonic() + env_kit.INDEX_WAIT_S.get()
        while True:
            status = self._retrying(lambda: self.client.get_collection(name).status, f"status of {name}")
            if status == models.CollectionStatus.GREEN:
                return
            if status == models.CollectionStatus.RED or time.monotonic() >= deadline:
                log.warning("collection %s is %s after indexing was turned on (waited up to %.0f s): it answers, "
                            "but searches may be slower until Qdrant's optimizer finishes", name,
                            getattr(status, "value", status), env_kit.INDEX_WAIT_S.get())
                return
            time.sleep(poll_s)

    def close(self) -> None:
        self.client.close()


@contextmanager
def open_kind(settings: StoreSettings, lock_timeout_s: float | None = None, **kw) -> Iterator[QdrantStore]:
    """Open the store, hold the local-mode lock while it is open (waiting up to ``lock_timeout_s`` for it,
    default ``RAGTRAIL_LOCK_TIMEOUT_S``), close it after."""
    guard = nullcontext()
    if settings.mode == "local":
        path = Path(settings.path)
        path.mkdir(parents=True, exist_ok=True)
        lock = path.parent / f".{path.name}.lock"
        guard = file_lock(lock) if lock_timeout_s is None else file_lock(lock, timeout_s=lock_timeout_s)
    with guard:
        store = QdrantStore(connect(settings), settings, **kw)
        try:
            yield store
        finally:
            store.close()
