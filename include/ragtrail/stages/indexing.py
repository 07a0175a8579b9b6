"""Stage 5b — index: after the writers, bring the version's collection to this run's view of the source.

Each (product, version) owns one physical collection, ``<product>__<version>``; the product's alias,
``<product>``, is what searches query and moves in one atomic call. The index itself is the source of
truth for incremental sync: every point carries ``doc_id``, ``doc_hash``, ``chunk_index``,
``n_chunks``, ``chunk_hash``, ``version``, ``source`` and ``ingest_run_id``. Beside its dense vector each
point carries a BM25 sparse vector of its text (:mod:`ragtrail.store.sparse`; the collection's metadata
records the BM25 config under ``sparse``); a version built before sparse vectors gets dense ones only.

The write tasks (:mod:`ragtrail.stages.writing`, several in parallel) upsert the points and leave one receipt
each; :func:`finish_index` reads the receipts and does the rest, once: deletes the stale points the writers
found (an updated document's old ones, by id) and the deleted documents' (by a payload filter,
``delete_where``), commits the source state (:mod:`ragtrail.stages.state_commit`: what the receipts say was
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
from pathlib import Path

from ragtrail.core.locks import failpoint
from ragtrail.core.recorder import Recorder
from ragtrail.core.stage_names import LIVE_COLLECTION_TAG
from ragtrail.stages.index_state import keep, local
from ragtrail.stages.writing import UPSERT_BATCH, write_points
from ragtrail.store import collection_name, open_store

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
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
    got = _read_receipts(receipts, Path(workdir) / INDEX_MANIFEST_FILE, fetch, release)
    written, skipped, counts = got["written"], got["skipped"], got["counts"]
    stale = gone_points = vectors_total = 0
    live = None
    with open_store(location) as store:
        failpoint("index.start", workdir)
        if skipped and not written:
            raise RuntimeError(f"none of the {len(skipped)} changed documents has all its vectors "
                               "(every embed batch failed): nothing to index")
        failpoint("index.before_delete", workdir)
        if store.exists(name):
            stale = _delete_stale(store, name, got["receipt_paths"], fetch, release)
            gone_points = _delete_docs(store, name, deleted_docs)
        if source_state and source_state.get("delta_path"):
            rec.metric(**_state_after(store, name, source_state, got, set(deleted_docs), fetch, release))
        if store.exists(name):
            store.finish(name)  # e.g. Edge builds its HNSW index now, before the gate judges the version
        failpoint("index.before_alias", workdir)
        vectors_total = store.count(name) if store.exists(name) else 0
        live = store.alias_target(product)
    failpoint("index.end", workdir)
    upserted, seconds = int(counts.get("points_written", 0)), counts.get("upsert_seconds", 0.0)
    log.info("index: %s points written by %s write %s; deleted %s; in collection %s", f"{upserted:,}",
             len(receipts), "task" if len(receipts) == 1 else "tasks", f"{stale + gone_points:,}", f"{vectors_total:,}")
    rec.metric(vector_count=vectors_total, points_upserted=upserted, vectors_added=upserted,
               vectors_deleted=stale + gone_points, docs_deleted_by_filter=len(deleted_docs),
               vectors_reused=counts.get("vectors_reused", 0), docs_written=len(written), docs_skipped=len(skipped),
               upsert_seconds=seconds, sparse_seconds=counts.get("sparse_seconds", 0.0),
               sparse_encoded=counts.get("sparse_encoded", 0),
               upserts_per_second=upserted / seconds if seconds else 0.0)
    rec.tag(**{LIVE_COLLECTION_TAG: live or "-"})
    rec.artifact(Path(workdir) / INDEX_MANIFEST_FILE, "index")
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserted,
            "deleted": stale + gone_points, "live": live, "docs_skipped": len(skipped)}


def _read_receipts(receipts: list[dict], manifest_out: Path, fetch, release) -> dict:
    """The union of the receipts (written / skipped documents, missing hashes, chunk files, summed counts);
    their manifest parts concatenated into ``manifest_out``. Stale ids are left in the files (read again)."""
    got: dict = {"written": set(), "skipped": set(), "missing": set(), "chunk_paths": [], "counts": {},
                 "receipt_paths": []}
    with manifest_out.open("w") as manifest:
        for r in receipts:
            receipt = json.loads(_read(r["receipt_path"], fetch, release))
            got["receipt_paths"].append(r["receipt_path"])
            got["written"].update(receipt["written"])
            got["skipped"].update(receipt["skipped"])
            got["missing"].update(receipt["missing"])
            got["chunk_paths"].extend(receipt["chunk_paths"])
            for k, v in receipt["counts"].items():
                got["counts"][k] = got["counts"].get(k, 0) + v
            if r.get("manifest_path"):
                manifest.write(_read(r["manifest_path"], fetch, release))
    got["skipped"] -= got["written"]  # a duplicate's receipt may differ only in timing: written wins
    return got


def _delete_stale(store, name: str, receipt_paths: list[str], fetch, release) -> int:
    """Delete the stale points the writers found (by id), a receipt at a time; how many."""
    deleted = 0
    for path in receipt_paths:
        ids = json.loads(_read(path, fetch, release))["stale"]
        for i in range(0, len(ids), DELETE_BATCH):
            store.delete(name, ids[i : i + DELETE_BATCH])
        deleted += len(ids)
    return deleted


def _read(path: str, fetch, release) -> str:
    """A receipt's or manifest part's text; a fetched copy is dropped after (a local file is left: it may be
    read again)."""
    here = fetch(path)
    text = Path(here).read_text()
    if str(here) != str(path):
        release(here)
    return text


def _delete_docs(store, name: str, doc_ids: list[str]) -> int:
    """Delete every point of the deleted documents by a payload filter (no read first); the points removed."""
    if not doc_ids:
        return 0
    before = store.count(name)
    store.delete_where(name, "doc_id", sorted(doc_ids))
    return before - store.count(name)


def _state_after(store, name: str, state: dict, got: dict, deleted: set[str], fetch, release) -> dict:
    """Write the source state as it stands after this run's writes (the caller commits the file)."""
    from ragtrail.stages.state_commit import commit_state

    stamp = json.dumps(store.metadata(name).get("built_at")) if store.exists(name) else None
    return commit_state(state["out_path"], base_path=state.get("base_path"), delta_path=state["delta_path"],
                        chunk_paths=got["chunk_paths"], changed=state.get("changed", set()), written=got["written"],
                        deleted=deleted, missing_hashes=got["missing"], stamp=stamp, fetch=fetch, release=release)
