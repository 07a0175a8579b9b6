"""The point operations of the Edge store, over a collection of one or more parts (:mod:`.edge_parts`).

Each operation finds the parts it needs (a point, a ``doc_id`` filter: its own part; anything else: every
part) and runs on each part's shard in turn. In a collection of several parts, a part loaded only for a
count, a scroll or ``optimize`` is let go after it, and a store lets go of the part it last changed (an
upsert, a delete) when its next change goes to another part — so a process that builds or maintains a large collection holds
one part at a time. Queries keep the parts they load (a reader pays each part's load once). What a run did
not change is not loaded: a delete by id with its ids' documents (``docs``) goes to their parts only, each
part's point count is kept beside it (``count`` loads only the parts changed since they were last counted)
and ``finish`` optimises only the parts changed since their last ``optimize``. Used by
:class:`ragtrail.store.edge.EdgeStore` only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import qdrant_edge as qe

from ragtrail.store import edge_parts, edge_query, edge_shards
from ragtrail.store.base import (
    DENSE,
    Hit,
    Point,
    SearchQuery,
    fill_payloads,
    hits_per_query,
    refuse_sparse_on_dense_only,
)
from ragtrail.store.edge_parts import PART_FIELD

log = logging.getLogger(__name__)


def _id(value):
    """Edge hands UUIDs back as ``uuid.UUID``; the other stores (and our payloads) use strings."""
    import uuid

    return str(value) if isinstance(value, uuid.UUID) else value


def _payload(fields: list[str] | bool | None):
    return True if fields is None else fields


def _any_of(where: tuple[str, list] | None):
    if where is None:
        return None
    return qe.Filter(must=[qe.FieldCondition(key=where[0], match=qe.MatchAny(list(where[1])))])


class EdgePoints:
    """Point operations; the store supplies ``_target``, ``_meta``, ``_is_named``, ``_shard``, ``_folder``,
    ``_aliases`` and ``batch``."""

    _writing: dict[str, int]

    def _bounds(self, name: str) -> list[str]:
        return list(self._meta(name).get("parts") or [])

    def _visit(self, name: str, parts) -> Iterator[int]:
        """``parts`` one by one; in a collection of several, a part this process had not loaded is let go after."""
        many = bool(self._bounds(name))
        folder = self._folder(name)
        for part in parts:
            held = edge_shards.is_loaded(folder, edge_parts.shard_dir(part))
            try:
                yield part
            finally:
                if many and not held:
                    edge_shards.unload(folder, edge_parts.shard_dir(part))

    def _changes(self, name: str, parts) -> Iterator[int]:
        """``parts`` one by one, for a change: in a collection of several, this store holds the part it last
        changed until a change goes to another (a writer's upserts, the index stage's deletes in document
        order: each part loaded once, one at a time)."""
        many = bool(self._bounds(name))
        for part in parts:
            last = self._writing.get(name)
            if many and last is not None and last != part:
                edge_shards.unload(self._folder(name), edge_parts.shard_dir(last))
            self._writing[name] = part
            yield part

    def _all(self, name: str) -> range:
        return range(len(self._bounds(name)) + 1)

    def _count_file(self, name: str, part: int, what: str = "count") -> Path:
        """A fact about part ``part`` kept beside its shard (``count``: its points; ``optimized``: built since its
        last change): written under the part's lock by whoever learnt it, removed under that lock by whoever
        changes the part, before the change — so a kept fact never outlives a change, a crash included."""
        return self._folder(name) / f".{what}-{edge_parts.shard_dir(part)}"

    def _changing(self, name: str, part: int) -> None:
        self._count_file(name, part).unlink(missing_ok=True)
        self._count_file(name, part, "optimized").unlink(missing_ok=True)

    def _keep_count(self, name: str, part: int, shard) -> int:
        """Count a loaded part (ms) and keep the count: after a change is flushed, under the part's lock."""
        n = shard.count(qe.CountRequest(exact=True))
        edge_shards.atomic_write_json(self._count_file(name, part), str(n))
        return n

    def _kept_count(self, name: str, part: int) -> int | None:
        try:
            return int(self._count_file(name, part).read_text())
        except (OSError, ValueError):
            return None

    def count(self, name: str, where: tuple[str, list] | None = None) -> int:
        """The points of the collection (or those whose payload ``where[0]`` is one of ``where[1]``, in the parts
        that can hold them). A part nobody changed since it was last counted is not loaded: its count is kept."""
        name = self._target(name)
        parts = self._parts_for(name, where)
        total = 0
        for part in sorted(parts):
            kept = self._kept_count(name, part) if where is None else None
            if kept is not None:
                total += kept
                continue
            flt = _any_of((where[0], parts[part])) if where is not None else None
            for _ in self._visit(name, [part]):
                with self._shard(name, part) as shard:
                    n = (shard.count(qe.CountRequest(exact=True, filter=flt)) if where is not None
                         else self._keep_count(name, part, shard))
                total += n
        return total

    def upsert(self, name: str, points: list[Point]) -> None:
        """Write points in batches of ``batch``, each to its part; another process waiting for a part gets it
        between two batches. Flushed once per part and call (a flush costs an fsync per segment file)."""
        name = self._target(name)
        named, bounds = self._is_named(name), self._bounds(name)
        grouped = edge_parts.group(points, bounds) if bounds else {0: points}
        for part in self._changes(name, list(grouped)):  # moving on: let go of the part written before
            mine = grouped[part]
            for i in range(0, len(mine), self.batch):
                batch = [qe.Point(p.id, edge_query.vectors(p) if named else
                                  (p.vector if isinstance(p.vector, list) else list(p.vector)), p.payload)
                         for p in mine[i : i + self.batch]]
                with self._shard(name, part) as shard:
                    self._changing(name, part)
                    shard.update(qe.UpdateOperation.upsert_points(batch))
                    if i + self.batch >= len(mine):  # one flush per part and call (a hand-over flushes too)
                        shard.flush()
                        self._keep_count(name, part, shard)

    def delete(self, name: str, ids: list, docs: list | None = None) -> None:
        """Delete points by id. ``docs``: each id's ``doc_id`` (a hint): then only the parts that hold those
        documents are visited; without it, every part (an id does not say its part)."""
        name = self._target(name)
        bounds = self._bounds(name)
        if docs is not None and bounds:
            by_part: dict[int, list] = {}
            for i, doc in zip(ids, docs, strict=True):
                by_part.setdefault(edge_parts.part_of(bounds, doc), []).append(i)
        else:
            by_part = {part: list(ids) for part in self._all(name)} if ids else {}
        for part in self._changes(name, sorted(by_part)):
            mine = by_part[part]
            for i in range(0, len(mine), 1000):
                with self._shard(name, part) as shard:
                    self._changing(name, part)
                    shard.update(qe.UpdateOperation.delete_points(mine[i : i + 1000]))
                    if i + 1000 >= len(mine):
                        shard.flush()
                        self._keep_count(name, part, shard)

    def _parts_for(self, name: str, where: tuple[str, list] | None) -> dict[int, list | None]:
        """The parts a filter can match, each with the filter values it can hold (``None``: no filter)."""
        bounds = self._bounds(name)
        if where is not None and where[0] == PART_FIELD and bounds:
            return edge_parts.values_by_part(list(where[1]), bounds)
        return {part: (list(where[1]) if where is not None else None) for part in range(len(bounds) + 1)}

    def delete_where(self, name: str, field: str, values: list) -> int:
        """Delete the points whose payload ``field`` is one of ``values`` (Edge's delete by filter, 1,000 a batch);
        how many there were (counted by the same filter in the same visit of each part)."""
        name = self._target(name)
        parts = self._parts_for(name, (field, list(values)))
        removed = 0
        for part in self._changes(name, sorted(parts)):
            mine = parts[part]
            for i in range(0, len(mine), 1000):
                flt = _any_of((field, mine[i : i + 1000]))
                with self._shard(name, part) as shard:
                    self._changing(name, part)
                    removed += shard.count(qe.CountRequest(exact=True, filter=flt))
                    shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                    if i + 1000 >= len(mine):  # flushed before the part's count is kept again
                        shard.flush()
                        self._keep_count(name, part, shard)
        return removed

    def scroll(self, name: str, fields: list[str] | None, *, where: tuple[str, list] | None = None,
               with_vectors: bool = False) -> Iterator[Point]:
        """Every point (or those whose payload ``where[0]`` is one of ``where[1]``), page by page, part by part."""
        name = self._target(name)
        named = with_vectors and self._is_named(name)
        parts = self._parts_for(name, where)
        for part in self._visit(name, sorted(parts)):
            flt = _any_of((where[0], parts[part])) if where is not None else None
            offset = None
            while True:
                with self._shard(name, part) as shard:
                    page, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1024, filter=flt,
                                                                 with_payload=_payload(fields),
                                                                 with_vector=[DENSE] if named else with_vectors))
                for r in page:
                    vector = list((r.vector or {})[DENSE]) if named else list(r.vector) if with_vectors else None
                    yield Point(id=_id(r.id), vector=vector, payload=r.payload or {})
                if offset is None:
                    break

    def query(self, name: str, vector: list[float], k: int, fields: list[str] | bool = True) -> list[Hit]:
        return self.query_batch(name, [SearchQuery(dense=list(vector))], k, fields)[0]

    def query_batch(self, name: str, queries: list[SearchQuery], k: int,
                    fields: list[str] | bool = True) -> list[list[Hit]]:
        """Every query in one ``query_batch`` call per part; a hybrid one is its dense and its sparse prefetch,
        merged over the parts by score, fused by :func:`ragtrail.store.base.fuse`, then the fused hits'
        payloads fetched from their parts."""
        name = self._target(name)
        if not queries:
            return []
        named = self._is_named(name)
        refuse_sparse_on_dense_only(name, queries, named)
        requests, starts = edge_query.requests(queries, k, _payload(fields), named, edge_query.SEARCH)
        per_part = []
        for part in self._all(name):
            with self._shard(name, part) as shard:
                answers = shard.query_batch(qe.QueryBatchRequest(requests))
            per_part.append([[Hit(id=_id(h.id), score=float(h.score), payload=h.payload or {}) for h in a]
                             for a in answers])
        hits, where = edge_parts.merge(per_part, [r.limit for r in requests])
        found = hits_per_query(queries, starts, hits, k)
        fill_payloads(queries, found, fields, lambda ids: self._retrieve(name, ids, where, fields))
        return found

    def _retrieve(self, name: str, ids: list, where: dict, fields) -> dict:
        out = {}
        by_part: dict[int, list] = {}
        for i in ids:
            by_part.setdefault(where.get(i, 0), []).append(i)
        for part, mine in by_part.items():
            with self._shard(name, part) as shard:
                out.update((_id(r.id), r.payload) for r in shard.retrieve(mine, with_payload=_payload(fields),
                                                                          with_vector=False))
        return out

    def finish(self, name: str) -> None:
        """Optimise a version that is not live (HNSW and merged segments), part by part, before it is judged.

        A live collection (an incremental run) is not optimised here: ``optimize`` holds the shard for its
        whole run, and readers of the live version must wait at most one batch. Its new points stay in
        the appendable segment, searched exactly, until the next version is built.
        """
        if name in self._aliases().values():
            log.info("%s is live: optimisation left to the next version's build (readers come first)", name)
            return
        self._writing.pop(name, None)
        many = bool(self._bounds(name))
        for part in self._all(name):
            done = self._count_file(name, part, "optimized")
            if done.exists():  # not changed since it was built (an earlier try of this run, or the run before)
                continue
            with self._shard(name, part) as shard:
                shard.optimize()
                shard.flush()
                self._keep_count(name, part, shard)
                edge_shards.atomic_write_json(done, "1")
            if many:  # the writes are done: hold no part (a reader loads what it queries)
                edge_shards.unload(self._folder(name), edge_parts.shard_dir(part))
