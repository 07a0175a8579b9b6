"""Stage 4 — index: upsert chunks and their vectors into Qdrant, then point the product alias at them.

Each (product, version) owns one physical collection, ``<product>__<version>``; the product's alias,
``<product>``, is what searches query. Point ids are deterministic (see
:func:`ragtrail.chunking.point_id`), so upserting the same input twice leaves the same points.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtrail.recorder import Recorder

INDEX_MANIFEST_FILE = "index_manifest.jsonl"
UPSERT_BATCH = 256
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
def open_qdrant(location: str | Path) -> Iterator:
    """Open a Qdrant client for a server URL (``http://…``) or a local-mode folder, and close it after.

    Local mode allows one client per folder at a time, so never hold one longer than a stage.
    """
    from qdrant_client import QdrantClient

    loc = str(location)
    client = QdrantClient(url=loc) if loc.startswith(("http://", "https://")) else QdrantClient(path=loc)
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


def ensure_collection(client, name: str, dimension: int, metadata: dict) -> None:
    from qdrant_client import models

    if client.collection_exists(name):
        size = client.get_collection(name).config.params.vectors.size
        if size != dimension:
            raise ValueError(f"collection {name} holds {size}-d vectors, this run made {dimension}-d ones: "
                             "use a new version for a new embedder")
        return
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        metadata=metadata,
    )


def index_chunks(
    chunks_path: str | Path,
    embeddings_path: str | Path,
    workdir: str | Path,
    *,
    location: str | Path,
    product: str,
    version: str,
    embedder: str,
    run_id: str | None = None,
    recorder: Recorder | None = None,
) -> dict:
    """Upsert all chunks with their vectors and make this version the product's live collection.

    Returns:
        ``{"collection", "alias", "vectors", "upserted"}`` where ``vectors`` is the number of points
        in the collection after the run.
    """
    import numpy as np
    import pyarrow.parquet as pq
    from qdrant_client import models

    rec = recorder or Recorder()
    name = collection_name(product, version)
    matrix = np.load(embeddings_path, mmap_mode="r")
    parquet = pq.ParquetFile(chunks_path)
    if parquet.metadata.num_rows != matrix.shape[0]:
        raise ValueError(f"{parquet.metadata.num_rows} chunks but {matrix.shape[0]} embeddings: inputs disagree")
    rec.param(collection=name, alias=product, qdrant=str(location), upsert_batch=UPSERT_BATCH)
    manifest_path = Path(workdir) / INDEX_MANIFEST_FILE
    by_doc: dict[str, list] = {}
    upserted = 0
    upsert_seconds = 0.0
    with open_qdrant(location) as client:
        ensure_collection(client, name, int(matrix.shape[1]),
                          {"product": product, "version": version, "embedder": embedder})
        cols = ["point_id", "doc_id", "chunk_index", "text", "n_tokens", "chunk_hash", "doc_hash", "uri", "metadata"]
        for batch in parquet.iter_batches(batch_size=UPSERT_BATCH, columns=cols):
            rows = batch.to_pylist()
            vectors = matrix[upserted : upserted + len(rows)]
            points = [
                models.PointStruct(
                    id=r["point_id"],
                    vector=vectors[i].tolist(),
                    payload={"doc_id": r["doc_id"], "chunk_index": r["chunk_index"], "text": r["text"],
                             "n_tokens": r["n_tokens"], "chunk_hash": r["chunk_hash"], "doc_hash": r["doc_hash"],
                             "source": r["uri"], "product": product, "version": version, "ingest_run_id": run_id,
                             **({"metadata": json.loads(r["metadata"])} if r["metadata"] else {})},
                )
                for i, r in enumerate(rows)
            ]
            t0 = time.perf_counter()
            client.upsert(name, points=points, wait=True)
            upsert_seconds += time.perf_counter() - t0
            upserted += len(rows)
            for r in rows:
                by_doc.setdefault(r["doc_id"], []).append([r["chunk_index"], r["point_id"]])
        point_alias(client, product, name)
        vectors_total = client.count(name, exact=True).count
    with manifest_path.open("w") as fh:
        for doc_id, chunks in by_doc.items():
            fh.write(json.dumps({"doc_id": doc_id, "chunks": [{"chunk_index": c, "point_id": p} for c, p in chunks]}) + "\n")
    rec.metric(vector_count=vectors_total, points_upserted=upserted, upsert_seconds=upsert_seconds,
               upserts_per_second=upserted / upsert_seconds if upsert_seconds else 0.0)
    rec.artifact(manifest_path, "index")
    return {"collection": name, "alias": product, "vectors": vectors_total, "upserted": upserted}
