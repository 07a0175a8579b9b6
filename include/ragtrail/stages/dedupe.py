"""Stage 4 — dedupe: embed each distinct chunk text once.

Identical texts within the run, and texts the version's collection already holds, are not embedded
again: the index stage copies their vectors. What is left is split into embed batches.
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.recorder import Recorder


def unique_texts(
    chunk_paths: list[str],
    workdir: str | Path,
    *,
    held_path: str | None = None,
    texts_per_batch: int = 2048,
    max_batches: int | None = None,
    recorder: Recorder | None = None,
) -> dict:
    """Collect the chunk texts that need an embedding into ``workdir/embed/texts_<n>.parquet`` batches.

    ``max_batches`` (Airflow's ``max_map_length``): ``texts_per_batch`` grows so that the batches never
    outnumber it (counted from the chunk files' row counts, an upper bound of the distinct new texts).

    Returns:
        ``{"batches": [{"batch", "texts_path", "texts"}], "chunks", "unique_new"}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ragtrail.stages.plan import batch_size_within

    rec = recorder or Recorder()
    requested = texts_per_batch
    texts_per_batch = batch_size_within(texts_per_batch, sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_paths),
                                        max_batches, stage="dedupe", param="texts_per_batch", unit="texts")
    out_dir = Path(workdir) / "embed"
    out_dir.mkdir(parents=True, exist_ok=True)
    held: set[str] = set()
    if held_path and Path(held_path).exists():
        held = set(pq.read_table(held_path).column("chunk_hash").to_pylist())
    seen: set[str] = set()
    total = in_run_dupes = held_hits = 0
    batches: list[dict] = []
    hashes: list[str] = []
    texts: list[str] = []

    def flush():
        if hashes:
            path = out_dir / f"texts_{len(batches):05d}.parquet"
            pq.write_table(pa.table({"chunk_hash": hashes, "text": texts}), path)
            batches.append({"batch": len(batches), "texts_path": str(path), "texts": len(hashes)})
            hashes.clear()
            texts.clear()

    for path in chunk_paths:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["chunk_hash", "text"]):
            for h, text in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True):
                total += 1
                if h in held:
                    held_hits += 1
                elif h in seen:
                    in_run_dupes += 1
                else:
                    seen.add(h)
                    hashes.append(h)
                    texts.append(text)
                    if len(hashes) >= texts_per_batch:
                        flush()
    flush()
    unique_new = len(seen)
    rec.param(texts_per_batch=requested, texts_per_batch_used=texts_per_batch)
    rec.metric(chunks_in=total, unique_new_texts=unique_new, duplicates_in_run=in_run_dupes,
               reused_from_index=held_hits, embeddings_skipped=total - unique_new,
               duplicate_rate=(in_run_dupes / total) if total else 0.0, embed_batches=len(batches))
    return {"batches": batches, "chunks": total, "unique_new": unique_new}
