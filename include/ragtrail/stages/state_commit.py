"""The source state after a run's writes (the index stage), and the chunk-hash index the dedupe stage probes.

:func:`commit_state` applies a run's delta (:mod:`ragtrail.stages.sync_state`) to the state, so that it again
says what the collection holds. The run's changes are first keyed into a small SQLite file of their own
(O(change)); then only the parts (:mod:`ragtrail.stages.state_parts`) whose key range they touch are copied
and changed, each in one transaction; a one-file state of an earlier release is changed whole and cut into
parts, once. What a commit does to each document:

- a document of a read object that was written (or whose text did not change) takes the object's new
  version; one that was **not** written (its chunk or embed batch failed) keeps its old hash under an
  empty version, so the next run reads its object again;
- a gone document leaves the state when its points were deleted (``sync_mode=full``), and stays while
  the index keeps it (``incremental``);
- ``chunks`` loses the rows of every written or deleted document and gains those of the written ones;
  a held hash the collection turned out not to hold (the index stage found no vector for it) leaves it,
  so that the next run embeds it again.

:class:`HeldHashes` answers "which of these chunk hashes does the version already hold" in sorted batches
of indexed look-ups in every part: the dedupe stage never loads the set of every hash.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ragtrail.stages.index_state import keep, local
from ragtrail.stages.sync_state import create_state, delta_meta, read_only

_PROBE = 500  # host parameters per IN (…) look-up (SQLite allows 999 on old builds)
_OPEN_PARTS = 256  # parts HeldHashes keeps open; more are opened per probe
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
    """The chunk hashes a state holds (every part of it, or a one-file state), probed in sorted batches (an
    empty index without a state)."""

    def __init__(self, path: str | Path | None):
        from ragtrail.core.statefile import load_local

        state = load_local(path)
        if state is not None:
            self.files = [state.part(p) for p in state.parts]
        else:
            self.files = [Path(path)] if path and Path(path).exists() else []
        self._open = [read_only(f) for f in self.files[:_OPEN_PARTS]]

    def _conns(self) -> Iterator:
        yield from self._open
        for f in self.files[_OPEN_PARTS:]:  # past the open ones: one at a time (file handles are finite)
            conn = read_only(f)
            try:
                yield conn
            finally:
                conn.close()

    def which(self, hashes: Iterable[str]) -> set[str]:
        """Those of ``hashes`` the version holds."""
        if not self.files:
            return set()
        found: set[str] = set()
        batches = list(_batches(sorted(set(hashes))))
        for conn in self._conns():
            for batch in batches:
                sql = f"SELECT DISTINCT chunk_hash FROM chunks WHERE chunk_hash IN ({','.join('?' * len(batch))})"
                found.update(h for (h,) in conn.execute(sql, batch))
        return found

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open = []


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


_STAGE = """
CREATE TABLE ops (key TEXT NOT NULL, doc_id TEXT NOT NULL, what TEXT NOT NULL, version TEXT, size INTEGER, mtime TEXT,
    sha256 TEXT, content_hash TEXT, status TEXT, PRIMARY KEY (key, doc_id)) WITHOUT ROWID;
