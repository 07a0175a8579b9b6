"""Ask the index: embed a question with the collection's own embedder and return the nearest chunks."""

from __future__ import annotations

from pathlib import Path

from ragtrail.indexing import check_name, open_qdrant
from ragtrail.settings import DEFAULT_EMBEDDER


def search_many(
    product: str,
    queries: dict[str, str],
    *,
    location: str | Path,
    k: int = 10,
    collection: str | None = None,
) -> dict[str, list[dict]]:
    """Answer several queries against the product's live collection (its alias) in one pass.

    Args:
        product: the product whose alias to query.
        queries: query id → question text.
        location: Qdrant server URL or local-mode folder.
        k: hits per query.
        collection: query this collection (a version, e.g. ``handbook__v2``) instead of the alias.

    Returns:
        query id → list of ``{"doc_id", "score", "text", "source", "chunk_index"}``, best first.

    Example::

        search_many("handbook", {"q1": "How do I retry a task?"}, location=".data/qdrant", k=3)
    """
    from ragtrail.embedding import embed_texts

    check_name("product", product)
    target = collection or product
    with open_qdrant(location) as client:
        if not client.collection_exists(target):
            raise LookupError(f"product {product!r} has no index yet ({target}): run `ragtrail ingest` first")
        meta = client.get_collection(target).config.metadata or {}
        embedder = meta.get("embedder") or DEFAULT_EMBEDDER
        ids = list(queries)
        backend = meta.get("embed_backend") or "torch"  # queries in the same vector space as the points
        vectors = embed_texts([queries[i] for i in ids], embedder, backend=backend) if ids else []
        results: dict[str, list[dict]] = {}
        for qid, vector in zip(ids, vectors, strict=True):
            hits = client.query_points(target, query=vector.tolist(), limit=k, with_payload=True).points
            results[qid] = [
                {"doc_id": h.payload.get("doc_id"), "score": float(h.score), "text": h.payload.get("text"),
                 "source": h.payload.get("source"), "chunk_index": h.payload.get("chunk_index"),
                 "version": h.payload.get("version")}
                for h in hits
            ]
    return results


def search(product: str, query: str, *, location: str | Path, k: int = 10) -> list[dict]:
    """Answer one query; see :func:`search_many`."""
    return search_many(product, {"q": query}, location=location, k=k)["q"]
