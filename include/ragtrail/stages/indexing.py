"""Stage 5 — index: write a run's chunks into the version's collection (the evaluate stage publishes it).

Each (product, version) owns one physical collection, ``<product>__<version>``; the product's alias,
``<product>``, is what searches query and moves in one atomic call. The index itself is the source of
truth for incremental sync: every point carries ``doc_id``, ``doc_hash``, ``chunk_index``,
``n_chunks``, ``chunk_hash``, ``version``, ``source`` and ``ingest_run_id``. Beside its dense vector each
point carries a BM25 sparse vector of its text (:mod:`ragtrail.store.sparse`; the collection's metadata
records the BM25 config under ``sparse``); a version built before sparse vectors gets dense ones only.

Crash safety: new points are upserted first (deterministic ids, so a retry rewrites the same points),
stale points are deleted second (a deleted document's by a payload filter, ``delete_where``; an updated
one's by id, from a filtered look-up of that document's points), the source state is committed third
(:mod:`ragtrail.stages.state_commit`: a run that dies before leaves the old state, and the next run reads
those objects again), the alias moves last (in the DAG: in the evaluate stage, after the gate). A run killed anywhere leaves either the old
index or a superset that the next try (or run) reduces to exactly the clean build.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ragtrail.core import env_kit
from ragtrail.core.locks import failpoint
from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.core.stage_names import LIVE_COLLECTION_TAG
from ragtrail.store import (
    Point,
    collection_name,
    ensure_collection,
    open_store,
    vectors_by_hash,
)
from ragtrail.store.sparse import CONFIG as SPARSE_CONFIG

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
UPSERT_BATCH = env_kit.UPSERT_BATCH.get()


def _vector_lookup(embedded: list[dict]):
    """chunk_hash → (vectors file, row) for every newly embedded text."""
    import numpy as np
    import pyarrow.parquet as pq

    where, mats = {}, []
    for e in embedded:
        # a plain ndarray over the mapped file (no copy): row access without np.memmap's per-row overhead
        mats.append(np.asarray(np.load(e["vectors_path"], mmap_mode="r")))
        for row, h in enumerate(pq.read_table(e["texts_path"], columns=["chunk_hash"]).column(0).to_pylist()):
            where[h] = (len(mats) - 1, row)
    return where, mats


def index_run(
    *,
    location,
    product: str,
    version: str,
    config: dict,
    chunk_paths: list[str],
    embedded: list[dict],
    deleted_docs: list[str],
    workdir: str | Path,
    run_id: str | None = None,
    recorder: Recorder | None = None,
    state: dict | None = None,
) -> dict:
    """Bring the version's collection to this run's view of the source (the gate, not this stage, moves the alias).

    A document is written whole or not at all: if any of its chunks has no vector (its embed batch
    failed), its old points stay untouched and it is counted in ``docs_skipped``. ``location`` is
    anything :func:`ragtrail.store.resolve_store` accepts (``None``: the environment's store).
    ``state``: ``{"base_path", "delta_path", "changed", "out_path"}`` — the source state this run started
    from, the ingest stage's delta, the documents the plan sent to be written, and where to write the state
    after this run's writes (the caller commits it).

    Returns:
        ``{"collection", "alias", "vectors", "upserted", "deleted", "live", "docs_skipped"}``.
    """
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    name = collection_name(product, version)
    rec.param(collection=name, alias=product, upsert_batch=UPSERT_BATCH)
    where, mats = _vector_lookup(embedded)
    dim = int(mats[0].shape[1]) if mats else None
    manifest_path = Path(workdir) / INDEX_MANIFEST_FILE
    with open_store(location) as store, manifest_path.open("w") as manifest:
        fresh = not store.exists(name)  # made by this try: it holds no point this run did not write
        if dim is None and not fresh:
            dim = store.dimension(name)
        if dim is not None:
            ensure_collection(store, name, dim, {**config, "product": product, "version": version,
                                                  "built_at": time.time(), "sparse": dict(SPARSE_CONFIG)})
        failpoint("index.start", workdir)
        progress = Progress("index", sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_paths), "points",
                            recorder=rec)
        upserts = _Upserts(store, name, workdir, progress)
        writer = _DocWriter(store, name, where, mats, upserts, manifest,
                            {"product": product, "version": version, "ingest_run_id": run_id},
                            _sparse_encoder(store, name))
        for path in chunk_paths:
            writer.write_file(path)
        upserts.flush()
        if writer.skipped and not writer.written:
            raise RuntimeError(f"none of the {len(writer.skipped)} changed documents has all its vectors "
                               "(every embed batch failed): nothing to index")
        failpoint("index.before_delete", workdir)
        stale = [] if fresh else _delete_stale(store, name, sorted(writer.written), writer.new_ids)
        gone_points = _delete_docs(store, name, deleted_docs)
        if state and state.get("delta_path"):
            committed = _state_after(store, name, state, chunk_paths, writer, deleted_docs)
            rec.metric(**committed)
        if store.exists(name):
            store.finish(name)  # e.g. Edge builds its HNSW index now, before the gate judges the version
        failpoint("index.before_alias", workdir)
        vectors_total = store.count(name) if store.exists(name) else 0
        live = store.alias_target(product)
    failpoint("index.end", workdir)
    progress.finish(deleted=len(stale) + gone_points, in_collection=vectors_total)
    rec.metric(vector_count=vectors_total, points_upserted=upserts.count, vectors_added=upserts.count,
               vectors_deleted=len(stale) + gone_points, docs_deleted_by_filter=len(deleted_docs), vectors_reused=writer.reused, docs_written=len(writer.written),
               docs_skipped=len(writer.skipped), upsert_seconds=upserts.seconds,
               sparse_seconds=writer.sparse_seconds,
               upserts_per_second=upserts.count / upserts.seconds if upserts.seconds else 0.0)
    rec.tag(**{LIVE_COLLECTION_TAG: live or "-"})
    rec.artifact(manifest_path, "index")
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserts.count,
            "deleted": len(stale) + gone_points, "live": live, "docs_skipped": len(writer.skipped)}


def _sparse_encoder(store, name: str):
    """The BM25 encoder of the collection's sparse config, or ``None`` for one built before sparse vectors."""
    from ragtrail.stages.search import sparse_ready
    from ragtrail.store.sparse import encoder_for

    if not store.exists(name) or not sparse_ready(store, name):
        return None
    return encoder_for(store.metadata(name))


class _Upserts:
    """Points upserted in batches of :data:`UPSERT_BATCH`, timed and counted; a failpoint after each call."""

    def __init__(self, store, name: str, workdir, progress: Progress):
        self.store, self.name, self.workdir, self.progress = store, name, workdir, progress
        self.pending: list[Point] = []
        self.count, self.calls, self.seconds = 0, 0, 0.0

    def add(self, point: Point) -> None:
        self.pending.append(point)
        if len(self.pending) >= UPSERT_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        t0 = time.perf_counter()
        self.store.upsert(self.name, list(self.pending))
        self.seconds += time.perf_counter() - t0
        self.count += len(self.pending)
        self.calls += 1
        self.progress.update(len(self.pending), upsert_s=time.perf_counter() - t0)
        self.pending.clear()
        failpoint(f"index.after_upsert_{self.calls}", self.workdir)


class _DocWriter:
    """Turn chunk files into points, a document whole or not at all, and note each in the index manifest."""

    def __init__(self, store, name: str, where: dict, mats: list, upserts: _Upserts, manifest, stamp: dict,
                 sparse=None):
        self.store, self.name, self.where, self.mats = store, name, where, mats
        self.upserts, self.manifest, self.stamp = upserts, manifest, stamp
        self.sparse, self.sparse_seconds = sparse, 0.0
        self.written: set[str] = set()
        self.skipped: set[str] = set()
        self.new_ids: set[str] = set()
        self.missing: set[str] = set()  # held hashes the collection turned out not to hold
        self.reused = 0

    def write_file(self, path: str) -> None:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        by_doc: dict[str, list[dict]] = {}
        for r in rows:
            by_doc.setdefault(r["doc_id"], []).append(r)
        # Texts the index already holds were not embedded again: take their vectors from the
        # collection as it is now (not from the plan's snapshot, which a killed try may have outdated).
        need = sorted({r["chunk_hash"] for r in rows if r["chunk_hash"] not in self.where})
        held = vectors_by_hash(self.store, self.name, need) if need and self.store.exists(self.name) else {}
        self.missing.update(h for h in need if h not in held)
        for doc_id, chunks in by_doc.items():
            vectors = [self._vector(r["chunk_hash"], held) for r in chunks]
            self.reused += sum(r["chunk_hash"] not in self.where and r["chunk_hash"] in held for r in chunks)
            if any(v is None for v in vectors):
                self.skipped.add(doc_id)
                continue
            self._write_doc(doc_id, chunks, vectors)

    def _vector(self, chunk_hash: str, held: dict) -> list | None:
        """The newly embedded vector of a text, else the one the collection holds, else ``None``."""
        import numpy as np

        if chunk_hash in self.where:
            m, row = self.where[chunk_hash]
            return np.asarray(self.mats[m][row]).tolist()
        return list(held[chunk_hash]) if chunk_hash in held else None

    def _write_doc(self, doc_id: str, chunks: list[dict], vectors: list[list]) -> None:
        self.written.add(doc_id)
        sparse = [None] * len(chunks)
        if self.sparse is not None:
            t0 = time.perf_counter()
            sparse = self.sparse.documents([r["text"] for r in chunks])
            self.sparse_seconds += time.perf_counter() - t0
        for r, vec, sv in zip(chunks, vectors, sparse, strict=True):
            self.new_ids.add(r["point_id"])
            self.upserts.add(Point(id=r["point_id"], vector=vec, sparse=sv, payload={
                "doc_id": doc_id, "doc_hash": r["doc_hash"], "chunk_index": r["chunk_index"],
                "n_chunks": r["n_chunks"], "chunk_hash": r["chunk_hash"], "text": r["text"],
                "n_tokens": r["n_tokens"], "source": r["uri"], **self.stamp,
                **({"metadata": json.loads(r["metadata"])} if r.get("metadata") else {})}))
        self.manifest.write(json.dumps({"doc_id": doc_id, "chunks": [
            {"chunk_index": r["chunk_index"], "point_id": r["point_id"]} for r in chunks]}) + "\n")


def _delete_docs(store, name: str, doc_ids: list[str]) -> int:
    """Delete every point of the deleted documents by a payload filter (no read first); the points removed."""
    if not doc_ids or not store.exists(name):
        return 0
    before = store.count(name)
    store.delete_where(name, "doc_id", sorted(doc_ids))
    return before - store.count(name)


def _state_after(store, name: str, state: dict, chunk_paths: list[str], writer: _DocWriter, deleted: list[str]) -> dict:
    """Write the source state as it stands after this run's writes (the caller commits the file)."""
    from ragtrail.stages.state_commit import commit_state

    stamp = json.dumps(store.metadata(name).get("built_at")) if store.exists(name) else None
    return commit_state(state["out_path"], base_path=state.get("base_path"), delta_path=state["delta_path"],
                        chunk_paths=chunk_paths, changed=state.get("changed", set()), written=writer.written,
                        deleted=set(deleted),
                        missing_hashes=writer.missing, stamp=stamp)


def _delete_stale(store, name: str, touched: list[str], new_ids: set[str]) -> list:
    """Delete the points of the written documents that this run did not write (their old chunks); their ids."""
    stale: list = []
    if touched and store.exists(name):
        for i in range(0, len(touched), 1000):
            stale += [p.id for p in store.scroll(name, ["doc_id"], where=("doc_id", touched[i : i + 1000]))
                      if str(p.id) not in new_ids]
        store.delete(name, stale)
    return stale