CREATE INDEX ops_by_doc ON ops (doc_id);
CREATE TABLE touched (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE dropped (doc_id TEXT NOT NULL, key TEXT NOT NULL);
CREATE INDEX dropped_by_key ON dropped (key);
CREATE TABLE newchunks (chunk_hash TEXT NOT NULL, doc_id TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (chunk_hash, doc_id)) WITHOUT ROWID;
CREATE INDEX newchunks_by_key ON newchunks (key);
CREATE TABLE missing (chunk_hash TEXT PRIMARY KEY) WITHOUT ROWID;
"""
_KEY_OF = "COALESCE((SELECT MIN(o.key) FROM ops o WHERE o.doc_id = ?), ?)"  # a document not in the delta: its id


def commit_state(out_path: str | Path, *, base_path: str | Path | None, delta_path: str | Path,
                 chunk_paths: list[str], changed: Iterable[str], written: Iterable[str], deleted: Iterable[str],
                 missing_hashes: Iterable[str], stamp: str | None, fetch=local, release=keep) -> dict:
    """Write the state after this run's writes into the folder ``out_path``: a manifest and the parts this
    run rewrote (:func:`ragtrail.stages.state_parts.commit_parts`: only the key ranges it touched, cut as
    the run's split cut them); returns counts. ``base_path``: the committed state (a
    :class:`ragtrail.core.statefile.LocalState`, a one-file state — migrated here, once — or ``None``).
    ``changed``: the documents the plan sent to be written (added, updated); those of them not in
    ``written`` failed. ``changed``, ``written`` and ``deleted`` may be any iterables (a file or a cursor read
    as it goes: they are the whole corpus on a first build); each is read once, into SQLite, never held in
    memory. The caller commits the folder (:class:`ragtrail.core.statefile.StateFile`)."""
    from ragtrail.core.statefile import STATE_FILE, load_local
    from ragtrail.stages.state_parts import commit_parts, split_one_file

    out_path = Path(out_path)
    meta = delta_meta(delta_path)
    ranges = delta_ranges(meta)
    facts = {"fingerprint": meta.get("fingerprint", ""), "stamp": stamp or ""}
    base = load_local(base_path)
    work = out_path.with_name(out_path.name + ".work.sqlite")
    args = (delta_path, chunk_paths, changed, written, deleted, missing_hashes, fetch, release)
    try:
        if base is None and base_path and Path(base_path).exists():  # one file (earlier release, or seeded)
            counts = _commit_one_file(work, base_path, *args)
            split_one_file(work, out_path, ranges, facts, retired=[STATE_FILE])
        else:
            counts = _stage(work, *args)
            commit_parts(out_path, base, work, ranges, facts)
    finally:
        work.unlink(missing_ok=True)
    return counts


def delta_ranges(meta: dict) -> list | None:
    """The key ranges of the run's split, from the delta's metadata (``None``: not recorded)."""
    from ragtrail.sources.walk import KeyRange

    if not meta.get("ranges"):
        return None
    return [KeyRange(after, upto) for after, upto in json.loads(meta["ranges"])]


_RUN = """
CREATE TEMP TABLE run_changed (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TABLE run_written (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TABLE run_deleted (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


class _RunDocs:
    """The run's changed, written and deleted documents, in temporary tables of the commit's connection.

    On a first build each is every document of the corpus: as Python sets they made the index task's memory
    grow ~300 B per document (measured at 20k-80k); here they stream in from their sources (the plan's file,
    the index stage's own table) and each delta or chunk batch asks only about its own documents."""

    def __init__(self, conn, changed: Iterable[str], written: Iterable[str], deleted: Iterable[str]):
        self.conn = conn
        conn.executescript(_RUN)
        for table, docs in (("run_changed", changed), ("run_written", written), ("run_deleted", deleted)):
            conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", ((d,) for d in docs))

    def _select(self, sql: str, docs: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in _batches(sorted(set(docs))):
            found.update(d for (d,) in self.conn.execute(sql.format(marks=",".join("?" * len(batch))), batch))
        return found

    def unwritten(self, docs: Iterable[str]) -> set[str]:
        """Those of ``docs`` the plan sent to be written that were not (their batch failed)."""
        return self._select("SELECT doc_id FROM run_changed c WHERE doc_id IN ({marks}) AND NOT EXISTS "
                            "(SELECT 1 FROM run_written w WHERE w.doc_id = c.doc_id)", docs)

    def deleted(self, docs: Iterable[str]) -> set[str]:
        return self._select("SELECT doc_id FROM run_deleted WHERE doc_id IN ({marks})", docs)

    def written(self, docs: Iterable[str]) -> set[str]:
        return self._select("SELECT doc_id FROM run_written WHERE doc_id IN ({marks})", docs)

    TOUCHED = "SELECT doc_id FROM run_written UNION SELECT doc_id FROM run_deleted"


def _delta_rows(delta_path, docs: _RunDocs, counts: dict) -> Iterator[tuple[str, tuple]]:
    import pyarrow.parquet as pq

    for rb in pq.ParquetFile(delta_path).iter_batches(batch_size=4096):
        rows = rb.to_pylist()
        ids = [r["doc_id"] for r in rows]
        unwritten, deleted = docs.unwritten(ids), docs.deleted(ids)
        for r in rows:
            what, row = _doc_row(r, unwritten, deleted)
            counts[what] += 1
            if what != "keep":
                yield what, row


def _chunk_rows(chunk_paths: list[str], docs: _RunDocs, fetch, release) -> Iterator[list[tuple[str, str]]]:
    """The (chunk hash, document) rows of the written documents, a batch at a time."""
    import pyarrow.parquet as pq

    for path in chunk_paths:  # ``fetch`` makes a work store's file local, ``release`` drops that copy
        here = fetch(path)
        for rb in pq.ParquetFile(here).iter_batches(batch_size=4096, columns=["chunk_hash", "doc_id"]):
            pairs = list(zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True))
            written = docs.written(d for _, d in pairs)
            yield [(h, d) for h, d in pairs if d in written]
        release(here)


def _counts(counts: dict) -> dict:
    return {"state_rows_written": counts["upsert"], "state_rows_dropped": counts["delete"],
            "state_rows_kept": counts["keep"]}


def _stage(path: Path, delta_path, chunk_paths, changed, written, deleted, missing_hashes, fetch, release) -> dict:
    """The run's changes to the state, keyed (each by its object's key), in one small SQLite file: O(change)."""
    from ragtrail.stages.state_parts import scratch

    path.unlink(missing_ok=True)
    conn = scratch(path)
    conn.executescript(f"BEGIN; {_STAGE} COMMIT;")
    counts = {"upsert": 0, "delete": 0, "keep": 0}
    docs = _RunDocs(conn, changed, written, deleted)
    with conn:  # the delta in its order: a later row of a document replaces an earlier one
        rows = ((*row[:2], what, *row[2:], *(None,) * (8 - len(row)))
                for what, row in _delta_rows(delta_path, docs, counts))
        conn.executemany("INSERT OR REPLACE INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute(f"INSERT OR IGNORE INTO touched {docs.TOUCHED}")
        conn.execute("INSERT INTO dropped SELECT t.doc_id, COALESCE((SELECT MIN(o.key) FROM ops o "
                     "WHERE o.doc_id = t.doc_id), t.doc_id) FROM touched t")
        for batch in _chunk_rows(chunk_paths, docs, fetch, release):
            conn.executemany(f"INSERT OR IGNORE INTO newchunks SELECT ?, ?, {_KEY_OF}", [(h, d, d, d) for h, d in batch])
        conn.executemany("INSERT OR IGNORE INTO missing VALUES (?)", ((h,) for h in missing_hashes))
    conn.close()
    return _counts(counts)


def _commit_one_file(out_path: Path, base_path, delta_path, chunk_paths, changed, written, deleted, missing_hashes,
                     fetch, release) -> dict:
    """The run's changes applied to a copy of a one-file state (the migration's first step)."""
    out_path.unlink(missing_ok=True)
    shutil.copyfile(base_path, out_path)
    conn = create_state(out_path)
    counts = {"upsert": 0, "delete": 0, "keep": 0}
    docs = _RunDocs(conn, changed, written, deleted)
    with conn:
        for what, row in _delta_rows(delta_path, docs, counts):
            if what == "upsert":
                conn.execute(_UPSERT, row)
            else:
                conn.execute("DELETE FROM docs WHERE key = ? AND doc_id = ?", row)
        conn.execute(f"DELETE FROM chunks WHERE doc_id IN ({docs.TOUCHED})")
        for batch in _chunk_rows(chunk_paths, docs, fetch, release):
            conn.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)", batch)
        for batch in _batches(sorted(missing_hashes)):
            conn.execute(f"DELETE FROM chunks WHERE chunk_hash IN ({','.join('?' * len(batch))})", batch)
    conn.close()
    return _counts(counts)


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
