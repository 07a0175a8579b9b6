"""Ask the index: the one search path of every caller — the CLI, the REST API, ``ragtrail.retriever`` and the
registered model, the evaluation (and so the gate, the canary and tuning).

A version answers in its retrieval mode (its ``retrieval_mode`` / ``fusion`` / ``sparse_weight`` metadata,
from the run spec): ``dense`` (the question's embedding, cosine), ``sparse`` (BM25: the question's terms, IDF
from the collection) or ``hybrid`` (both searched in one Qdrant Query API batch, their candidates fused by
RRF or DBSF with the BM25 side weighted ``sparse_weight``: :func:`ragtrail.store.base.fuse`). A version
built before sparse vectors existed answers in dense mode whatever is asked (a warning says so). Each hit
says which prefetch found it (``found_by``): a re-ranking stage hooks in after :func:`search_collection`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ragtrail.core.settings import DEFAULT_EMBEDDER, DEFAULT_FUSION, LEGACY_SPARSE_WEIGHT
from ragtrail.stages import rerank
from ragtrail.store import Hit, VectorStore, check_name, open_store
from ragtrail.store.base import FUSIONS, MODES, SearchQuery, check_sparse_weight

log = logging.getLogger(__name__)


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


def sparse_ready(store: VectorStore, collection: str, meta: dict | None = None) -> bool:
    """Whether the collection holds BM25 vectors for its chunks (built by this release's index stage)."""
    meta = store.metadata(collection) if meta is None else meta
    return isinstance(meta.get("sparse"), dict) and store.has_sparse(collection)


def resolve_mode(store: VectorStore, collection: str, mode: str | None = None,
                 fusion: str | None = None) -> tuple[str, str]:
    """``(mode, fusion)`` a search of ``collection`` runs in: the one asked, else the version's own; dense for
    a version without sparse vectors (one built before them, or a migrated one)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"retrieval mode must be one of {', '.join(MODES)} (got {mode!r})")
    if fusion is not None and fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)} (got {fusion!r})")
    meta = store.metadata(collection)
    mode = mode or meta.get("retrieval_mode") or "dense"
    fusion = fusion or meta.get("fusion") or DEFAULT_FUSION
    if mode != "dense" and not sparse_ready(store, collection, meta):
        log.warning("%s has no sparse (BM25) vectors — it was built before them: searching it in dense mode, "
                    "not %s (build a new version to search it in %s mode)", collection, mode, mode)
        mode = "dense"
    return mode, fusion


def resolve_sparse_weight(store: VectorStore, collection: str, sparse_weight: float | None = None) -> float:
    """The BM25 side's weight in a hybrid search of ``collection``: the one asked, else the version's own
    (``sparse_weight`` metadata); a version built before the weight existed keeps the equal-weight fusion it
    was judged with (:data:`~ragtrail.core.settings.LEGACY_SPARSE_WEIGHT`)."""
    if sparse_weight is not None:
        return check_sparse_weight(sparse_weight)
    own = store.metadata(collection).get("sparse_weight")
    return check_sparse_weight(own) if own is not None else LEGACY_SPARSE_WEIGHT


def search_collection(store: VectorStore, collection: str, texts: list[str], k: int, *, mode: str | None = None,
                      fusion: str | None = None, sparse_weight: float | None = None,
                      fields: list[str] | bool = True, embed: Callable | None = None) -> list[list[Hit]]:
    """Answer ``texts`` against ``collection`` (a name or alias) of an open store, best hits first.

    One ``query_batch`` for all texts. A question with no searchable terms (empty, only stop words)
    has no BM25 vector: in ``sparse`` or ``hybrid`` mode it is answered by its dense search alone (its hits
    say ``found_by: ("dense",)``). In sparse mode a question none of whose terms any chunk holds gets no hits
    (a warning says so); dense and hybrid modes always answer from a non-empty collection.

    Args:
        mode, fusion: override the version's own (:func:`resolve_mode`).
        sparse_weight: the BM25 side's weight in hybrid mode, 0..1 (:func:`resolve_sparse_weight`).
        embed: the question embedder (default: :func:`query_embedder`; the evaluation passes its warm one).
    """
    from ragtrail.store.sparse import encoder_for

    texts = ["" if t is None else str(t) for t in texts]
    if not texts:
        return []
    mode, fusion = resolve_mode(store, collection, mode, fusion)
    weight = resolve_sparse_weight(store, collection, sparse_weight)
    sparse = encoder_for(store.metadata(collection)).queries(texts) if mode != "dense" else [None] * len(texts)
    wants = [mode if s is None or s.indices else "dense" for s in sparse]
    for text, want in zip(texts, wants, strict=True):
        if want != mode:
            log.warning("query %r has no searchable terms for BM25 (empty or only stop words): answered by "
                        "its dense search alone", text[:80])
    dense_needed = [i for i, w in enumerate(wants) if w != "sparse"]
    dense: dict[int, list[float]] = {}
    if dense_needed:
        vectors = (embed or query_embedder(store, collection))([texts[i] for i in dense_needed])
        dense = {i: v.tolist() for i, v in zip(dense_needed, vectors, strict=True)}
    queries = [SearchQuery(dense=dense.get(i), sparse=sparse[i] if w != "dense" else None, mode=w, fusion=fusion,
                           sparse_weight=weight) for i, w in enumerate(wants)]
    found = store.query_batch(collection, queries, k, fields)
    for text, want, hits in zip(texts, wants, found, strict=True):
        if want == "sparse" and not hits:
            log.warning("no chunk holds any term of query %r (sparse mode matches words, not meaning): no hits",
                        text[:80])
    return found


def hit_dict(h: Hit) -> dict:
    """A hit as the callers hand it on: ``doc_id``, ``score``, ``text``, ``source``, ``chunk_index``,
    ``version`` and ``found_by`` (the prefetches that held it: ``dense``, ``sparse``)."""
    return {"doc_id": h.payload.get("doc_id"), "score": h.score, "text": h.payload.get("text"),
            "source": h.payload.get("source"), "chunk_index": h.payload.get("chunk_index"),
            "version": h.payload.get("version"), "found_by": list(h.found_by)}


def search_many(
    product: str,
    queries: dict[str, str],
    *,
    location=None,
    k: int = 10,
    collection: str | None = None,
    mode: str | None = None,
    fusion: str | None = None,
    sparse_weight: float | None = None,
) -> dict[str, list[dict]]:
    """Answer several queries against the product's live collection (its alias) in one pass.

    Args:
        product: the product whose alias to query.
        queries: query id → question text.
        location: the store, anything :func:`ragtrail.store.resolve_store` accepts (``None``: the
            environment's — ``RAGTRAIL_QDRANT_URL`` + ``RAGTRAIL_QDRANT_API_KEY`` or the data folder).
        k: hits per query.
        collection: query this collection (a version, e.g. ``handbook__v2``) instead of the alias.
        mode: ``dense``, ``sparse`` or ``hybrid``; ``None``: the version's own retrieval mode.
        fusion: ``rrf`` or ``dbsf`` for hybrid; ``None``: the version's own.
        sparse_weight: the BM25 side's weight (0..1) for hybrid; ``None``: the version's own.

    Returns:
        query id → list of ``{"doc_id", "score", "text", "source", "chunk_index", "version", "found_by"}``,
        best first. With ``RAGTRAIL_RERANKER`` set, the first stage's hits are re-scored by that
        cross-encoder (:mod:`ragtrail.stages.rerank`): ``score`` is its score, ``first_stage_score`` /
        ``first_stage_rank`` the first stage's.

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
        hits = search_collection(store, target, [queries[i] for i in ids], reranker.depth(k) if reranker else k,
                                 mode=mode, fusion=fusion, sparse_weight=sparse_weight)
        results = {qid: [hit_dict(h) for h in found] for qid, found in zip(ids, hits, strict=True)}
    return rerank.rerank_results(reranker, queries, results, k)


def search(product: str, query: str, *, location=None, k: int = 10, mode: str | None = None) -> list[dict]:
    """Answer one query; see :func:`search_many`."""
    return search_many(product, {"q": query}, location=location, k=k, mode=mode)["q"]
