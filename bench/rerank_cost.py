"""What the re-ranking seam costs per query: ``python bench/rerank_cost.py [--out bench/results/rerank_cost.json]``.

No re-ranker weights can be downloaded here, so two cross-encoders are built (tests/cross_encoders.py):

- ``tiny``: the tests' hand-set 1-layer model (hidden 8) — the seam's own overhead (pairs, tokenizer, sort);
- ``minilm-l6-random``: a *randomly initialised* BERT of cross-encoder/ms-marco-MiniLM-L-6-v2's shape
  (6 layers, hidden 384, 12 heads, 1536 intermediate, 30,522-word vocabulary, max 512 tokens) on the bundled
  model's tokenizer. Its scores mean nothing; its compute per pair is a trained one's, so its time is an
  estimate of what that real model costs on this CPU.

The bundled sample corpus is parsed and chunked at the pipeline's defaults into a real Edge store (embedder
all-MiniLM-L6-v2, torch), then each of its first ``--questions`` (default 10) questions is asked alone through
:func:`ragtrail.stages.search.search_many` (what ``ragtrail search`` and the pyfunc call), k = 10: without a
re-ranker, then with each model at N = 10 and 50 — interleaved per question, so that the shared machine's load
falls on every setting alike. Reported: p50/p95 wall ms and p50 CPU ms (user + system, all threads) of one search
and their ratio to the dense-only search of the same run; and the re-rank step alone (the cross-encoder on the
first question's top 50 chunks, median CPU ms of 3). Timings are this machine's (2 cores, shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DEPTHS = (10, 50)
K = 10


def _store(root: Path):
    from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, SAMPLE_CORPUS
    from ragtrail.sources.parsing import parse_bytes
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import embed_texts, load_tokenizer, token_window
    from ragtrail.store import Point, StoreSettings, open_store

    tok, window = load_tokenizer(), token_window()
    rows = []
    for path in sorted(p for p in SAMPLE_CORPUS.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(SAMPLE_CORPUS))
        text = parse_bytes(rel, path.read_bytes()).text
        rows += [(rel, i, c["text"]) for i, c in
                 enumerate(chunk_document(text, tok, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP, window))]
    vectors = embed_texts([t for _, _, t in rows])
    settings = StoreSettings(path=str(root / "edge"), kind="edge")
    with open_store(settings) as store:
        store.create("bench__v1", vectors.shape[1], {"embedder": "all-MiniLM-L6-v2", "embed_backend": "torch"})
        store.upsert("bench__v1", [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{d}#{i}")), vector=v.tolist(),
                                         payload={"doc_id": d, "chunk_index": i, "text": t})
                                   for (d, i, t), v in zip(rows, vectors, strict=True)])
        store.finish("bench__v1")
        store.point_alias("bench", "bench__v1")
    tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for _, _, t in rows]
    return settings, len(rows), statistics.mean(tokens)


def _search(settings, question: str, reranker: str | None, n: int) -> tuple[float, float]:
    """Wall and CPU ms of one ``search_many`` call (one question, k = 10) with this re-ranker setting."""
    from ragtrail.stages.search import search_many

    os.environ.pop("RAGTRAIL_RERANKER", None)
    if reranker:
        os.environ["RAGTRAIL_RERANKER"], os.environ["RAGTRAIL_RERANK_TOP_N"] = reranker, str(n)
    w0, c0 = time.perf_counter(), time.process_time()
    search_many("bench", {"q": question}, location=settings, k=K)
    return (time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000


def _summary(wall: list[float], cpu: list[float]) -> dict:
    ordered = sorted(wall)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 1),
            "cpu_p50_ms": round(statistics.median(cpu), 1)}


def _step_alone(folder: Path, question: str, texts: list[str], repeats: int = 3) -> float:
    """Median CPU ms of the cross-encoder scoring ``len(texts)`` pairs (the re-rank step alone)."""
    from ragtrail.stages.rerank import load_reranker

    model = load_reranker(folder)
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        model.predict([(question, t) for t in texts], batch_size=32, show_progress_bar=False)
        times.append((time.process_time() - c0) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=10, help="how many of the 30 sample questions to ask")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import torch
    from cross_encoders import random_like, tiny_fruit_ranker

    from ragtrail.stages.evaluation import SAMPLE_QUERIES, load_queries

    questions = [q["text"] for q in load_queries(SAMPLE_QUERIES)][:args.questions]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings, chunks, mean_tokens = _store(root)
        models = {"tiny": tiny_fruit_ranker(root / "tiny"), "minilm-l6-random": random_like(root / "minilm")}
        configs = [("dense only", None, 0)] + [(f"{m} N={n}", str(f), n) for m, f in models.items() for n in DEPTHS]
        for _, folder, n in configs:  # warm: each model loaded once, the store opened once
            _search(settings, questions[0], folder, n)
        wall = {c[0]: [] for c in configs}
        cpu = {c[0]: [] for c in configs}
        for q in questions:  # interleaved, so a change in the machine's load hits every setting alike
            for name, folder, n in configs:
                w, c = _search(settings, q, folder, n)
                wall[name].append(w)
                cpu[name].append(c)
        out = {"what": __doc__.split("\n\n", 1)[0], "chunks": chunks, "mean_chunk_tokens": round(mean_tokens, 1),
               "queries": len(questions), "k": K, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "load_avg_1min_at_start": os.getloadavg()[0],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "searches": {}}
        dense = _summary(wall["dense only"], cpu["dense only"])
        for name, _, n in configs:
            row = _summary(wall[name], cpu[name])
            if n:
                row["p50_over_dense"] = round(row["p50_ms"] / dense["p50_ms"], 2)
                row["cpu_p50_over_dense"] = round(row["cpu_p50_ms"] / dense["cpu_p50_ms"], 2)
            out["searches"][name] = row
        from ragtrail.stages.search import search_many

        os.environ.pop("RAGTRAIL_RERANKER", None)
        texts = [h["text"] for h in search_many("bench", {"q": questions[0]}, location=settings, k=50)["q"]]
        out["rerank_step_alone_cpu_ms"] = {f"{m} {len(texts)} pairs": _step_alone(f, questions[0], texts)
                                           for m, f in models.items()}
        os.environ.pop("RAGTRAIL_RERANK_TOP_N", None)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
