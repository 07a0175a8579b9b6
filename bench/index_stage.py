"""The index stage alone on a real run's chunks and vectors: points/s, and where its time goes.

Takes the work folder of a finished ``ragtrail ingest`` kept with ``RAGTRAIL_KEEP_WORK=on`` (its
``batches/chunks_*.parquet`` and ``embed/vectors_*.npy`` with their ``texts_*.parquet``), optionally copies
its documents ``--copies`` times under new document and point ids (same texts, vectors and payloads:
a larger corpus of the same shape, as the index stage cannot tell), and runs
:func:`ragtrail.stages.indexing.index_run` into a fresh store of ``--kind``, in this process::

    RAGTRAIL_KEEP_WORK=on ragtrail ingest --source <corpus> --product pg   # once, keeps work/rag_ingest/<run>
    python bench/index_stage.py --work <home>/work/rag_ingest/<run> --copies 16 [--profile]

Reported: points, the stage's wall time (store open to return, as its task line counts it minus the
Airflow/MLflow task overhead) and points/s, its CPU time (all threads) and points per CPU second (the
steadier figure on a shared machine), and the stage's own ``upserts_per_second`` metric (upsert calls
only). ``--profile`` prints the top of a cProfile of the call. Results go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def _inputs(work: Path, copies: int, out: Path, no_sparse: bool = False) -> tuple[list[str], list[dict]]:
    """The run's chunk files (copied ``copies`` times under new ids) and its embed results."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk_files = sorted((work / "batches").glob("chunks_*.parquet"))
    embedded = []
    for v in sorted((work / "embed").glob("vectors_*.npy")):
        e = {"vectors_path": str(v),
             "texts_path": str(v.with_name(v.name.replace("vectors_", "texts_").replace(".npy", ".parquet")))}
        sparse = v.with_name(v.name.replace("vectors_", "sparse_").replace(".npy", ".parquet"))
        if sparse.exists() and not no_sparse:  # the embed stage's BM25 vectors (this release on)
            e["sparse_path"] = str(sparse)
        embedded.append(e)
    paths = []
    for k in range(copies):
        for f in chunk_files:
            t = pq.read_table(f)
            if k:
                ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p}#{k}")) for p in t.column("point_id").to_pylist()]
                docs = [f"{d}#{k}" for d in t.column("doc_id").to_pylist()]
                t = t.set_column(t.schema.get_field_index("point_id"), "point_id", pa.array(ids))
                t = t.set_column(t.schema.get_field_index("doc_id"), "doc_id", pa.array(docs))
            p = out / f"{f.stem}_{k}.parquet"
            pq.write_table(t, p)
            paths.append(str(p))
    return paths, embedded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--kind", default="edge", choices=("edge", "qdrant"))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-sparse-file", action="store_true",
                    help="ignore the embed stage's BM25 files: the index stage encodes every text (as before)")
    args = ap.parse_args()

    from ragtrail.core.recorder import Recorder
    from ragtrail.stages import indexing
    from ragtrail.store import StoreSettings

    tmp = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        (tmp / "in").mkdir()
        (tmp / "wd").mkdir()
        chunk_paths, embedded = _inputs(args.work, args.copies, tmp / "in", args.no_sparse_file)
        __import__(f"ragtrail.store.{'qdrant' if args.kind == 'qdrant' else 'edge'}")  # imports are not the stage's
        settings = StoreSettings(path=str(tmp / "store"), kind=args.kind)
        rec = Recorder()
        prof = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not wall: steadier under load
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        out = indexing.index_run(location=settings, product="pg", version="v1", config={}, chunk_paths=chunk_paths,
                                 embedded=embedded, deleted_docs=[], workdir=tmp / "wd", recorder=rec)
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"kind": args.kind, "points": out["upserted"], "vectors": out["vectors"],
                          "upsert_batch": indexing.UPSERT_BATCH, "wall_s": round(wall, 3),
                          "points_per_s": round(out["upserted"] / wall),
                          "cpu_s": round(cpu, 3), "points_per_cpu_s": round(out["upserted"] / cpu),
                          "upserts_per_second_metric": round(rec.metrics["upserts_per_second"]),
                          "upsert_seconds": round(rec.metrics["upsert_seconds"], 3),
                          "sparse_encoded": rec.metrics["sparse_encoded"],
                          "sparse_files": sum("sparse_path" in e for e in embedded)}))
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
