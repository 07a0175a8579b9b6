"""Ask the index: embed a question with the collection's own embedder and return the nearest chunks."""

from __future__ import annotations

from collections.abc import Callable

from ragtrail.core.settings import DEFAULT_EMBEDDER
from ragtrail.stages import rerank
from ragtrail.store import VectorStore, check_name, open_store


def query_embedder(store: VectorStore, collection: str) -> Callable[[list[str]], object]:
    """The one way questions are embedded: with the embedder *and backend* the collection was built with.

    Searches, the registered retriever, the evaluation gate and tuning all call this, so the gate judges
    exactly the vectors a user's query gets. A collection built before backends existed is torch.

    Returns:
        ``embed(texts) -> float32 array``, one L2-normalised row per text.
    """
    from ragtrail.stages.embedding import embed_texts

    meta = store.metadata(collection)
    embedder = meta.get("embedder") or DEFAULT_EMBEDDER
    backend = meta.get("embed_backend") or "torch"
    return lambda texts: embed_texts(list(texts), embedder, backend=backend)


def search_many(
    product: str,
    queries: dict[str, str],
    *,
    location=None,
    k: int = 10,
    collection: str | None = None,
) -> dict[str, list[dict]]:
    """Answer several queries against the product's live collection (its alias) in one pass.

    Args:
        product: the product whose alias to query.
        queries: query id → question text.
        location: the store, anything :func:`ragtrail.store.resolve_store` accepts (``None``: the
            environment's — ``RAGTRAIL_QDRANT_URL`` + ``RAGTRAIL_QDRANT_API_KEY`` or the data folder).
        k: hits per query.
        collection: query this collection (a version, e.g. ``handbook__v2``) instead of the alias.

    Returns:
        query id → list of ``{"doc_id", "score", "text", "source", "chunk_index"}``, best first. With
        ``RAGTRAIL_RERANKER`` set, the first stage's hits are re-scored by that cross-encoder
        (:mod:`ragtrail.stages.rerank`): ``score`` is its score, ``first_stage_score`` / ``first_stage_rank``
        the first stage's.

    Example::

        search_many("handbook", {"q1": "How do I retry a task?"}, location=".data/qdrant", k=3)
    """
    check_name("product", product)
    target = collection or product
    reranker = rerank.configured()  # None unless RAGTRAIL_RERANKER names a cross-encoder (stages/rerank.py)
    with open_store(location) as store:
        if not store.exists(target):
            raise LookupError(f"product {product!r} has no index yet ({target}): run `ragtrail ingest` first")
        ids = list(queries)
        vectors = query_embedder(store, target)([queries[i] for i in ids]) if ids else []
        results: dict[str, list[dict]] = {}
        for qid, vector in zip(ids, vectors, strict=True):
            hits = store.query(target, vector.tolist(), reranker.depth(k) if reranker else k)
            results[qid] = [
                {"doc_id": h.payload.get("doc_id"), "score": h.score, "text": h.payload.get("text"),
                 "source": h.payload.get("source"), "chunk_index": h.payload.get("chunk_index"),
                 "version": h.payload.get("version")}
                for h in hits
            ]
    return rerank.rerank_results(reranker, queries, results, k)


def search(product: str, query: str, *, location=None, k: int = 10) -> list[dict]:
    """Answer one query; see :func:`search_many`."""
    return search_many(product, {"q": query}, location=location, k=k)["q"]
