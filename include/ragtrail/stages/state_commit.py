"""The source state after a run's writes (the index stage), and the chunk-hash index the dedupe stage probes.

:func:`commit_state` applies a run's delta (:mod:`ragtrail.stages.sync_state`) to a copy of the state, in one
SQLite transaction, so that the state again says what the collection holds:

- a document of a read object that was written (or whose text did not change) takes the object's new
  version; one that was **not** written (its chunk or embed batch failed) keeps its old hash under an
  empty version, so the next run reads its object again;
- a gone document leaves the state when its points were deleted (``sync_mode=full``), and stays while
  the index keeps it (``incremental``);
- ``chunks`` loses the rows of every written or deleted document and gains those of the written ones;
  a held hash the collection turned out not to hold (the index stage found no vector for it) leaves it,
  so that the next run embeds it again.

:class:`HeldHashes` answers "which of these chunk hashes does the version already hold" in sorted batches
of indexed look-ups: the dedupe stage never loads the set of every hash.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ragtrail.stages.index_state import keep, local
from ragtrail.stages.sync_state import create_state, delta_meta, read_only

_PROBE = 500  # host parameters per IN (…) look-up (SQLite allows 999 on old builds)
_UPSERT = "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _batches(values: Iterable, n: int = _PROBE) -> Iterator[list]:
    batch: list = []
    for v in values:
        batch.append(v)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


class HeldHashes:
    """The chunk hashes a state file holds, probed in sorted batches (an empty index without a file)."""

    def __init__(self, path: str | Path | None):
        self.conn = read_only(path) if path and Path(path).exists() else None

    def which(self, hashes: Iterable[str]) -> set[str]:
        """Those of ``hashes`` the version holds."""
        if self.conn is None:
            return set()
        found: set[str] = set()
        for batch in _batches(sorted(set(hashes))):
            sql = f"SELECT DISTINCT chunk_hash FROM chunks WHERE chunk_hash IN ({','.join('?' * len(batch))})"
            found.update(h for (h,) in self.conn.execute(sql, batch))
        return found

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _doc_row(r: dict, unwritten: set[str], deleted: set[str]) -> tuple[str, tuple | None]:
    """What the commit does with one delta row: ``("upsert", row)``, ``("delete", key)`` or ``("keep", None)``."""
    doc, status, prev_status = r["doc_id"], r["status"], r["prev_status"]
    row = (r["key"], doc, r["version"], r["size"], r["mtime"], r["sha256"], r["content_hash"], status)
    if status == "gone":
        return ("delete", (r["key"], doc)) if doc in deleted or prev_status != "indexed" else ("keep", None)
    if status == "quarantined":
        if prev_status == "indexed" and doc not in deleted:  # the index keeps its points: read it again next run
            return "keep", None
        return "upsert", row
    if doc not in unwritten:  # written, or unchanged
        return "upsert", row
    # Changed but not written (a failed batch): the old hash stands, the empty version makes the next run read it.
    return "upsert", (r["key"], doc, "", r["size"], "", None, r["prev_hash"],
                      "indexed" if prev_status == "indexed" else "pending")


def commit_state(out_path: str | Path, *, base_path: str | Path | None, delta_path: str | Path,
                 chunk_paths: list[str], changed: set[str], written: set[str], deleted: set[str],
                 missing_hashes: set[str], stamp: str | None, fetch=local, release=keep) -> dict:
    """Write the state after this run's writes into ``out_path`` (a copy of ``base_path`` with the delta
    applied); returns counts. ``changed``: the documents the plan sent to be written (added, updated);
    those of them not in ``written`` failed. The caller commits the file
    (:class:`ragtrail.core.statefile.StateFile`)."""
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    out_path.unlink(missing_ok=True)
    if base_path and Path(base_path).exists():
        shutil.copyfile(base_path, out_path)
    conn = create_state(out_path)
    counts = {"upsert": 0, "delete": 0, "keep": 0}
    unwritten = changed - written  # once: per delta row it made the commit O(N²) (80k documents: minutes)
    with conn:
        for rb in pq.ParquetFile(delta_path).iter_batches(batch_size=4096):
            for r in rb.to_pylist():
                what, row = _doc_row(r, unwritten, deleted)
                counts[what] += 1
                if what == "upsert":
                    conn.execute(_UPSERT, row)
                elif what == "delete":
                    conn.execute("DELETE FROM docs WHERE key = ? AND doc_id = ?", row)
        for batch in _batches(sorted(written | deleted)):
            conn.execute(f"DELETE FROM chunks WHERE doc_id IN ({','.join('?' * len(batch))})", batch)
        for path in chunk_paths:  # ``fetch`` makes a work store's file local, ``release`` drops that copy
            here = fetch(path)
            for rb in pq.ParquetFile(here).iter_batches(batch_size=4096, columns=["chunk_hash", "doc_id"]):
                conn.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)",
                                 [(h, d) for h, d in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(),
                                                         strict=True) if d in written])
            release(here)
        for batch in _batches(sorted(missing_hashes)):
            conn.execute(f"DELETE FROM chunks WHERE chunk_hash IN ({','.join('?' * len(batch))})", batch)
        meta = delta_meta(delta_path)
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [("fingerprint", meta.get("fingerprint", "")), ("stamp", stamp or "")])
    conn.close()
    return {"state_rows_written": counts["upsert"], "state_rows_dropped": counts["delete"],
            "state_rows_kept": counts["keep"]}


def bootstrap_state(path: str | Path, pairs: Iterable[tuple[str, str]]) -> None:
    """A state from a collection scroll (a version built before states existed): its chunk hashes only.
    Every object is read on that run; its commit fills in the documents."""
    Path(path).unlink(missing_ok=True)
    conn = create_state(path)
    with conn:
        for batch in _batches(pairs, 4096):
            conn.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)", batch)
    conn.close()


def keep_missing(path: str | Path, kept: dict[str, str | None]) -> None:
    """Documents the index keeps although the source lost them (``incremental``, first run with a state):
    rows under their own id as key, so a later ``full`` run finds them gone and deletes them."""
    conn = create_state(path)
    with conn:
        conn.executemany(_UPSERT, [(d, d, "", -1, "", None, h, "indexed") for d, h in kept.items()])
    conn.close()
