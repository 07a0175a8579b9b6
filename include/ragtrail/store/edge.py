"""The Qdrant Edge implementation of the store: Qdrant's own engine in-process, one shard per collection.

Layout of a store folder (docs/architecture.md, "The Edge store")::

    edge-store.json               marker: {"format": "ragtrail-edge", "layout": 1}
    aliases.json                  {alias: collection}, replaced atomically (temp, fsync, rename, fsync dir)
    collections/<name>/meta.json  {"dimension": d, "metadata": {...}, "vectors": "named"}; a collection
                                  exists iff this exists ("named": dense + sparse BM25 vectors; without
                                  it, an earlier release's collection of one unnamed dense vector)
    collections/<name>/shard/     the Edge shard (segments; no WAL: every write is flushed before it returns;
                                  an earlier release's shard keeps its WAL)
    .locks/<name>.lock            our lock, taken before the shard is loaded (see :mod:`.edge_shards`)

A collection appears whole: it is built in ``collections/.new-<name>-<pid>`` and renamed into place; it
disappears whole: renamed to ``collections/.trash-…`` before it is removed. Each version is its own shard
and lock, so writing version N+1 never waits for, nor holds up, a reader of version N. Writes go to an
appendable segment, flushed once per upsert call, with optimisation deferred; :meth:`EdgeStore.finish` runs
``optimize`` (HNSW over int8-quantised vectors, merged segments) before the gate judges the version. This
module and :mod:`.edge_query` (the shard's schema and build settings, named vectors, fused queries) are the ones that import ``qdrant_edge``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import qdrant_edge as qe

from ragtrail.core import env_kit
from ragtrail.core.locks import DEFAULT_TIMEOUT_S, file_lock
from ragtrail.store import edge_query, edge_shards
from ragtrail.store.base import (
    DENSE,
    INDEXED_FIELDS,
    Hit,
    Point,
    SearchQuery,
    check_collection,
    fill_payloads,
    hits_per_query,
    refuse_sparse_on_dense_only,
)
from ragtrail.store.resolve import StoreSettings

log = logging.getLogger(__name__)
BATCH = env_kit.UPLOAD_BATCH.get()
MARKER = "edge-store.json"


def _id(value):
    """Edge hands UUIDs back as ``uuid.UUID``; the other stores (and our payloads) use strings."""
    return str(value) if isinstance(value, uuid.UUID) else value


def _payload(fields: list[str] | bool | None):
    return True if fields is None else fields


def _any_of(where: tuple[str, list] | None):
    if where is None:
        return None
    return qe.Filter(must=[qe.FieldCondition(key=where[0], match=qe.MatchAny(list(where[1])))])


class EdgeStore:
    """:class:`~ragtrail.store.base.VectorStore` over a folder of Edge shards (see the module doc)."""

    def __init__(self, root: str | Path, lock_timeout_s: float = DEFAULT_TIMEOUT_S, batch: int = BATCH):
        self.root, self.timeout_s, self.batch = Path(root), lock_timeout_s, batch
        self.kind = "edge"
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if not marker.exists():
            edge_shards.atomic_write_json(marker, json.dumps({"format": "ragtrail-edge", "layout": 1}))

    # -- files -----------------------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        return self.root / "collections" / check_collection(name)

    def _target(self, name: str) -> str:
        """Like a Qdrant server, take an alias wherever a collection name goes (read once per call)."""
        return self._aliases().get(name, name)

    def _lock(self, name: str) -> Path:
        return self.root / ".locks" / f"{name}.lock"

    def _meta(self, name: str) -> dict:
        try:
            return json.loads((self._folder(name) / "meta.json").read_text())
        except FileNotFoundError:
            raise LookupError(f"collection {name} does not exist") from None

    @contextmanager
    def _shard(self, name: str):
        with edge_shards.using(self._folder(name), self._lock(name), id(self), qe.EdgeShard.load,
                               self.timeout_s) as shard:
            yield shard

    def _aliases(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "aliases.json").read_text())
        except FileNotFoundError:
            return {}

    # -- collections -----------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return (self._folder(self._target(name)) / "meta.json").exists()

    def dimension(self, name: str) -> int:
        return int(self._meta(self._target(name))["dimension"])

    def metadata(self, name: str) -> dict:
        return dict(self._meta(self._target(name)).get("metadata") or {})

    def _is_named(self, name: str) -> bool:
        return self._meta(name).get("vectors") == "named"

    def has_sparse(self, name: str) -> bool:
        return self._is_named(self._target(name))

    def collections(self) -> list[str]:
        return sorted(p.name for p in (self.root / "collections").iterdir()
                      if not p.name.startswith(".") and (p / "meta.json").exists())

    def create(self, name: str, dimension: int, metadata: dict) -> None:
        """Build the shard (cosine, payload indexes on :data:`INDEXED_FIELDS`) aside, then rename it in."""
        folder = self._folder(name)
        if folder.exists():
            raise ValueError(f"collection {name} already exists")
        for stale in folder.parent.glob(f".new-{name}-*"):  # a crashed create's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        staging = folder.parent / f".new-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        config = edge_query.config(int(dimension))
        shard = qe.EdgeShard.create(str(staging / "shard"), config)
        try:
            for key in INDEXED_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            shard.flush()
        finally:
            shard.close()
        edge_shards.atomic_write_json(staging / "meta.json",
                                      json.dumps({"dimension": int(dimension), "metadata": metadata,
                                                  "vectors": "named"}))
        try:
            os.rename(staging, folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(f"collection {name} already exists") from None
        edge_shards.fsync_dir(folder.parent)

    def delete_collection(self, name: str) -> None:
        """Remove the collection whole (and any alias pointing at it), waiting for its lock."""
        folder = self._folder(name)
        with edge_shards.exclusive(folder, self._lock(name), id(self), self.timeout_s):
            with self._alias_lock():
                aliases = self._aliases()
                kept = {a: c for a, c in aliases.items() if c != name}
                if kept != aliases:
                    edge_shards.atomic_write_json(self.root / "aliases.json", json.dumps(kept, indent=1))
            if folder.exists():
                trash = folder.parent / f".trash-{name}-{uuid.uuid4().hex[:8]}"
                os.rename(folder, trash)
                edge_shards.fsync_dir(folder.parent)
                shutil.rmtree(trash, ignore_errors=True)

    # -- points ----------------------------------------------------------------------------------------
    def count(self, name: str) -> int:
        with self._shard(self._target(name)) as shard:
            return shard.count(qe.CountRequest(exact=True))

    def upsert(self, name: str, points: list[Point]) -> None:
        """Write points in batches of ``batch``; another process waiting for the shard gets it between two.
        Flushed once, at the end (a flush costs an fsync per segment file: 0.1 s under load)."""
        name = self._target(name)
        named = self._is_named(name)
        for i in range(0, len(points), self.batch):
            batch = [qe.Point(p.id, edge_query.vectors(p) if named else
                              (p.vector if isinstance(p.vector, list) else list(p.vector)), p.payload)
                     for p in points[i : i + self.batch]]
            with self._shard(name) as shard:
                shard.update(qe.UpdateOperation.upsert_points(batch))
                if i + self.batch >= len(points):  # one flush per call (a hand-over between batches flushes too)
                    shard.flush()

    def delete(self, name: str, ids: list) -> None:
        name = self._target(name)
        for i in range(0, len(ids), 1000):
            with self._shard(name) as shard:
                shard.update(qe.UpdateOperation.delete_points(list(ids[i : i + 1000])))
                if i + 1000 >= len(ids):
                    shard.flush()

    def delete_where(self, name: str, field: str, values: list) -> None:
        """Delete the points whose payload ``field`` is one of ``values`` (Edge's delete by filter, 1,000 a batch)."""
        name, values = self._target(name), list(values)
        for i in range(0, len(values), 1000):
            with self._shard(name) as shard:
                shard.update(qe.UpdateOperation.delete_points_by_filter(_any_of((field, values[i : i + 1000]))))

    def scroll(self, name: str, fields: list[str] | None, *, where: tuple[str, list] | None = None,
               with_vectors: bool = False) -> Iterator[Point]:
        """Every point (or those whose payload ``where[0]`` is one of ``where[1]``), page by page."""
        name, offset = self._target(name), None
        named = with_vectors and self._is_named(name)
        while True:
            with self._shard(name) as shard:
                page, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1024, filter=_any_of(where),
                                                             with_payload=_payload(fields),
                                                             with_vector=[DENSE] if named else with_vectors))
            for r in page:
                vector = list((r.vector or {})[DENSE]) if named else list(r.vector) if with_vectors else None
                yield Point(id=_id(r.id), vector=vector, payload=r.payload or {})
            if offset is None:
                return

    def query(self, name: str, vector: list[float], k: int, fields: list[str] | bool = True) -> list[Hit]:
        return self.query_batch(name, [SearchQuery(dense=list(vector))], k, fields)[0]

    def query_batch(self, name: str, queries: list[SearchQuery], k: int,
                    fields: list[str] | bool = True) -> list[list[Hit]]:
        """Every query in one ``query_batch`` call; a hybrid one is its dense and its sparse prefetch, fused
        by :func:`ragtrail.store.base.fuse`, then the fused hits' payloads in one ``retrieve``."""
        name = self._target(name)
        if not queries:
            return []
        named = self._is_named(name)
        refuse_sparse_on_dense_only(name, queries, named)
        requests, starts = edge_query.requests(queries, k, _payload(fields), named, edge_query.SEARCH)
        with self._shard(name) as shard:
            answers = shard.query_batch(qe.QueryBatchRequest(requests))
            hits = [[Hit(id=_id(h.id), score=float(h.score), payload=h.payload or {}) for h in a] for a in answers]
            found = hits_per_query(queries, starts, hits, k)
            fill_payloads(queries, found, fields, lambda ids: {
                _id(r.id): r.payload for r in shard.retrieve(ids, with_payload=_payload(fields), with_vector=False)})
        return found

    def finish(self, name: str) -> None:
        """Optimise a version that is not live (HNSW and merged segments) before it is judged.

        A live collection (an incremental run) is not optimised here: ``optimize`` holds the shard for its
        whole run, and readers of the live version must wait at most one batch. Its new points stay in
        the appendable segment, searched exactly, until the next version is built.
        """
        if name in self._aliases().values():
            log.info("%s is live: optimisation left to the next version's build (readers come first)", name)
            return
        with self._shard(name) as shard:
            shard.optimize()
            shard.flush()

    # -- aliases ---------------------------------------------------------------------------------------
    @contextmanager
    def _alias_lock(self):
        with file_lock(self.root / ".locks" / "aliases.lock", timeout_s=self.timeout_s):
            yield

    def alias_target(self, alias: str) -> str | None:
        return self._aliases().get(alias)

    def point_alias(self, alias: str, collection: str) -> None:
        """Move ``alias`` to ``collection``: one atomic file replace (readers see the old or new target)."""
        if not self.exists(collection):
            raise LookupError(f"collection {collection} does not exist")
        with self._alias_lock():
            aliases = self._aliases()
            aliases[alias] = collection
            edge_shards.atomic_write_json(self.root / "aliases.json", json.dumps(aliases, indent=1))

    def close(self) -> None:
        edge_shards.detach(id(self))


@contextmanager
def open_kind(settings: StoreSettings, lock_timeout_s: float | None = None, **kw) -> Iterator[EdgeStore]:
    """Open the Edge store in ``settings.path``; shards load (and lock) on first use, unload on close."""
    if settings.mode != "local":
        raise ValueError("the Edge store lives in a local folder (a path), not a server or :memory:")
    from ragtrail.store.edge_migrate import ensure_edge_layout

    timeout_s = DEFAULT_TIMEOUT_S if lock_timeout_s is None else lock_timeout_s
    ensure_edge_layout(Path(settings.path), timeout_s, EdgeStore)  # an earlier release's local-mode store moves in once
    store = EdgeStore(settings.path, timeout_s, **kw)
    try:
        yield store
    finally:
        store.close()
