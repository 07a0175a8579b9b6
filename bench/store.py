"""The embedded stores side by side: ``make bench-store`` (``SIZES=10000,100000,1000000 KINDS=local,edge``).

For every store kind and size, in a fresh process each (so peak RSS is the store's own): the same seeded
unit vectors (384-d as the bundled model makes, of intrinsic dimension 32 as sentence embeddings are)
with a payload like the index stage's
(``doc_id``, ``chunk_hash``, a short text), written through the store seam (``open_store`` → ``upsert`` in
the index stage's batch size, then ``finish`` where the store has one); then the store is opened again and
asked 200 queries (perturbed copies of stored vectors). Reported per run:

- ``upsert_per_s``: points written per second; ``finish_s``: the store's index build after the writes
  (Edge's ``optimize``; ``write_s`` is both);
- ``open_s``: time to open the store again and answer a first query;
- ``query_p50_ms`` / ``query_p95_ms``: one query, top 10 with payload;
- ``recall_at_10``: overlap with exact cosine search over the same vectors (numpy, brute force);
- ``peak_rss_mb`` of the process (with the benchmark's own copy of the vectors), ``disk_mb`` of the store
  folder; ``finish_cpu_s``: the build's CPU seconds (steadier than wall time on a shared machine) and
  ``load_avg``, the 1-minute load average at the row's end.

The child notes its progress on stderr (every 100k points, the build, the reopen), so a run stopped early
still tells its write rate. ``--merge`` keeps the rows of other sizes and kinds already in ``--out``;
``BENCH_STORE_KEEP=1`` keeps the store folders (to query them again with other settings).

A size whose projected write time passes ``--max-s`` is not run; the projection (from the largest size
run) is written instead and marked ``"extrapolated": true``. Results go to ``bench/results/store.json``.
Timings are this machine's (2 shared cores): compare them as ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIM = 384
QUERIES = 200
BATCH = 256


LATENT = 32  # intrinsic dimension of the synthetic set


def _vectors(n: int, seed: int = 7):
    """``n`` unit vectors in 384-d with a low intrinsic dimension, as sentence embeddings have (points on a
    random 32-d subspace plus a little noise): each has real near neighbours. Pure random 384-d vectors
    would be the pathological case for any graph index — every point about equally far from every other."""
    import numpy as np

    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1).standard_normal((LATENT, DIM), dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for i in range(0, n, 100_000):  # in slices: no float64 copy of the whole set
        m = min(100_000, n - i)
        block = rng.standard_normal((m, LATENT), dtype=np.float32) @ basis
        block += rng.standard_normal((m, DIM), dtype=np.float32) * 0.5
        out[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _du_mb(path: Path) -> float:
    """Disk really used (allocated blocks, as ``du``): Edge preallocates sparse WAL and mmap files."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def _note(what: str) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{time.strftime('%H:%M:%S')} {what} (peak RSS {rss} MB, CPU {_cpu_s():.0f} s)", file=sys.stderr, flush=True)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one(kind: str, n: int, folder: Path) -> dict:
    """Write ``n`` points into a new store of ``kind`` under ``folder``, reopen it and query it."""
    import numpy as np

    from ragtrail.store import Point, StoreSettings, open_store

    vecs = _vectors(n)
    settings = StoreSettings(path=str(folder / "store"), kind="qdrant" if kind == "local" else kind)
    name = "bench__v1"
    __import__(f"ragtrail.store.{settings.kind}")  # the client library's import is not the store's cost
    t0 = time.perf_counter()
    with open_store(settings) as store:
        store.create(name, DIM, {"bench": True})
        for i in range(0, n, BATCH):
            if i and i % 100_000 < BATCH:  # progress on stderr: a long run that is stopped still tells its rate
                _note(f"{i:,} points in {time.perf_counter() - t0:.0f} s")
            store.upsert(name, [Point(id=j, vector=vecs[j].tolist(),
                                      payload={"doc_id": f"d{j // 4}", "chunk_hash": f"{j:016x}", "text": f"chunk {j}"})
                                for j in range(i, min(n, i + BATCH))])
        upsert_s = time.perf_counter() - t0
        finish = getattr(store, "finish", None)
        cpu0 = _cpu_s()
        _note(f"{n:,} points written in {upsert_s:.1f} s; finish")
        if finish is not None:
            finish(name)
        _note(f"finish done in {_cpu_s() - cpu0:.0f} CPU s")
        finish_cpu_s = _cpu_s() - cpu0
        store.point_alias("bench", name)
    write_s = time.perf_counter() - t0

    rng = np.random.default_rng(11)
    picks = rng.integers(0, n, QUERIES)
    queries = vecs[picks] + rng.standard_normal((QUERIES, DIM), dtype=np.float32) * 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)  # near a stored point, not on it
    exact = [set(np.argpartition(-(vecs @ q), 10)[:10].tolist()) for q in queries]
    _note("exact answers computed; reopening")

    t0 = time.perf_counter()
    with open_store(settings) as store:
        target = store.alias_target("bench")
        store.query(target, queries[0].tolist(), 10)
        open_s = time.perf_counter() - t0
        lat, hits = [], 0
        for q, truth in zip(queries, exact, strict=True):
            t1 = time.perf_counter()
            found = store.query(target, q.tolist(), 10, fields=["doc_id"])
            lat.append((time.perf_counter() - t1) * 1000)
            hits += len(truth & {int(h.id) for h in found})
        count = store.count(target)
    lat.sort()
    return {"kind": kind, "points": n, "count": count, "write_s": round(write_s, 2),
            "upsert_per_s": round(n / upsert_s), "finish_s": round(write_s - upsert_s, 2), "open_s": round(open_s, 3),
            "query_p50_ms": round(statistics.median(lat), 2), "query_p95_ms": round(lat[int(0.95 * len(lat)) - 1], 2),
            "recall_at_10": round(hits / (10 * QUERIES), 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "disk_mb": round(_du_mb(folder / "store"), 1), "finish_cpu_s": round(finish_cpu_s, 1),
            "load_avg": round(os.getloadavg()[0], 1), "extrapolated": False}


def _child(kind: str, n: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-store-{kind}-"))
    try:
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(n), str(folder)], stdout=subprocess.PIPE,
                             text=True, check=False)  # the child's progress notes go to stderr as they come
        if out.returncode != 0:
            return {"kind": kind, "points": n, "error": f"exit {out.returncode}", "out": out.stdout.strip()[-300:]}
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if os.environ.get("BENCH_STORE_KEEP"):  # to query the store again with other settings
            print(f"kept {folder}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _projection(last: dict, n: int) -> dict:
    """A size not run: write time and disk scaled linearly from the largest run (marked extrapolated)."""
    f = n / last["points"]
    return {"kind": last["kind"], "points": n, "write_s": round(last["write_s"] * f), "upsert_per_s": last["upsert_per_s"],
            "disk_mb": round(last["disk_mb"] * f), "extrapolated": True,
            "note": f"not run: projected write time past --max-s, scaled from {last['points']:,} points"}


def _edge_settings() -> dict:
    from ragtrail.store import edge_query

    return {"hnsw_m": edge_query.HNSW_M, "hnsw_ef_construct": edge_query.HNSW_EF_CONSTRUCT, "quantization": "int8",
            "search": repr(edge_query.SEARCH), "indexing_threshold_kb": edge_query.INDEXING_THRESHOLD_KB, "wal": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--kinds", default="local,edge")
    ap.add_argument("--max-s", type=float, default=1800, help="skip a size whose projected write passes this")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "store.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other rows already in --out")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RAGTRAIL_LOCK_TIMEOUT_S", "60")
    if args.one:
        kind, n, folder = args.one
        print(json.dumps(one(kind, int(n), Path(folder))))
        return
    rows = []
    for kind in args.kinds.split(","):
        last = None
        for n in sorted(int(s) for s in args.sizes.split(",")):
            if last is not None and "error" not in last and last["write_s"] * n / last["points"] > args.max_s:
                row = _projection(last, n)
            else:
                row = _child(kind, n)
                last = row
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    if args.merge and out.exists():  # keep the rows of the sizes and kinds not run this time
        ran = {(r["kind"], r["points"]) for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if (r["kind"], r["points"]) not in ran] + rows
        rows.sort(key=lambda r: (r["kind"], r["points"]))
    out.write_text(json.dumps({"dim": DIM, "queries": QUERIES, "batch": BATCH, "edge": _edge_settings(),
                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
