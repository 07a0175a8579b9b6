"""A tiny in-memory store for ``dict://<name>`` URLs, registered in tests by a ``ragtrail.stores`` entry
point (tests/include/store/test_store_entry_points.py): the "add a store" recipe followed literally —
this one module, and one entry-point line.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

from ragtrail.store.base import Hit, Point, fuse, prefetch_limit

WORLDS: dict[str, dict] = {}  # one world per ``dict://<name>``, kept across opens like a server


class DictStore:
    def __init__(self, world: dict):
        self.world = world
        world.setdefault("collections", {})
        world.setdefault("aliases", {})

    @property
    def _cols(self) -> dict:
        return self.world["collections"]

    def exists(self, name):
        return name in self._cols

    def dimension(self, name):
        return self._cols[name]["dimension"]

    def metadata(self, name):
        return dict(self._cols[name]["metadata"])

    def create(self, name, dimension, metadata):
        self._cols[name] = {"dimension": dimension, "metadata": dict(metadata), "points": {}}

    def delete_collection(self, name):
        self._cols.pop(name, None)

    def collections(self):
        return sorted(self._cols)

    def count(self, name, where=None):
        return sum(where is None or p.payload.get(where[0]) in where[1] for p in self._cols[name]["points"].values())

    def upsert(self, name, points):
        for p in points:
            self._cols[name]["points"][p.id] = Point(p.id, list(p.vector or []), dict(p.payload), p.sparse)

    def delete(self, name, ids, docs=None):
        for i in ids:
            self._cols[name]["points"].pop(i, None)

    def delete_where(self, name, field, values):
        values = set(values)
        points = self._cols[name]["points"]
        gone = [i for i, p in points.items() if p.payload.get(field) in values]
        for i in gone:
            del points[i]
        return len(gone)

    def scroll(self, name, fields, *, where=None, with_vectors=False):
        for p in self._cols[name]["points"].values():
            if where is None or p.payload.get(where[0]) in where[1]:
                payload = p.payload if fields is None else {k: p.payload[k] for k in fields if k in p.payload}
                yield Point(p.id, p.vector if with_vectors else None, payload)

    def query(self, name, vector, k, fields=True):
        def cosine(v):
            norm = math.sqrt(sum(x * x for x in v)) * math.sqrt(sum(x * x for x in vector))
            return sum(a * b for a, b in zip(v, vector, strict=True)) / norm if norm else 0.0

        scored = sorted(((cosine(p.vector), p) for p in self._cols[name]["points"].values()),
                        key=lambda sp: sp[0], reverse=True)
        return [Hit(p.id, score, dict(p.payload) if fields else {}) for score, p in scored[:k]]

    def has_sparse(self, name):
        return True

    def _sparse(self, name, query, k):
        """BM25 as Qdrant's IDF modifier does it: idf = ln(1 + (N − n + 0.5) / (n + 0.5)) times the stored weight."""
        pts = list(self._cols[name]["points"].values())
        df: dict[int, int] = {}
        for p in pts:
            for i in (p.sparse.indices if p.sparse else []):
                df[i] = df.get(i, 0) + 1
        idf = {i: math.log(1 + (len(pts) - n + 0.5) / (n + 0.5)) for i, n in df.items()}
        scored = []
        for p in pts:
            w = dict(zip(p.sparse.indices, p.sparse.values, strict=True)) if p.sparse else {}
            common = [i for i in query.indices if i in w]
            if common:
                q = dict(zip(query.indices, query.values, strict=True))
                scored.append((sum(q[i] * w[i] * idf[i] for i in common), p))
        scored.sort(key=lambda sp: sp[0], reverse=True)
        return scored[:k]

    def _dense(self, name, vector, k):
        def cosine(v):
            norm = math.sqrt(sum(x * x for x in v)) * math.sqrt(sum(x * x for x in vector))
            return sum(a * b for a, b in zip(v, vector, strict=True)) / norm if norm else 0.0

        return sorted(((cosine(p.vector), p) for p in self._cols[name]["points"].values()),
                      key=lambda sp: sp[0], reverse=True)[:k]

    def query_batch(self, name, queries, k, fields=True):
        out = []
        for q in queries:
            if q.mode != "hybrid":
                scored = self._dense(name, q.dense, k) if q.mode == "dense" else self._sparse(name, q.sparse, k)
                out.append([Hit(p.id, s, dict(p.payload) if fields else {}, (q.mode,)) for s, p in scored])
                continue
            depth = prefetch_limit(k)
            lists = [self._dense(name, q.dense, depth), self._sparse(name, q.sparse, depth)]
            d, sp = ([Hit(p.id, sc, dict(p.payload) if fields else {}) for sc, p in side] for side in lists)
            out.append(fuse(d, sp, q.fusion, q.sparse_weight, k))  # the stores' own fusion
        return out

    def alias_target(self, alias):
        return self.world["aliases"].get(alias)

    def point_alias(self, alias, collection):
        self.world["aliases"][alias] = collection

    def close(self):
        pass


@contextmanager
def open_kind(settings, **kw):
    """Open ``dict://<name>`` (``settings.url``): its world, shared by every open of that URL."""
    yield DictStore(WORLDS.setdefault(settings.url.split("://", 1)[1], {}))
