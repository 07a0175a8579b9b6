"""``make bench``: what Airflow + MLflow cost on top of the bare work, how cheap a re-run is, memory at 4×.

The orchestrator (this file without a sub-command) builds deterministic corpora under
``<repo>/.data/bench`` and runs every measurement in its own child process, timed with ``os.wait4``
(wall, user + system CPU, peak RSS of the child and its descendants):

- ``bare``: the same parsing and chunking → ``SentenceTransformer.encode`` (same batch size) → Qdrant
  local upserts, streamed in batches of documents; no Airflow, no MLflow;
- ``pipeline``: ``ragtrail ingest`` on the same corpus, in a fresh data folder whose Airflow DB was
  migrated beforehand (a one-time install step, not a per-run cost);
- ``rerun``: the same command again (nothing changed);
- ``pipeline 4×``: a 4× larger corpus in another fresh data folder (peak RSS must stay flat);
- ``encode``: texts/s of the torch fp32 and the ONNX int8 backend on the same chunks (one process,
  alternating slices, so both see the same load), and nDCG@10 of both on ``include/sample_corpus_queries.jsonl``.

Usage::

    python bench/run.py [--docs 2000] [--scale 4] [--skip-4x] [--skip-fast]
    python bench/run.py --corpus pgdocs [--pages 150]   # a real corpus against LangChain: bench/real.py
    python bench/run.py --corpus faqs                   # the labelled Perl and Python FAQs, the same way
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
BENCH = REPO / ".data" / "bench"
RESULTS = REPO / "bench" / "results" / "latest.json"
BIN = Path(sys.executable).parent
PRODUCT = "bench"
BATCH_SIZE = 64
FAST_BACKEND = "onnx-int8"


# --------------------------------------------------------------------------- children


def bare_loop(corpus: Path, qdrant: Path, batch_size: int = BATCH_SIZE, docs_per_batch: int = 256) -> dict:
    """Parse, chunk, encode and upsert with no orchestration at all, streaming batches of documents."""
    import uuid

    from ragtrail.sources.parsing import ParseError, parse_file
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import load_model, load_tokenizer, token_window
    from ragtrail.store import Point, open_store

    model = load_model("all-MiniLM-L6-v2")
    tokenizer, window = load_tokenizer("all-MiniLM-L6-v2"), token_window("all-MiniLM-L6-v2")
    opened = open_store(qdrant)  # the same store seam as the pipeline, without the orchestration
    store = opened.__enter__()
    store.create("bare", 384, {})
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith("."))
    n_chunks = 0
    for i in range(0, len(files), docs_per_batch):
        texts, payloads = [], []
        for path in files[i : i + docs_per_batch]:
            rel = str(path.relative_to(corpus))
            for doc in parse_file(rel, path):
                if isinstance(doc, ParseError):
                    continue
                for idx, ch in enumerate(chunk_document(doc.text, tokenizer, 200, 32, window)):
                    texts.append(ch["text"])
                    payloads.append({"doc_id": rel, "chunk_index": idx, "text": ch["text"]})
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        for j in range(0, len(texts), 256):
            store.upsert("bare", [
                Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p['doc_id']}#{p['chunk_index']}")),
                      vector=v.tolist(), payload=p)
                for p, v in zip(payloads[j : j + 256], vectors[j : j + 256], strict=True)])
        n_chunks += len(texts)
    points = store.count("bare")
    opened.__exit__(None, None, None)
    return {"docs": len(files), "chunks": n_chunks, "points": points}


def sample_chunks(corpus: Path, limit: int) -> list[str]:
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import load_tokenizer, token_window

    tok, window = load_tokenizer("all-MiniLM-L6-v2"), token_window("all-MiniLM-L6-v2")
    texts: list[str] = []
    for path in sorted(p for p in corpus.rglob("*.md")):
        texts += [c["text"] for c in chunk_document(path.read_text(), tok, 200, 32, window)]
        if len(texts) >= limit:
            break
    return texts[:limit]


def ndcg_at_10(backend: str) -> float:
    """Mean nDCG@10 over the sample queries (:func:`ragtrail.stages.evaluation.score_rankings`); a document
    scores as its best chunk (exact cosine)."""
    import numpy as np

    from ragtrail.core.settings import SAMPLE_CORPUS
    from ragtrail.sources.parsing import ParseError, parse_file
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import embed_texts, load_tokenizer, token_window
    from ragtrail.stages.evaluation import load_queries, score_rankings

    tok, window = load_tokenizer("all-MiniLM-L6-v2"), token_window("all-MiniLM-L6-v2")
    texts, owners = [], []
    for path in sorted(p for p in SAMPLE_CORPUS.rglob("*") if p.is_file()):
        rel = str(path.relative_to(SAMPLE_CORPUS))
        for doc in parse_file(rel, path):
            if isinstance(doc, ParseError):
                continue
            for ch in chunk_document(doc.text, tok, 200, 32, window):
                texts.append(ch["text"])
                owners.append(rel)
    queries = load_queries(REPO / "include" / "sample_corpus_queries.jsonl")
    chunk_vecs = embed_texts(texts, backend=backend)
    query_vecs = embed_texts([q["text"] for q in queries], backend=backend)
    scores = query_vecs @ chunk_vecs.T
    docs = sorted(set(owners))
    owner_idx = np.array([docs.index(o) for o in owners])
    rankings = []
    for qi in range(len(queries)):
        best = np.full(len(docs), -np.inf)
        np.maximum.at(best, owner_idx, scores[qi])
        rankings.append([docs[i] for i in np.argsort(-best)[:10]])
    return score_rankings(rankings, queries)["ndcg_at_10"]


def encode_rates(corpus: Path, n: int, rounds: int = 3) -> dict:
    """Texts/s of torch fp32 and the fast backend on the corpus's first ``n`` chunks, measured in one
    process, alternating backend slice by slice so that both see the same machine load."""
    from ragtrail.stages.embedding import embed_texts, load_model

    texts = sample_chunks(corpus, n)
    out = {}
    for backend in ("torch", FAST_BACKEND):
        t0 = time.perf_counter()
        load_model("all-MiniLM-L6-v2", backend)
        embed_texts(texts[:BATCH_SIZE], backend=backend)  # warm-up
        out[backend] = {"backend": backend, "texts": len(texts), "seconds": 0.0, "load_s": time.perf_counter() - t0}
    step = max(len(texts) // rounds, 1)
    for i in range(0, len(texts), step):
        for backend in ("torch", FAST_BACKEND):
            t0 = time.perf_counter()
            embed_texts(texts[i : i + step], batch_size=BATCH_SIZE, backend=backend)
            out[backend]["seconds"] += time.perf_counter() - t0
    for backend, row in out.items():
        row.update(texts_per_s=len(texts) / row["seconds"], ndcg10=ndcg_at_10(backend))
    return out


# --------------------------------------------------------------------------- orchestrator


def measure(label: str, cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` as a child; return wall, CPU (user+sys) and peak RSS of it and its descendants."""
    log = BENCH / "logs" / f"{label.replace(' ', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = BENCH / "logs" / f"{label.replace(' ', '_')}.json"
    out.unlink(missing_ok=True)
    with log.open("w") as err, out.open("w") as stdout:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, env={**os.environ, **(env or {})}, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (exit {proc.returncode}); see {log}")
    text = out.read_text().strip()
    result = json.loads(text.splitlines()[-1]) if text else {}
    row = {"label": label, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
           "peak_rss_mb": usage.ru_maxrss / 1024, "result": result}
    print(f"{label:<22}{wall:>9.1f}{row['cpu_s']:>9.1f}{row['peak_rss_mb']:>10.0f}", flush=True)
    return row


