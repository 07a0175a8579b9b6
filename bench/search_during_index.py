"""Searches of a live product while the index stage writes into the same embedded store: do readers wait?

Takes a data folder (``RAGTRAIL_HOME``) with a live product and the kept work folder of a run
(``RAGTRAIL_KEEP_WORK=on``, as for ``bench/index_stage.py``), copies the data folder, and times searches of
the product in three phases, one after the other:

- ``idle``: nothing else runs;
- ``new_version``: a writer process runs the index stage into a *new* version of the product (another
  collection of the same store folder), over and over, for the whole phase;
- ``live_version``: the writer upserts into the *live* collection (what an incremental run does);
- ``cpu_hog``: the control — a process that keeps one core busy and touches no store, so that what the
  writer costs a reader through the CPU is told apart from any waiting for the store.

Each phase times ``--cli`` searches through the CLI (``ragtrail search``: a new process, its start-up and
model load included, what a user waits for) and ``--calls`` searches in this process through
:func:`ragtrail.stages.search.search` (store opened per call: the time a reader waits for the shard shows
here without the CLI's start-up). The writer takes one of the 2 cores, so part of any slow-down is CPU,
not waiting; the writer's own upsert calls are counted to show it really wrote throughout::

    python bench/search_during_index.py --home <home> --product pg --work <home>/work/rag_ingest/<run>
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import sys, time, tempfile, shutil
from pathlib import Path
sys.path.insert(0, {bench!r})
from index_stage import _inputs
from ragtrail.core.recorder import Recorder
from ragtrail.stages import indexing
from ragtrail.store import StoreSettings, open_store
tmp = Path(tempfile.mkdtemp(prefix="bench-writer-"))
(tmp / "in").mkdir()
chunk_paths, embedded = _inputs(Path({work!r}), {copies}, tmp / "in")
settings, n, points = StoreSettings(path={store!r}, kind="edge"), 0, 0
stop = Path({stop!r})
while not stop.exists():
    version = {version!r} or f"w{{n}}"
    wd = tmp / f"wd{{n}}"
    wd.mkdir()
    out = indexing.index_run(location=settings, product={product!r}, version=version, config={{}},
                             chunk_paths=chunk_paths, embedded=embedded, deleted_docs=[], workdir=wd,
                             recorder=Recorder())
    points += out["upserted"]
    if not {version!r}:
        with open_store(settings) as s:
            s.delete_collection(out["collection"])
    n += 1
print(n, points, flush=True)
shutil.rmtree(tmp, ignore_errors=True)
"""


def _cli(product: str, query: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("ragtrail")), "search", "--product", product, query],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def _phase(name: str, args, home: Path, env: dict, writer_version: str | None) -> dict:
    from ragtrail.stages.search import search
    from ragtrail.store import StoreSettings

    store = home / "qdrant"
    proc, stop = None, home / f"stop-{name}"
    if writer_version == "hog":  # the control: one core kept busy by a process that touches no store
        code = f"import time, pathlib\nstop = pathlib.Path({str(stop)!r})\nwhile not stop.exists():\n    sum(range(200000))\nprint(0, 0)"
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(1)
    elif writer_version is not None:
        code = WRITER.format(bench=str(Path(__file__).parent), work=str(args.work), copies=args.copies,
                             store=str(store), stop=str(stop), version=writer_version, product=args.product)
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(3)  # the writer's imports and its first batch under way
    settings = StoreSettings(path=str(store), kind="edge")
    calls = []
    for i in range(args.calls):
        t0 = time.perf_counter()
        hits = search(args.product, args.queries[i % len(args.queries)], location=settings)
        calls.append(time.perf_counter() - t0)
        assert hits, "a search of the live product answered nothing"
    cli = [_cli(args.product, args.queries[i % len(args.queries)], env) for i in range(args.cli)]
    writes = None
    if proc is not None:
        stop.touch()
        out, _ = proc.communicate(timeout=600)
        runs, points = (int(x) for x in out.split())
        writes = {"index_runs": runs, "points_written": points}

    def stats(xs):
        xs = sorted(xs)
        return {"n": len(xs), "p50_s": round(statistics.median(xs), 4),
                "p95_s": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 4), "max_s": round(xs[-1], 4)}

    return {"phase": name, "in_process": stats(calls), "cli": stats(cli), "writer": writes,
            "load_1min": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--product", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--copies", type=int, default=12)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--cli", type=int, default=8)
    ap.add_argument("--queries", nargs="+", default=["change a run-time parameter", "write-ahead log",
                                                        "create an index concurrently", "vacuum"])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sdi-"))
    try:
        home = tmp / "home"
        shutil.copytree(args.home, home, ignore=shutil.ignore_patterns("work", "logs"))
        env = {**os.environ, "RAGTRAIL_HOME": str(home)}
        os.environ["RAGTRAIL_HOME"] = str(home)
        from ragtrail.store import StoreSettings, open_store

        with open_store(StoreSettings(path=str(home / "qdrant"), kind="edge")) as s:
            live = s.alias_target(args.product)
        live_version = live.split("__", 1)[1]
        results = [_phase("idle", args, home, env, None),
                   _phase("cpu_hog", args, home, env, "hog"),
                   _phase("new_version", args, home, env, ""),
                   _phase("live_version", args, home, env, live_version),
                   _phase("idle_again", args, home, env, None)]
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
