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
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtrail.locks import failpoint, file_lock
from ragtrail.progress import Progress
from ragtrail.recorder import Recorder

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
UPSERT_BATCH = int(os.environ.get("RAGTRAIL_UPSERT_BATCH", "256"))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(kind: str, value: str) -> str:
    """Products and versions become collection names: keep them to a safe alphabet."""
    if not isinstance(value, str) or not _NAME.match(value) or "__" in value:
        raise ValueError(
            f"{kind} {value!r} must be 1-63 characters of letters, digits, '_', '-', '.', start with a "
            "letter or digit and not contain '__'"
        )
    return value


def collection_name(product: str, version: str) -> str:
    return f"{check_name('product', product)}__{check_name('version', version)}"


@contextmanager
def open_qdrant(location) -> Iterator:
    """Open a Qdrant client and close it after.

    Args:
        location: a server URL (``http://…``), a local-mode folder, or a callable returning a ready
            client (how the Airflow side hands over a client built from a connection; closed after).

    Local mode admits one process at a time; callers queue on a lock file beside the store instead of
    failing with "already accessed".

    Example::

        with open_qdrant(lambda: QdrantClient(url="http://qdrant:6333", api_key=key)) as client:
            list_versions(client, "handbook")
    """
    from qdrant_client import QdrantClient

    if callable(location):
        client = location()
        try:
            yield client
        finally:
            client.close()
        return
    loc = str(location)
    if loc.startswith(("http://", "https://")):
        client = QdrantClient(url=loc)
        try:
            yield client
        finally:
            client.close()
        return
    Path(loc).mkdir(parents=True, exist_ok=True)
    with file_lock(Path(loc).parent / f".{Path(loc).name}.lock"):
        client = QdrantClient(path=loc)
        try:
            yield client
        finally:
            client.close()


def alias_target(client, alias: str) -> str | None:
    """Return the collection an alias points to, or ``None``."""
    for a in client.get_aliases().aliases:
        if a.alias_name == alias:
            return a.collection_name
    return None


def point_alias(client, alias: str, collection: str) -> None:
    """Move ``alias`` to ``collection`` in one atomic call (searches never see a gap)."""
    from qdrant_client import models

    ops = []
    if alias_target(client, alias) is not None:
        ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
    client.update_collection_aliases(change_aliases_operations=ops)


def list_versions(client, product: str) -> list[dict]:
    """Every built version of a product: collection, point count, config, and whether it is live."""
    live = alias_target(client, product)
    out = []
    for c in client.get_collections().collections:
        if not c.name.startswith(f"{product}__"):
            continue
        meta = client.get_collection(c.name).config.metadata or {}
        out.append({"version": c.name.split("__", 1)[1], "collection": c.name, "live": c.name == live,
                    "points": client.count(c.name, exact=True).count, **meta})
    return sorted(out, key=lambda v: v.get("built_at", 0), reverse=True)


def promote(client, product: str, version: str) -> str:
    """Point the product's alias at an existing version's collection."""
    name = collection_name(product, version)
    if not client.collection_exists(name):
        raise LookupError(f"{product} has no version {version!r}; built: "
                          + ", ".join(v["version"] for v in list_versions(client, product)))
    point_alias(client, product, name)
    return name


def prune_versions(client, product: str, keep: int) -> list[str]:
    """Delete all but the live version and the ``keep`` most recent others; return what was dropped."""
    others = [v for v in list_versions(client, product) if not v["live"]]
    dropped = [v["collection"] for v in others[keep:]]
    for name in dropped:
        client.delete_collection(name)
    return dropped


def ensure_collection(client, name: str, dimension: int, metadata: dict) -> None:
    from qdrant_client import models

    if client.collection_exists(name):
        size = client.get_collection(name).config.params.vectors.size
        if size != dimension:
            raise ValueError(f"collection {name} holds {size}-d vectors, this run made {dimension}-d ones: "
                             "use a new version for a new embedder")
        return
    client.create_collection(name, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                             metadata=metadata)


def scroll_points(client, name: str, fields: list[str], doc_ids: list[str] | None = None,
                  with_vectors: bool = False) -> Iterator:
    """Every point of a collection (optionally only some documents), page by page."""
    from qdrant_client import models

    flt = None
    if doc_ids is not None:
        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=doc_ids))])
    offset = None
    while True:
        points, offset = client.scroll(name, scroll_filter=flt, limit=1024, offset=offset,
                                       with_payload=fields, with_vectors=with_vectors)
        yield from points
        if offset is None:
            return


def vectors_by_hash(client, name: str, hashes: list[str]) -> dict[str, list[float]]:
    """Vectors of points whose ``chunk_hash`` is in ``hashes`` (one per hash)."""
    from qdrant_client import models

    found: dict[str, list[float]] = {}
    for i in range(0, len(hashes), 512):
        flt = models.Filter(must=[models.FieldCondition(key="chunk_hash", match=models.MatchAny(any=hashes[i : i + 512]))])
        offset = None
        while True:
            points, offset = client.scroll(name, scroll_filter=flt, limit=1024, offset=offset,
                                           with_payload=["chunk_hash"], with_vectors=True)
            for p in points:
                found.setdefault(p.payload["chunk_hash"], p.vector)
            if offset is None:
                break
    return found


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
    failed), its old points stay untouched and it is counted in ``docs_skipped``.

    Returns:
        ``{"collection", "alias", "vectors", "upserted", "deleted", "published"}``.
    """
    import numpy as np
    import pyarrow.parquet as pq
    from qdrant_client import models

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
    with open_qdrant(location) as client, manifest_path.open("w") as manifest:
        if dim is None and client.collection_exists(name):
            dim = client.get_collection(name).config.params.vectors.size
        if dim is not None:
            ensure_collection(client, name, dim, {**config, "product": product, "version": version,
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
                client.upsert(name, points=pending, wait=True)
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
            held_vectors = vectors_by_hash(client, name, need) if need and client.collection_exists(name) else {}
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
                    pending.append(models.PointStruct(id=r["point_id"], vector=vec, payload={
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
        if touched and client.collection_exists(name):
            for i in range(0, len(touched), 1000):
                stale += [p.id for p in scroll_points(client, name, ["doc_id"], touched[i : i + 1000])
                          if str(p.id) not in new_ids]
            for i in range(0, len(stale), 1000):
                client.delete(name, points_selector=models.PointIdsList(points=stale[i : i + 1000]), wait=True)
        failpoint("index.before_alias", workdir)

        exists = client.collection_exists(name)
        published = bool(promote_alias and exists)
        if published:
            point_alias(client, product, name)
            dropped = prune_versions(client, product, keep_versions)
        else:
            dropped = []
        vectors_total = client.count(name, exact=True).count if exists else 0
        live = alias_target(client, product)
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
