"""Stage 5b — index: after the writers, bring the version's collection to this run's view of the source.

Each (product, version) owns one physical collection, ``<product>__<version>``; the product's alias,
``<product>``, is what searches query and moves in one atomic call. The index itself is the source of
truth for incremental sync: every point carries ``doc_id``, ``doc_hash``, ``chunk_index``,
``n_chunks``, ``chunk_hash``, ``version``, ``source`` and ``ingest_run_id``. Beside its dense vector each
point carries a BM25 sparse vector of its text (:mod:`ragtrail.store.sparse`; the collection's metadata
records the BM25 config under ``sparse``); a version built before sparse vectors gets dense ones only.

The write tasks (:mod:`ragtrail.stages.writing`, several in parallel) upsert the points and leave one receipt
each; :func:`finish_index` merges the receipts on disk (:class:`ragtrail.stages.receipts.ReceiptSet`: it never
holds the run's documents) and does the rest, once: deletes the stale points the writers found (an updated
document's old ones, by id, each with its document so that a store in parts visits only their parts) and the
deleted documents' (by a payload filter, ``delete_where``, counted by that filter first), commits the source
state (:mod:`ragtrail.stages.state_commit`: what the receipts say was
written), lets the store finish the version (Edge builds its HNSW index), records the run's index metrics
and the manifest. :func:`index_run` is the same with one writer, in this process.

Crash safety: new points are upserted first (deterministic ids, so a retry rewrites the same points),
stale points are deleted second, the source state is committed third (a run that dies before leaves the
old state, and the next run reads those objects again), the alias moves last (in the DAG: in the evaluate
stage, after the gate, and only when every write group left its receipt). A run killed anywhere leaves
either the old index or a superset that the next try (or run) reduces to exactly the clean build.
"""

from __future__ import annotations

import json
import logging
import shutil
from bisect import bisect_left
from pathlib import Path

from ragtrail.core.locks import failpoint
from ragtrail.core.recorder import Recorder
from ragtrail.core.stage_names import LIVE_COLLECTION_TAG
from ragtrail.stages.index_state import keep, local
from ragtrail.stages.receipts import ReceiptSet
from ragtrail.stages.writing import UPSERT_BATCH, write_points
from ragtrail.store import collection_name, open_store

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
RECEIPTS_DB = "index_receipts.sqlite"  # the receipts merged (removed after)
DELETE_BATCH = 1000  # stale point ids per delete call
log = logging.getLogger("ragtrail.progress")


def index_run(*, location, product: str, version: str, config: dict, chunk_paths: list[str], embedded: list[dict],
              deleted_docs: list[str], workdir: str | Path, run_id: str | None = None,
              recorder: Recorder | None = None, source_state: dict | None = None, total_chunks: int | None = None,
              fetch=local, release=keep, parts: list[str] | None = None) -> dict:
    """Write every chunk file with one writer, in this process, then :func:`finish_index` (the gate, not this
    stage, moves the alias). The arguments are those two functions'; ``embedded``: every embed batch."""
    written = write_points(location=location, product=product, version=version, config=config,
                           chunk_paths=chunk_paths, embedded=embedded, workdir=workdir, run_id=run_id,
                           recorder=recorder, total_chunks=total_chunks, stage="index", fetch=fetch, release=release,
                           parts=parts)
    return finish_index(location=location, product=product, version=version, receipts=[written],
                        deleted_docs=deleted_docs, workdir=workdir, recorder=recorder, source_state=source_state,
                        fetch=fetch, release=release)


def finish_index(*, location, product: str, version: str, receipts: list[dict], deleted_docs: list[str],
                 workdir: str | Path, recorder: Recorder | None = None, source_state: dict | None = None,
                 fetch=local, release=keep) -> dict:
    """Read the writers' receipts and finish the version: stale and deleted points out, source state, store
    finish, metrics and manifest.

    ``receipts``: the results of the write groups that completed (:func:`ragtrail.stages.writing.write_points`;
    a failed group has none: its documents count as not written, so the source state makes the next run read
    them again). ``source_state``: ``{"base_path", "delta_path", "changed", "out_path"}`` — the state this
    run started from, the ingest stage's delta, the documents the plan sent to be written, and where to write
    the state after this run's writes (the caller commits it).

    Returns:
        ``{"collection", "alias", "vectors", "upserted", "deleted", "live", "docs_skipped"}``.
    """
    rec = recorder or Recorder()
    name = collection_name(product, version)
    rec.param(collection=name, alias=product, upsert_batch=UPSERT_BATCH, write_groups=len(receipts))
    got = ReceiptSet(Path(workdir) / RECEIPTS_DB)
    try:
        counts, chunk_paths = _read_receipts(got, receipts, Path(workdir) / INDEX_MANIFEST_FILE, fetch, release)
        result = _finish(rec, got, location, name, product, counts, chunk_paths, len(receipts), deleted_docs, workdir,
                         source_state, fetch, release)
    finally:
        got.close()
    rec.artifact(Path(workdir) / INDEX_MANIFEST_FILE, "index")
    return result