def child(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def ingest_cmd(corpus: Path, product: str = PRODUCT) -> list[str]:
    return [str(BIN / "ragtrail"), "ingest", "--source", str(corpus), "--product", product, "--json"]


def fresh_home(name: str) -> dict:
    """A new data folder with a migrated Airflow DB (a one-time install step, kept out of the timings)."""
    home = BENCH / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {"RAGTRAIL_HOME": str(home), "RAGTRAIL_KEEP_WORK": "1"}  # bench/real.py re-reads the run's chunks
    warm = BENCH / "corpus_warmup"
    import corpus as corpus_mod

    corpus_mod.build(warm, 3, seed=1)
    subprocess.run(ingest_cmd(warm, "warmup"), env={**os.environ, **env}, check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return env


def tracking_s_per_task(home: Path) -> float | None:
    """Mean time spent inside the tracking layer per tracked task of the first ``bench`` run in ``home``."""
    code = ("import json,sys; from ragtrail.trail.client import get_client; from ragtrail.core.products import experiment_name;"
            "c=get_client(); e=c.get_experiment_by_name(experiment_name('bench'));"
            "rs=c.search_runs([e.experiment_id], \"tags.`ragtrail.role` = 'task'\", max_results=5000);"
            "p=min({r.data.tags['mlflow.parentRunId'] for r in rs}, key=lambda p: c.get_run(p).info.start_time);"
            "m=[r.data.metrics for r in rs if r.data.tags['mlflow.parentRunId']==p and 'tracking_overhead_s' in r.data.metrics];"
            "v=[x['tracking_overhead_s'] for x in m]; s=sum(x.get('tracking_setup_s', 0) for x in m);"
            "print(json.dumps({'tasks': len(v), 'mean': sum(v)/len(v) if v else None, 'setup_s': s}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RAGTRAIL_HOME": str(home)},
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def orchestrate(args) -> dict:
    import corpus as corpus_mod

    n = args.docs
    c1 = corpus_mod.build(BENCH / f"corpus_{n}", n)
    print(f"corpus: {n} documents of ~200 words in {c1}\n")
    print(f"{'measurement':<22}{'wall s':>9}{'cpu s':>9}{'peak MB':>10}")
    rows = {}
    qdrant = BENCH / "bare_qdrant"
    shutil.rmtree(qdrant, ignore_errors=True)
    rows["bare"] = measure("bare loop", child("bare", "--corpus", str(c1), "--qdrant", str(qdrant)))
    env1 = fresh_home("home_1x")
    rows["pipeline"] = measure("pipeline", ingest_cmd(c1), env1)
    overhead = tracking_s_per_task(BENCH / "home_1x")
    from stages import stage_rates

    overhead["stage_rates"] = stage_rates(BENCH / "home_1x")  # per-task throughput (docs/scaling.md)
    rows["rerun"] = measure("unchanged re-run", ingest_cmd(c1), env1)
    fast: dict = {}
    write_summary(n, rows, fast, overhead)
    if not args.skip_fast:
        fast.update(measure("encode both", child("encode", "--corpus", str(c1), "--texts", str(args.encode_texts)),
                            {"RAGTRAIL_HOME": str(BENCH / "home_encode")})["result"])
        write_summary(n, rows, fast, overhead)
    if not args.skip_4x:
        if args.quarter_base:  # same ratio, a quarter of the cost: the default corpus against one 4x smaller
            small = corpus_mod.build(BENCH / f"corpus_{n // args.scale}", n // args.scale)
            rows["pipeline_quarter"] = measure(f"pipeline 1_{args.scale}", ingest_cmd(small), fresh_home("home_small"))
        else:
            c4 = corpus_mod.build(BENCH / f"corpus_{n * args.scale}", n * args.scale)
            rows["pipeline_4x"] = measure(f"pipeline {args.scale}x", ingest_cmd(c4), fresh_home("home_4x"))
    return write_summary(n, rows, fast, overhead, final=True)


TARGETS = {"pipeline_over_bare": ("<=", 1.10), "rerun_over_first": ("<=", 0.05), "rss_4x_over_1x": ("<=", 1.2),
           "mlflow_s_per_task": ("<=", 0.1), "fast_backend_speedup": (">=", 2.0),
           "fast_backend_ndcg_ratio": (">=", 0.99)}


def write_summary(n: int, rows: dict, fast: dict, overhead: dict, final: bool = False) -> dict:
    """Write what has been measured so far to ``bench/results/latest.json`` (and print the ratios at the end)."""
    pipe = rows["pipeline"]
    rss = None
    if "pipeline_4x" in rows:
        rss = rows["pipeline_4x"]["peak_rss_mb"] / pipe["peak_rss_mb"]
    elif "pipeline_quarter" in rows:
        rss = pipe["peak_rss_mb"] / rows["pipeline_quarter"]["peak_rss_mb"]
    summary = {
        "docs": n,
        "chunks": pipe["result"].get("chunks"),
        "pipeline_over_bare": pipe["wall_s"] / rows["bare"]["wall_s"],
        "pipeline_cpu_over_bare": pipe["cpu_s"] / rows["bare"]["cpu_s"],
        "rerun_over_first": rows["rerun"]["wall_s"] / pipe["wall_s"],
        "rerun_cpu_over_first": rows["rerun"]["cpu_s"] / pipe["cpu_s"],
        "rss_4x_over_1x": rss,
        "mlflow_s_per_task": overhead["mean"],
        "mlflow_setup_s": overhead["setup_s"],
        "tracked_tasks": overhead["tasks"],
        "embeddings_per_s": fast["torch"]["texts_per_s"] if "torch" in fast else None,
        "stage_rates": overhead.get("stage_rates"),
    }
    if FAST_BACKEND in fast:
        summary.update(fast_backend=FAST_BACKEND, embeddings_per_s_fast=fast[FAST_BACKEND]["texts_per_s"],
                       fast_backend_speedup=fast[FAST_BACKEND]["texts_per_s"] / fast["torch"]["texts_per_s"],
                       ndcg10_torch=fast["torch"]["ndcg10"], ndcg10_fast=fast[FAST_BACKEND]["ndcg10"],
                       fast_backend_ndcg_ratio=fast[FAST_BACKEND]["ndcg10"] / fast["torch"]["ndcg10"])
    summary.update(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpus=os.cpu_count(), complete=final,
        runs={k: {kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in r.items() if kk != "result"}
              for k, r in rows.items()},
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
    if final:
        print(f"\n{'ratio':<26}{'measured':>10}  target")
        for key, (op, goal) in TARGETS.items():
            value = summary.get(key)
            if value is None:
                continue
            ok = value <= goal if op == "<=" else value >= goal
            print(f"{key:<26}{value:>10.3f}  {op} {goal}  {'ok' if ok else 'MISSED'}")
        print(f"\nwritten: {RESULTS.relative_to(REPO)}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    p.add_argument("--docs", type=int, default=int(os.environ.get("DOCS") or 2000))
    p.add_argument("--corpus", choices=["synthetic", "pgdocs", "faqs"], default="synthetic")
    p.add_argument("--pages", type=int, default=150, help="pgdocs: manual pages sampled (seeded)")
    p.add_argument("--ingest-args", default="", help="pgdocs: extra `ragtrail ingest` options, e.g. '--chunk-size 128'")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--encode-texts", type=int, default=512)
    p.add_argument("--skip-4x", action="store_true")
    p.add_argument("--skip-fast", action="store_true")
    p.add_argument("--quarter-base", action="store_true",
                   help="memory check against a corpus 4x smaller instead of 4x larger (a quarter of the time)")
    b = sub.add_parser("bare")
    b.add_argument("--corpus", type=Path, required=True)
    b.add_argument("--qdrant", type=Path, required=True)
    e = sub.add_parser("encode")
    e.add_argument("--corpus", type=Path, required=True)
    e.add_argument("--texts", type=int, default=512)
    ec = sub.add_parser("encode-chunks")
    ec.add_argument("--questions", type=Path, required=True)
    ec.add_argument("--backends", default="torch")
    ec.add_argument("files", nargs="*", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "bare":
        print(json.dumps(bare_loop(args.corpus, args.qdrant)))
    elif args.cmd == "encode":
        print(json.dumps(encode_rates(args.corpus, args.texts)))
    elif args.cmd == "encode-chunks":
        import real

        print(json.dumps(real.encode_chunks(args.files, args.questions, args.backends.split(","))))
    elif args.corpus in ("pgdocs", "faqs"):
        import real

        real.run(args, measure, child, ingest_cmd, fresh_home, BENCH)
    else:
        orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
