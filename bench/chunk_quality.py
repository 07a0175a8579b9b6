"""Retrieval quality of the chunker alone: chunk counts, chunking time, MRR@10 / nDCG@10 / recall@10.

Parses every file of a labelled corpus as ingest does (:func:`ragtrail.sources.parsing.parse_bytes`, in process),
chunks it with :func:`ragtrail.stages.chunking.chunk_document` at the pipeline's defaults, embeds the chunks
with the default model (fp32 torch) and ranks documents by their best chunk (exact cosine), scored by
:func:`ragtrail.stages.evaluation.score_rankings`. Whatever ``ragtrail`` the interpreter imports is measured,
so running it from two checkouts compares two chunkers on the same corpora.

Usage::

    python bench/chunk_quality.py [--pgdocs 300] [--faqs] [--out result.json]

``--faqs`` adds the BEIR-style FAQ set (``bench/faqs.py``: the Perl and Python FAQs' own questions, their
answers as the corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def corpus_chunks(corpus: Path) -> tuple[list[str], list[str], int, float]:
    """Every file of ``corpus`` parsed (in process) and chunked at the pipeline's defaults:
    ``(texts, owners, n_docs, chunking_s)``, ``owners[i]`` the document of ``texts[i]``."""
    from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
    from ragtrail.sources.parsing import parse_bytes
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import load_tokenizer, token_window

    tok, window = load_tokenizer(), token_window()
    docs = []
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(corpus))
        docs.append((rel, parse_bytes(rel, path.read_bytes()).text))  # in process: no sandbox start-ups
    texts, owners, chunk_s = [], [], 0.0
    for rel, text in docs:
        t0 = time.perf_counter()
        chunks = chunk_document(text, tok, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP, window)
        chunk_s += time.perf_counter() - t0
        texts += [c["text"] for c in chunks]
        owners += [rel] * len(chunks)
    return texts, owners, len(docs), chunk_s


def rank_quality(chunk_vecs, query_vecs, owners: list[str], queries: list[dict]) -> dict:
    """MRR@10 / nDCG@10 / recall@10 of documents ranked by their best chunk (exact cosine, top 100 chunks)."""
    import numpy as np

    from ragtrail.stages.evaluation import documents_from_chunks, score_rankings

    scores = query_vecs @ chunk_vecs.T
    rankings = [[d for d, _ in documents_from_chunks([{"doc_id": owners[i], "score": float(scores[qi, i])}
                                                      for i in np.argsort(-scores[qi])[:100]])]
                for qi in range(len(queries))]
    quality = score_rankings(rankings, queries)
    return {k: round(quality[k], 4) for k in ("mrr_at_10", "ndcg_at_10", "recall_at_10")}


def measure(corpus: Path, questions: Path) -> dict:
    from ragtrail.stages.embedding import embed_texts
    from ragtrail.stages.evaluation import load_queries

    texts, owners, n_docs, chunk_s = corpus_chunks(corpus)
    queries = load_queries(questions)
    quality = rank_quality(embed_texts(texts), embed_texts([q["text"] for q in queries]), owners, queries)
    return {"docs": n_docs, "chunks": len(texts), "queries": len(queries), "chunking_s": round(chunk_s, 3),
            **quality}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgdocs", type=int, default=300, help="pages of the PostgreSQL manual (0: skip)")
    ap.add_argument("--faqs", action="store_true", help="also the Perl + Python FAQ set (bench/faqs.py)")
    ap.add_argument("--no-sample", action="store_true", help="skip the bundled sample corpus")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from ragtrail.core.settings import SAMPLE_CORPUS

    out = {} if args.no_sample else {"sample": measure(SAMPLE_CORPUS, REPO / "include" / "sample_corpus_queries.jsonl")}
    if args.pgdocs:
        import pgdocs

        corpus, questions, _ = pgdocs.prepare(REPO / ".data" / "bench" / "pgdocs", args.pgdocs)
        out["pgdocs"] = measure(corpus, questions)
    if args.faqs:
        import faqs

        corpus, questions, _ = faqs.prepare(REPO / ".data" / "bench" / "faqs")
        out["faqs"] = measure(corpus, questions)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
