"""Stage 4 — dedupe: embed each distinct chunk text once.

Identical texts within the run, and texts the version's collection already holds, are not embedded
again: the write stage copies their vectors. What is left is split into embed batches. Neither set of
hashes is held in memory: the version's is the source state's hash index (``held_path``, a SQLite file,
:class:`ragtrail.stages.state_commit.HeldHashes`), the run's a SQLite file of its own; both are probed once
per batch of 4,096 chunks, with the batch's hashes sorted.

Per chunk file the result says which embed batches hold the vectors its new texts need (``needs``): its own
texts' batches, and the earlier batch of a text first seen in an earlier file. A write task then reads only
those batches, not every batch of the run (:mod:`ragtrail.stages.writing`).
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.stages.arrow_pool import system_arrow_pool


@system_arrow_pool()
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
        ``{"batches": [{"batch", "texts_path", "texts"}], "chunks", "unique_new", "needs"}``; ``needs[i]``: the
        embed batches (sorted numbers) that hold the vectors of ``chunk_paths[i]``'s newly embedded texts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ragtrail.stages.plan import batch_size_within
    from ragtrail.stages.state_commit import HeldHashes

    rec = recorder or Recorder()
    requested = texts_per_batch
    texts_per_batch = batch_size_within(texts_per_batch, sum(pq.ParquetFile(p).metadata.num_rows for p in chunk_paths),
                                        max_batches, stage="dedupe", param="texts_per_batch", unit="texts")
    out_dir = Path(workdir) / "embed"
    out_dir.mkdir(parents=True, exist_ok=True)
    held, seen = HeldHashes(held_path), _SeenOnDisk(out_dir / "seen.sqlite")
    total = in_run_dupes = held_hits = unique_new = 0
    batches: list[dict] = []
    hashes: list[str] = []
    texts: list[str] = []
    needs: list[list[int]] = []

    def flush():
        if hashes:
            path = out_dir / f"texts_{len(batches):05d}.parquet"
            pq.write_table(pa.table({"chunk_hash": hashes, "text": texts}), path)
            batches.append({"batch": len(batches), "texts_path": str(path), "texts": len(hashes)})
            hashes.clear()
            texts.clear()

    for path in chunk_paths:
        wanted: set[int] = set()
        for rb in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["chunk_hash", "text"],
                                                    use_threads=False):
            rows = list(zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True))
            total += len(rows)
            # One sorted probe of the version's hash index and one of the run's, per batch of rows.
            in_index, before = held.which(h for h, _ in rows), seen.which(h for h, _ in rows)
            fresh: dict[str, int] = {}  # hash → the embed batch its text goes to
            for h, text in rows:
                if h in in_index:
                    held_hits += 1
                elif h in before or h in fresh:
                    in_run_dupes += 1
                    wanted.add(before[h] if h in before else fresh[h])
                else:
                    fresh[h] = len(batches)
                    wanted.add(len(batches))
                    hashes.append(h)
                    texts.append(text)
                    if len(hashes) >= texts_per_batch:
                        flush()
            seen.add(fresh)
            unique_new += len(fresh)
        needs.append(sorted(wanted))
    flush()
    held.close()
    seen.close()
    rec.param(texts_per_batch=requested, texts_per_batch_used=texts_per_batch)
    rec.metric(chunks_in=total, unique_new_texts=unique_new, duplicates_in_run=in_run_dupes,
               reused_from_index=held_hits, embeddings_skipped=total - unique_new,
               duplicate_rate=(in_run_dupes / total) if total else 0.0, embed_batches=len(batches))
    return {"batches": batches, "chunks": total, "unique_new": unique_new, "needs": needs}


class _SeenOnDisk:
    """The run's distinct hashes so far and the embed batch of each, in a SQLite file: probed and extended a
    batch at a time."""

    def __init__(self, path: Path):
        import sqlite3

        path.unlink(missing_ok=True)  # a retry starts afresh
        self.path, self.conn = path, sqlite3.connect(str(path))
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("CREATE TABLE seen (h TEXT PRIMARY KEY, batch INTEGER) WITHOUT ROWID")

    def which(self, hashes) -> dict[str, int]:
        """Those of ``hashes`` seen before, each with its embed batch."""
        found: dict[str, int] = {}
        todo = sorted(set(hashes))
        for i in range(0, len(todo), 500):
            part = todo[i : i + 500]
            found.update(self.conn.execute(
                f"SELECT h, batch FROM seen WHERE h IN ({','.join('?' * len(part))})", part))
        return found

    def add(self, batch_of: dict[str, int]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", list(batch_of.items()))

    def close(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)
