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
from ragtrail.stages.index_state import INDEX_STATE_FILE, RunState, keep, local
from ragtrail.store import (
    Point,
    Sparse,
    collection_name,
    ensure_collection,
    open_store,
    vectors_by_hash,
)
from ragtrail.store.base import PARTS_KEY
from ragtrail.store.sparse import CONFIG as SPARSE_CONFIG

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
UPSERT_BATCH = env_kit.UPSERT_BATCH.get()
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
    source_state: dict | None = None,
    total_chunks: int | None = None,
    fetch=local,
    release=keep,
    parts: list[str] | None = None,
) -> dict:
    """Bring the version's collection to this run's view of the source (the gate, not this stage, moves the alias).

    A document is written whole or not at all: if any of its chunks has no vector (its embed batch
    failed), its old points stay untouched and it is counted in ``docs_skipped``. ``location`` is
    anything :func:`ragtrail.store.resolve_store` accepts (``None``: the environment's store).
    ``state``: ``{"base_path", "delta_path", "changed", "out_path"}`` — the source state this run started
    from, the ingest stage's delta, the documents the plan sent to be written, and where to write the state
    after this run's writes (the caller commits it).

    Streams: one chunk file at a time (``fetch`` makes a path local, ``release`` drops that local copy once
    read: a work store's files are fetched one by one, not all up front), vectors read per embed batch; what
    must outlive a chunk file (which documents were written, which point ids are new, where each new
    vector is) lives in :data:`INDEX_STATE_FILE`, not in memory. ``total_chunks``: the points expected
    (progress only; read from the chunk files when not given). ``parts``: where an embedded store cuts a
    collection this run creates (:func:`ragtrail.store.edge_parts.bounds_from_batches`; ``None``: one part).

    Returns:
        ``{"collection", "alias", "vectors", "upserted", "deleted", "live", "docs_skipped"}``.
    """
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    name = collection_name(product, version)
    rec.param(collection=name, alias=product, upsert_batch=UPSERT_BATCH)
    state = RunState(Path(workdir) / INDEX_STATE_FILE, embedded, fetch, release)
    dim = state.dim
    if total_chunks is None:
        total_chunks = 0
        for p in chunk_paths:
            here = fetch(p)
            total_chunks += pq.ParquetFile(here).metadata.num_rows
            release(here)
    manifest_path = Path(workdir) / INDEX_MANIFEST_FILE
    try:
        with open_store(location) as store, manifest_path.open("w") as manifest:
            fresh = not store.exists(name)  # made by this try: it holds no point this run did not write
            if dim is None and not fresh:
                dim = store.dimension(name)
            if dim is not None:
                ensure_collection(store, name, dim, {**config, "product": product, "version": version,
                                                      "built_at": time.time(), "sparse": dict(SPARSE_CONFIG),
                                                      **({PARTS_KEY: parts} if parts else {})})
            failpoint("index.start", workdir)
            progress = Progress("index", total_chunks, "points", recorder=rec)
            upserts = _Upserts(store, name, workdir, progress)
            writer = _DocWriter(store, name, state, upserts, manifest,
                                {"product": product, "version": version, "ingest_run_id": run_id},
                                _sparse_encoder(store, name))
            for path in chunk_paths:
                here = fetch(path)
                writer.write_file(here)
                release(here)
            upserts.flush()
            written, skipped = state.count("written"), state.count("skipped")
            if skipped and not written:
                raise RuntimeError(f"none of the {skipped} changed documents has all its vectors "
                                   "(every embed batch failed): nothing to index")
            failpoint("index.before_delete", workdir)
            stale = 0 if fresh else _delete_stale(store, name, state)
            gone_points = _delete_docs(store, name, deleted_docs)
            if source_state and source_state.get("delta_path"):
                rec.metric(**_state_after(store, name, source_state, chunk_paths, writer, deleted_docs, fetch, release))
            if store.exists(name):
                store.finish(name)  # e.g. Edge builds its HNSW index now, before the gate judges the version
            failpoint("index.before_alias", workdir)
            vectors_total = store.count(name) if store.exists(name) else 0
            live = store.alias_target(product)
    finally:
        state.close()
    failpoint("index.end", workdir)
    progress.finish(deleted=stale + gone_points, in_collection=vectors_total)
    rec.metric(vector_count=vectors_total, points_upserted=upserts.count, vectors_added=upserts.count,
               vectors_deleted=stale + gone_points, docs_deleted_by_filter=len(deleted_docs),
               vectors_reused=writer.reused, docs_written=written, docs_skipped=skipped,
               upsert_seconds=upserts.seconds, sparse_seconds=writer.sparse_seconds,
               sparse_encoded=writer.sparse_encoded,
               upserts_per_second=upserts.count / upserts.seconds if upserts.seconds else 0.0)
    rec.tag(**{LIVE_COLLECTION_TAG: live or "-"})
    rec.artifact(manifest_path, "index")
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserts.count,
            "deleted": stale + gone_points, "live": live, "docs_skipped": skipped}



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


def _delete_docs(store, name: str, doc_ids: list[str]) -> int:
    """Delete every point of the deleted documents by a payload filter (no read first); the points removed."""
    if not doc_ids or not store.exists(name):
        return 0
    before = store.count(name)
    store.delete_where(name, "doc_id", sorted(doc_ids))
    return before - store.count(name)


def _state_after(store, name: str, state: dict, chunk_paths: list[str], writer: _DocWriter, deleted: list[str],
                 fetch, release) -> dict:
    """Write the source state as it stands after this run's writes (the caller commits the file)."""
    from ragtrail.stages.state_commit import commit_state

    stamp = json.dumps(store.metadata(name).get("built_at")) if store.exists(name) else None
    return commit_state(state["out_path"], base_path=state.get("base_path"), delta_path=state["delta_path"],
                        chunk_paths=chunk_paths, changed=state.get("changed", set()), written=set(writer.state.docs("written")),
                        deleted=set(deleted),
                        missing_hashes=writer.missing, stamp=stamp, fetch=fetch, release=release)


def _held(held: dict, chunk_hash: str) -> list | None:
    """The vector the collection holds for a text, else ``None``."""
    return list(held[chunk_hash]) if chunk_hash in held else None


def _delete_stale(store, name: str, state: RunState) -> int:
    """Delete the points of the touched documents (written or deleted) that this run did not write, a page
    of documents at a time; returns how many."""
    stale = 0
    if store.exists(name):
        for docs in state.touched(1000):
            ids = [p.id for p in store.scroll(name, ["doc_id"], where=("doc_id", docs))]
            new = state.new_among([str(i) for i in ids])
            gone = [i for i in ids if str(i) not in new]
            if gone:
                store.delete(name, gone)
            stale += len(gone)
    return stale
