"""The Qdrant Edge implementation of the store: Qdrant's own engine in-process, one shard per collection (or
per part of a large one: :mod:`.edge_parts`).

Layout of a store folder (docs/architecture.md, "The Edge store")::

    edge-store.json               marker: {"format": "ragtrail-edge", "layout": 1}
    aliases.json                  {alias: collection}, replaced atomically (temp, fsync, rename, fsync dir)
    collections/<name>/meta.json  {"dimension": d, "metadata": {...}, "vectors": "named"}; a collection
                                  exists iff this exists ("named": dense + sparse BM25 vectors; without
                                  it, an earlier release's collection of one unnamed dense vector)
    collections/<name>/shard/     the Edge shard (segments; no WAL: every write is flushed before it returns;
                                  an earlier release's shard keeps its WAL); part 0 of a collection in parts,
                                  ``shard-0001/`` … its other parts (``meta.json``'s ``"parts"``: their bounds)
    collections/<name>/.count-<shard>, .optimized-<shard>   a part's kept point count and "optimised since its
                                  last change" mark (:mod:`.edge_points`), removed by whoever changes the part
    .locks/<name>.lock            our lock, taken before the shard is loaded (see :mod:`.edge_shards`)

A collection appears whole: it is built in ``collections/.new-<name>-<pid>`` and renamed into place; it
disappears whole: renamed to ``collections/.trash-…`` before it is removed. Each version is its own shard
and lock, so writing version N+1 never waits for, nor holds up, a reader of version N. Writes go to an
appendable segment, flushed once per upsert call, with optimisation deferred; :meth:`EdgeStore.finish` runs
``optimize`` (HNSW over int8-quantised vectors, merged segments) before the gate judges the version. This
module, :mod:`.edge_points` (the point operations over the parts) and :mod:`.edge_query` (the shard's schema
and build settings, named vectors, fused queries) are the ones that import ``qdrant_edge``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import qdrant_edge as qe

from ragtrail.core import env_kit
from ragtrail.core.locks import DEFAULT_TIMEOUT_S, file_lock
from ragtrail.store import edge_parts, edge_query, edge_shards
from ragtrail.store.base import INDEXED_FIELDS, PARTS_KEY, check_collection
from ragtrail.store.edge_points import EdgePoints
from ragtrail.store.resolve import StoreSettings

log = logging.getLogger(__name__)
BATCH = env_kit.UPLOAD_BATCH.get()
MARKER = "edge-store.json"


class EdgeStore(EdgePoints):
    """:class:`~ragtrail.store.base.VectorStore` over a folder of Edge shards (see the module doc); the point
    operations are :class:`~ragtrail.store.edge_points.EdgePoints`'."""

    def __init__(self, root: str | Path, lock_timeout_s: float = DEFAULT_TIMEOUT_S, batch: int = BATCH):
        self.root, self.timeout_s, self.batch = Path(root), lock_timeout_s, batch
        self.kind = "edge"
        self._writing: dict[str, int] = {}  # collection → the part this store last wrote (held until it moves on)
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

    def _lock(self, name: str, part: int = 0) -> Path:
        return self.root / ".locks" / edge_parts.lock_name(name, part)

    def _meta(self, name: str) -> dict:
        try:
            return json.loads((self._folder(name) / "meta.json").read_text())
        except FileNotFoundError:
            raise LookupError(f"collection {name} does not exist") from None

    @contextmanager
    def _shard(self, name: str, part: int = 0):
        with edge_shards.using(self._folder(name), self._lock(name, part), id(self), qe.EdgeShard.load,
                               self.timeout_s, edge_parts.shard_dir(part)) as shard:
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
        """Build the shards (cosine, payload indexes on :data:`INDEXED_FIELDS`) aside, then rename them in: one,
        or one per part when ``metadata`` names part bounds (:data:`~ragtrail.store.base.PARTS_KEY`)."""
        metadata = dict(metadata)
        bounds = sorted(set(metadata.pop(PARTS_KEY, None) or []))
        folder = self._folder(name)
        if folder.exists():
            raise ValueError(f"collection {name} already exists")
        for stale in folder.parent.glob(f".new-{name}-*"):  # a crashed create's leftovers (not a live rival's)
            if _dead_creator(stale.name[len(f".new-{name}-"):]):
                shutil.rmtree(stale, ignore_errors=True)
        staging = folder.parent / f".new-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        config = edge_query.config(int(dimension))
        try:
            for part in range(len(bounds) + 1):
                shard = qe.EdgeShard.create(str(staging / edge_parts.shard_dir(part)), config)
                try:
                    for key in INDEXED_FIELDS:
                        shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
                    shard.flush()
                finally:
                    shard.close()
            edge_shards.atomic_write_json(staging / "meta.json",
                                          json.dumps({"dimension": int(dimension), "metadata": metadata,
                                                      "vectors": "named", **({"parts": bounds} if bounds else {})}))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # this process lives on: its staging is no crash's leftover
            raise
        try:
            os.rename(staging, folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(f"collection {name} already exists") from None
        edge_shards.fsync_dir(folder.parent)

    def delete_collection(self, name: str) -> None:
        """Remove the collection whole (and any alias pointing at it), waiting for its lock."""
        folder = self._folder(name)
        try:
            parts = self._all(name)
        except LookupError:  # no meta.json: at most the first part's shard (a crashed create's)
            parts = range(1)
        with ExitStack() as held:
            for part in parts:
                held.enter_context(edge_shards.exclusive(folder, self._lock(name, part), id(self), self.timeout_s,
                                                         edge_parts.shard_dir(part)))
            self._writing.pop(name, None)
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


def _dead_creator(tail: str) -> bool:
    """Whether the process that named a staging folder ``<pid>-<hex>`` is gone: parallel writers of a version
    may create it at once, and each must leave the others' staging alone (the loser of the rename sees the
    winner's collection)."""
    pid = tail.split("-", 1)[0]
    return not pid.isdigit() or not edge_shards.alive(int(pid))


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