def _finish(rec: Recorder, got: ReceiptSet, location, name: str, product: str, counts: dict, chunk_paths: list[str],
            groups: int, deleted_docs: list[str], workdir, source_state: dict | None, fetch, release) -> dict:
    written, skipped = got.count("written"), got.count("skipped")
    stale = gone_points = vectors_total = 0
    live = None
    with open_store(location) as store:
        failpoint("index.start", workdir)
        if skipped and not written:
            raise RuntimeError(f"none of the {skipped} changed documents has all its vectors "
                               "(every embed batch failed): nothing to index")
        failpoint("index.before_delete", workdir)
        if store.exists(name):
            stale, gone_points = _delete_points(store, name, got, deleted_docs)
        if source_state and source_state.get("delta_path"):
            rec.metric(**_state_after(store, name, source_state, got, chunk_paths, set(deleted_docs), fetch, release))
        if store.exists(name):
            store.finish(name)  # e.g. Edge builds its HNSW index now, before the gate judges the version
        failpoint("index.before_alias", workdir)
        vectors_total = store.count(name) if store.exists(name) else 0
        live = store.alias_target(product)
    failpoint("index.end", workdir)
    upserted, seconds = int(counts.get("points_written", 0)), counts.get("upsert_seconds", 0.0)
    log.info("index: %s points written by %s write %s; deleted %s; in collection %s", f"{upserted:,}",
             groups, "task" if groups == 1 else "tasks", f"{stale + gone_points:,}", f"{vectors_total:,}")
    rec.metric(vector_count=vectors_total, points_upserted=upserted, vectors_added=upserted,
               vectors_deleted=stale + gone_points, docs_deleted_by_filter=len(deleted_docs),
               vectors_reused=counts.get("vectors_reused", 0), docs_written=written, docs_skipped=skipped,
               upsert_seconds=seconds, sparse_seconds=counts.get("sparse_seconds", 0.0),
               sparse_encoded=counts.get("sparse_encoded", 0),
               upserts_per_second=upserted / seconds if seconds else 0.0)
    rec.tag(**{LIVE_COLLECTION_TAG: live or "-"})
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserted,
            "deleted": stale + gone_points, "live": live, "docs_skipped": skipped}


def _read_receipts(got: ReceiptSet, receipts: list[dict], manifest_out: Path, fetch, release) -> tuple[dict, list]:
    """Merge the receipts into ``got`` (on disk) and their manifest parts into ``manifest_out`` (copied, not
    read whole); the summed counts and the chunk files."""
    counts: dict = {}
    chunk_paths: list[str] = []
    with manifest_out.open("w") as manifest:
        for r in receipts:
            here = fetch(r["receipt_path"])
            head = got.add(here)
            _drop(here, r["receipt_path"], release)
            chunk_paths.extend(head["chunk_paths"])
            for k, v in head["counts"].items():
                counts[k] = counts.get(k, 0) + v
            if r.get("manifest_path"):
                here = fetch(r["manifest_path"])
                with open(here) as part:
                    shutil.copyfileobj(part, manifest)
                _drop(here, r["manifest_path"], release)
    return counts, chunk_paths


def _drop(here, path: str, release) -> None:
    """A fetched copy is dropped after reading (a local file is left: it may be read again)."""
    if str(here) != str(path):
        release(here)


def _delete_points(store, name: str, got: ReceiptSet, deleted_docs: list[str]) -> tuple[int, int]:
    """Delete the stale points the writers found (by id, each with its document) and every point of the deleted
    documents (by a payload filter), in one pass in document order — a store in parts visits each part that
    holds one of them once; (stale, gone) points deleted."""
    gone_docs, j = sorted(deleted_docs), 0
    stale = gone = 0
    for ids, docs in got.stale_pages(DELETE_BATCH):
        start = 0
        for k, doc in enumerate(docs or ()):
            if j < len(gone_docs) and gone_docs[j] < doc:  # deleted documents before this one go first
                if k > start:
                    store.delete(name, ids[start:k], docs[start:k])
                stale, start = stale + k - start, k
                m = bisect_left(gone_docs, doc, j)
                gone, j = gone + _delete_docs(store, name, gone_docs[j:m]), m
        if start < len(ids):
            store.delete(name, ids[start:], docs[start:] if docs is not None else None)
            stale += len(ids) - start
    return stale, gone + _delete_docs(store, name, gone_docs[j:])


def _delete_docs(store, name: str, doc_ids: list[str]) -> int:
    """Delete every point of these (deleted) documents by a payload filter, no read first; the points removed,
    as the store counted them by the same filter."""
    return int(store.delete_where(name, "doc_id", doc_ids) or 0) if doc_ids else 0


def _state_after(store, name: str, state: dict, got: ReceiptSet, chunk_paths: list[str], deleted: set[str],
                 fetch, release) -> dict:
    """Write the source state as it stands after this run's writes (the caller commits the file); the written
    documents and missing hashes are streamed from the merged receipts."""
    from ragtrail.stages.state_commit import commit_state

    stamp = json.dumps(store.metadata(name).get("built_at")) if store.exists(name) else None
    return commit_state(state["out_path"], base_path=state.get("base_path"), delta_path=state["delta_path"],
                        chunk_paths=chunk_paths, changed=state.get("changed", set()), written=got.values("written"),
                        deleted=deleted, missing_hashes=got.values("missing"), stamp=stamp, fetch=fetch,
                        release=release)
