"""Stage 5a — write: one group of chunk batches' points into the version's collection, and a receipt.

The pipeline runs several write tasks (mapped, in parallel, throttled by a pool and
``max_active_tis_per_dagrun``); each writes the documents of its own chunk batches through the store seam,
reading only the embed batches those chunks need (the dedupe stage says which), and leaves a **receipt**
in the work store: the documents it wrote whole and those it skipped, the held hashes the collection
turned out not to hold, the stale point ids of its documents (their points this write did not make), and
its counts (JSON lines, each list sorted, a stale id with its document: :mod:`ragtrail.stages.receipts`).
The index stage (:mod:`ragtrail.stages.indexing`) merges every receipt on disk after the writers,
deletes the stale points and the gone documents, and commits the source state; the evaluate stage moves the
alias.

Why stale points are only *found* here and deleted by the index stage: a text another document held
(not embedded again, its vector copied from the collection) may be in a stale point of a document a
parallel writer rewrites. Deleting only after every writer has read its vectors keeps that copy safe.

Idempotent: point ids are deterministic (:func:`ragtrail.stages.chunking.point_id`), so a retried or
duplicated writer upserts the same points and finds the same stale ids.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ragtrail.core import env_kit
from ragtrail.core.locks import failpoint
from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.stages.index_state import RunState, keep, local
from ragtrail.stages.receipts import write_receipt
from ragtrail.store import Point, Sparse, collection_name, ensure_collection, open_store, vectors_by_hash
from ragtrail.store.base import PARTS_KEY
from ragtrail.store.sparse import CONFIG as SPARSE_CONFIG

UPSERT_BATCH = env_kit.UPSERT_BATCH.get()
WRITE_DIR = "write"  # the receipts and manifest parts, one per write group, in the run's work folder


def write_points(*, location, product: str, version: str, config: dict, chunk_paths: list[str],
                 embedded: list[dict], workdir: str | Path, run_id: str | None = None,
                 recorder: Recorder | None = None, group: int = 0, total_chunks: int | None = None,
                 stage: str = "write", fetch=local, release=keep, parts: list[str] | None = None) -> dict:
    """Write the documents of ``chunk_paths`` (a document whole or not at all) and leave a receipt.

    ``embedded``: the embed batches' results that hold these chunks' new vectors (those of other batches are
    not needed); a document with a chunk whose vector is in none of them, nor in the collection, is skipped
    (its old points stay). ``group``: this writer's number (names its files). ``stage``: the failpoints' and
    progress lines' prefix. ``fetch`` / ``release``: make a work store's file local, drop that copy. ``parts``:
    where an embedded store cuts the collection when a writer creates it (every writer of a run passes the same
    bounds, from all the run's chunk batches: :func:`ragtrail.store.edge_parts.bounds_of_chunks`).

    Returns:
        ``{"receipt_path", "manifest_path", "group", "chunk_files", "points_written", "docs_written",
        "docs_skipped", "stale_points"}`` (the receipt holds the document ids).
    """
    rec = recorder or Recorder()
    name = collection_name(product, version)
    out = Path(workdir) / WRITE_DIR
    out.mkdir(parents=True, exist_ok=True)
    rec.param(collection=name, upsert_batch=UPSERT_BATCH)
    # private per process: a duplicate of this writer on a shared folder never shares it
    state_path = out / f"state_{group:05d}.{os.getpid()}.sqlite"
    state = RunState(state_path, embedded, fetch, release)
    if total_chunks is None:
        total_chunks = _rows(chunk_paths, fetch, release)
    manifest_path = out / f"manifest_{group:05d}.jsonl"
    try:
        with open_store(location) as store, manifest_path.open("w") as manifest:
            fresh = not store.exists(name)  # made by this run's writers: holds no point this run did not write
            dim = state.dim if state.dim is not None or fresh else store.dimension(name)
            if dim is not None:
                _ensure(store, name, dim, {**config, "product": product, "version": version,
                                           "built_at": time.time(), "sparse": dict(SPARSE_CONFIG),
                                           **({PARTS_KEY: parts} if parts else {})})
            failpoint(f"{stage}.start", workdir)
            progress = Progress(stage, total_chunks, "points", recorder=rec)
            upserts = _Upserts(store, name, workdir, progress, stage)
            writer = _DocWriter(store, name, state, upserts, manifest,
                                {"product": product, "version": version, "ingest_run_id": run_id},
                                _sparse_encoder(store, name))
            for path in chunk_paths:
                here = fetch(path)
                writer.write_file(here)
                release(here)
            upserts.flush()
            failpoint(f"{stage}.before_receipt", workdir)
            stale = [] if fresh else _stale(store, name, state)
        header = {"group": group, "chunk_paths": list(chunk_paths), "counts": {
            "points_written": upserts.count, "vectors_reused": writer.reused, "upsert_seconds": upserts.seconds,
            "sparse_seconds": writer.sparse_seconds, "sparse_encoded": writer.sparse_encoded,
            "upsert_calls": upserts.calls}}
        receipt_path = out / f"receipt_{group:05d}.jsonl"
        write_receipt(receipt_path, header, {"written": state.docs("written"), "skipped": state.docs("skipped"),
                                             "missing": sorted(writer.missing), "stale": sorted(stale)})
        docs_written, docs_skipped = state.count("written"), state.count("skipped")
    finally:
        state.close()
        state_path.unlink(missing_ok=True)
    progress.finish(stale=len(stale))
    counts = {"points_written": upserts.count, "docs_written": docs_written, "docs_skipped": docs_skipped,
              "stale_points": len(stale)}
    rec.metric(**counts, vectors_reused=writer.reused, upsert_seconds=upserts.seconds,
               sparse_seconds=writer.sparse_seconds, chunk_files=len(chunk_paths), embed_batches_read=len(embedded))
    return {**counts, "receipt_path": str(receipt_path), "manifest_path": str(manifest_path), "group": group,
            "chunk_files": len(chunk_paths)}


def _rows(paths: list[str], fetch, release) -> int:
    import pyarrow.parquet as pq

    total = 0
    for p in paths:
        here = fetch(p)
        total += pq.ParquetFile(here).metadata.num_rows
        release(here)
    return total


def _ensure(store, name: str, dim: int, metadata: dict) -> None:
    """The collection, made by whichever writer comes first (a parallel one may win the race to create it)."""
    try:
        ensure_collection(store, name, dim, metadata)
    except Exception:
        if not store.exists(name):
            raise
        ensure_collection(store, name, dim, metadata)  # made meanwhile: check its dimension


def _stale(store, name: str, state: RunState) -> list[tuple[str, str]]:
    """The points of the documents written here that this write did not make (an updated document's old
    points), as ``(doc_id, point_id)`` pairs, a page of documents at a time."""
    stale: list = []
    for docs in state.touched(1000):
        found = [(p.payload.get("doc_id"), p.id) for p in store.scroll(name, ["doc_id"], where=("doc_id", docs))]
        new = state.new_among([str(i) for _, i in found])
        stale.extend((d, i) for d, i in found if str(i) not in new)
    return stale


def _sparse_encoder(store, name: str):
    """The BM25 encoder of the collection's sparse config and that config's key, or ``None`` for a collection
    built before sparse vectors."""
    from ragtrail.stages.search import sparse_ready
    from ragtrail.store.sparse import encoder_for, key

    if not store.exists(name) or not sparse_ready(store, name):
        return None
    meta = store.metadata(name)
    return encoder_for(meta), key(meta.get("sparse"))


class _Upserts:
    """Points upserted in batches of :data:`UPSERT_BATCH`, timed and counted; a failpoint after each call."""

    def __init__(self, store, name: str, workdir, progress: Progress, stage: str):
        self.store, self.name, self.workdir, self.progress, self.stage = store, name, workdir, progress, stage
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
        failpoint(f"{self.stage}.after_upsert_{self.calls}", self.workdir)


class _DocWriter:
    """Turn chunk files into points, a document whole or not at all, and note each in the manifest."""

    def __init__(self, store, name: str, state: RunState, upserts: _Upserts, manifest, stamp: dict, sparse=None):
        self.store, self.name, self.state = store, name, state
        self.upserts, self.manifest, self.stamp = upserts, manifest, stamp
        # (encoder, config key): the embed stage's BM25 vectors are taken when written with that config
        self.sparse, self.sparse_key = sparse if sparse is not None else (None, None)
        self.sparse_seconds, self.sparse_encoded = 0.0, 0
        self.missing: set[str] = set()  # held hashes the collection turned out not to hold
        self.reused = 0
        self._pre: dict = {}
        self._written: list[str] = []
        self._new: list[str] = []

    def write_file(self, path: str) -> None:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        by_doc: dict[str, list[dict]] = {}
        for r in rows:
            by_doc.setdefault(r["doc_id"], []).append(r)
        new = self.state.vectors(sorted({r["chunk_hash"] for r in rows}))
        self._pre = self.state.sparse(sorted(new), self.sparse_key) if self.sparse is not None else {}
        # Texts the index already holds were not embedded again: take their vectors from the
        # collection as it is now (not from the plan's snapshot, which a killed try may have outdated).
        need = sorted({r["chunk_hash"] for r in rows if r["chunk_hash"] not in new})
        held = vectors_by_hash(self.store, self.name, need) if need and self.store.exists(self.name) else {}
        self.missing.update(h for h in need if h not in held)
        skipped = []
        for doc_id, chunks in by_doc.items():
            vectors = [new[r["chunk_hash"]].tolist() if r["chunk_hash"] in new else _held(held, r["chunk_hash"])
                       for r in chunks]
            self.reused += sum(r["chunk_hash"] not in new and r["chunk_hash"] in held for r in chunks)
            if any(v is None for v in vectors):
                skipped.append(doc_id)
                continue
            self._write_doc(doc_id, chunks, vectors)
        self.state.add("skipped", skipped)
        self.state.add("written", self._written)
        self.state.add("new", self._new)
        self._written.clear()
        self._new.clear()

    def _write_doc(self, doc_id: str, chunks: list[dict], vectors: list[list]) -> None:
        self._written.append(doc_id)
        self._new.extend(r["point_id"] for r in chunks)
        sparse = [None] * len(chunks)
        if self.sparse is not None:
            sparse = [Sparse(*self._pre[r["chunk_hash"]]) if r["chunk_hash"] in self._pre else None for r in chunks]
            todo = [k for k, sv in enumerate(sparse) if sv is None]  # reused texts, or no BM25 file of that config
            if todo:
                t0 = time.perf_counter()
                for k, sv in zip(todo, self.sparse.documents([chunks[k]["text"] for k in todo]), strict=True):
                    sparse[k] = sv
                self.sparse_seconds += time.perf_counter() - t0
                self.sparse_encoded += len(todo)
        for r, vec, sv in zip(chunks, vectors, sparse, strict=True):
            self.upserts.add(Point(id=r["point_id"], vector=vec, sparse=sv, payload={
                "doc_id": doc_id, "doc_hash": r["doc_hash"], "chunk_index": r["chunk_index"],
                "n_chunks": r["n_chunks"], "chunk_hash": r["chunk_hash"], "text": r["text"],
                "n_tokens": r["n_tokens"], "source": r["uri"], **self.stamp,
                **({"metadata": json.loads(r["metadata"])} if r.get("metadata") else {})}))
        self.manifest.write(json.dumps({"doc_id": doc_id, "chunks": [
            {"chunk_index": r["chunk_index"], "point_id": r["point_id"]} for r in chunks]}) + "\n")


def _held(held: dict, chunk_hash: str) -> list | None:
    """The vector the collection holds for a text, else ``None``."""
    return list(held[chunk_hash]) if chunk_hash in held else None
