"""Stage 5 — index: write a run's chunks into the version's collection (the evaluate stage publishes it).

Each (product, version) owns one physical collection, ``<product>__<version>``; the product's alias,
``<product>``, is what searches query and moves in one atomic call. The index itself is the source of
truth for incremental sync: every point carries ``doc_id``, ``doc_hash``, ``chunk_index``,
``n_chunks``, ``chunk_hash``, ``version``, ``source`` and ``ingest_run_id``.

Crash safety: new points are upserted first (deterministic ids, so a retry rewrites the same points),
stale points are deleted second, the alias moves last (in the DAG: in the evaluate stage, after the gate). A run killed anywhere leaves either the old
index or a superset that the next try (or run) reduces to exactly the clean build.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ragtrail.locks import failpoint
from ragtrail.progress import Progress
from ragtrail.recorder import Recorder
from ragtrail.store import (
    Point,
    collection_name,
    ensure_collection,
    open_store,
    prune_versions,
    vectors_by_hash,
)

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
UPSERT_BATCH = int(os.environ.get("RAGTRAIL_UPSERT_BATCH", "256"))


def _vector_lookup(embedded: list[dict]):
    """chunk_hash → (vectors file, row) for every newly embedded text."""
    import numpy as np
    import pyarrow.parquet as pq

    where, mats = {}, []
    for e in embedded:
        mats.append(np.load(e["vectors_path"], mmap_mode="r"))
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
    promote_alias: bool = True,
    keep_versions: int = 2,
    recorder: Recorder | None = None,
) -> dict:
    """Bring the version's collection to this run's view of the source, then publish it.

    A document is written whole or not at all: if any of its chunks has no vector (its embed batch
    failed), its old points stay untouched and it is counted in ``docs_skipped``. ``location`` is
    anything :func:`ragtrail.store.resolve_store` accepts (``None``: the environment's store).

    Returns:
        ``{"collection", "alias", "vectors", "upserted", "deleted", "published"}``.
    """
    import numpy as np
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    name = collection_name(product, version)
    rec.param(collection=name, alias=product, upsert_batch=UPSERT_BATCH, promote_alias=promote_alias,
              keep_versions=keep_versions)
    where, mats = _vector_lookup(embedded)
    dim = int(mats[0].shape[1]) if mats else None
    manifest_path = Path(workdir) / INDEX_MANIFEST_FILE
    upserted = reused = 0
    written_docs: set[str] = set()
    skipped_docs: set[str] = set()
    new_ids: set[str] = set()
    t_upsert = 0.0
    with open_store(location) as store, manifest_path.open("w") as manifest:
        if dim is None and store.exists(name):
            dim = store.dimension(name)
        if dim is not None:
            ensure_collection(store, name, dim, {**config, "product": product, "version": version,
                                                  "built_at": time.time()})
        failpoint("index.start", workdir)
        pending: list = []
        calls = 0
        progress = Progress("index", sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_paths), "points",
                            recorder=rec)

        def flush():
            nonlocal upserted, t_upsert, calls
            if pending:
                t0 = time.perf_counter()
                store.upsert(name, list(pending))
                t_upsert += time.perf_counter() - t0
                upserted += len(pending)
                calls += 1
                progress.update(len(pending), upsert_s=time.perf_counter() - t0)
                pending.clear()
                failpoint(f"index.after_upsert_{calls}", workdir)

        for path in chunk_paths:
            table = pq.read_table(path)
            rows = table.to_pylist()
            by_doc: dict[str, list[dict]] = {}
            for r in rows:
                by_doc.setdefault(r["doc_id"], []).append(r)
            # Texts the index already holds were not embedded again: take their vectors from the
            # collection as it is now (not from the plan's snapshot, which a killed try may have outdated).
            need = sorted({r["chunk_hash"] for r in rows if r["chunk_hash"] not in where})
            held_vectors = vectors_by_hash(store, name, need) if need and store.exists(name) else {}
            for doc_id, chunks in by_doc.items():
                vectors = []
                for r in chunks:
                    if r["chunk_hash"] in where:
                        m, row = where[r["chunk_hash"]]
                        vectors.append(np.asarray(mats[m][row]).tolist())
                    elif r["chunk_hash"] in held_vectors:
                        vectors.append(list(held_vectors[r["chunk_hash"]]))
                        reused += 1
                    else:
                        vectors.append(None)
                if any(v is None for v in vectors):
                    skipped_docs.add(doc_id)
                    continue
                written_docs.add(doc_id)
                for r, vec in zip(chunks, vectors, strict=True):
                    new_ids.add(r["point_id"])
                    pending.append(Point(id=r["point_id"], vector=vec, payload={
                        "doc_id": doc_id, "doc_hash": r["doc_hash"], "chunk_index": r["chunk_index"],
                        "n_chunks": r["n_chunks"], "chunk_hash": r["chunk_hash"], "text": r["text"],
                        "n_tokens": r["n_tokens"], "source": r["uri"], "product": product, "version": version,
                        "ingest_run_id": run_id,
                        **({"metadata": json.loads(r["metadata"])} if r.get("metadata") else {})}))
                    if len(pending) >= UPSERT_BATCH:
                        flush()
                manifest.write(json.dumps({"doc_id": doc_id, "chunks": [
                    {"chunk_index": r["chunk_index"], "point_id": r["point_id"]} for r in chunks]}) + "\n")
        flush()
        if skipped_docs and not written_docs:
            raise RuntimeError(f"none of the {len(skipped_docs)} changed documents has all its vectors "
                               "(every embed batch failed): nothing to index")
        failpoint("index.before_delete", workdir)

        stale: list = []
        touched = sorted(written_docs | set(deleted_docs))
        if touched and store.exists(name):
            for i in range(0, len(touched), 1000):
                stale += [p.id for p in store.scroll(name, ["doc_id"], where=("doc_id", touched[i : i + 1000]))
                          if str(p.id) not in new_ids]
            store.delete(name, stale)
        failpoint("index.before_alias", workdir)

        exists = store.exists(name)
        published = bool(promote_alias and exists)
        if published:
            store.point_alias(product, name)
            dropped = prune_versions(store, product, keep_versions)
        else:
            dropped = []
        vectors_total = store.count(name) if exists else 0
        live = store.alias_target(product)
    failpoint("index.end", workdir)
    progress.finish(deleted=len(stale), in_collection=vectors_total)
    rec.metric(vector_count=vectors_total, points_upserted=upserted, vectors_added=upserted,
               vectors_deleted=len(stale), vectors_reused=reused, docs_written=len(written_docs),
               docs_skipped=len(skipped_docs), upsert_seconds=t_upsert, versions_pruned=len(dropped),
               upserts_per_second=upserted / t_upsert if t_upsert else 0.0)
    rec.tag(**{"ragtrail.live_collection": live or "-"})
    rec.artifact(manifest_path, "index")
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserted,
            "deleted": len(stale), "published": published, "live": live, "docs_skipped": len(skipped_docs)}
