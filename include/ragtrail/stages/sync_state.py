"""A version's source state, and the sort-merge of a listing against it: a re-ingest costs O(change).

The state (one SQLite file per key range, :mod:`ragtrail.stages.state_parts`, kept by
:mod:`ragtrail.core.statefile`; or the one file of an earlier release) says what the index took in from each
source object when it was last committed::

    docs(key, doc_id, version, size, mtime, sha256, content_hash, status)   sorted by (key, doc_id)
    chunks(chunk_hash, doc_id[, key])                                       the chunk hashes the version holds
    meta                                                                    fingerprint (how objects were read), stamp (which collection)

``key`` is the object's key (its path under the source); ``doc_id`` the document (a table row is
``key#row``); ``version`` the ETag (S3) or mtime in ns (local). The ingest stage walks the listing, which
comes in key order (S3 lists keys in order; the local walk yields paths in the same order), next to a
cursor over ``docs ORDER BY key, doc_id`` of the parts of the shard's range: an object whose version, size and mtime match every row of its
key is **not read** (``objects_skipped``); a new or changed one is read (``objects_read``), and rows the
cursor passes without a listed object are **gone** (deleted objects). What the run read is written to a
small delta file (one row per document of a read object, and one per gone document, each with its
previous content hash), from which the plan stage decides added / updated / unchanged / deleted with no
look at the collection. The index stage commits the delta into a copy of the state once its writes
are done (:mod:`ragtrail.stages.state_commit`); until then the old state stands.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

DELTA_FILE = "state_delta.parquet"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS docs (key TEXT NOT NULL, doc_id TEXT NOT NULL, version TEXT, size INTEGER, mtime TEXT,
    sha256 TEXT, content_hash TEXT, status TEXT NOT NULL, PRIMARY KEY (key, doc_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (chunk_hash TEXT NOT NULL, doc_id TEXT NOT NULL,
    PRIMARY KEY (chunk_hash, doc_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id);
"""
_ROWS = "SELECT key, doc_id, version, size, mtime, sha256, content_hash, status FROM docs"


def create_state(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) a writable state file."""
    conn = sqlite3.connect(str(path))
    conn.executescript(SCHEMA)
    return conn


def read_only(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def fingerprint(source: str, table, max_doc_bytes: int) -> str:
    """How objects were read: another source, table spec or size limit reads every object again."""
    return json.dumps({"source": source, "id": table.id_column, "text": table.text_column,
                       "meta": table.metadata_columns, "max": max_doc_bytes}, sort_keys=True, default=list)


def collection_stamp(location, collection: str) -> str | None:
    """Which collection the state belongs to: its ``built_at`` (``None``: no such collection). A state
    committed for another collection of that name (deleted, pruned, rebuilt) is not used."""
    from ragtrail.store import open_store

    with open_store(location) as store:
        if not store.exists(collection):
            return None
        return json.dumps(store.metadata(collection).get("built_at"))


class SourceDigest:
    """An order-free digest of (doc_id, sha256, status): the same source gives the same digest whether its
    documents were read this run or carried from the state."""

    def __init__(self):
        self.acc = 0

    def add(self, doc_id: str, sha: str | None, status: str) -> None:
        line = f"{doc_id}\0{sha}\0{status}\n".encode()
        self.acc = (self.acc + int.from_bytes(hashlib.sha256(line).digest()[:8], "big")) % (1 << 64)

    def hexdigest(self) -> str:
        return f"{self.acc:016x}"


def _delta_schema():
    import pyarrow as pa

    s = pa.string()
    return pa.schema([("key", s), ("doc_id", s), ("version", s), ("size", pa.int64()), ("mtime", s), ("sha256", s),
                      ("content_hash", s), ("status", s), ("prev_hash", s), ("prev_status", s)])


def _state_conns(state_path, key_range=None) -> tuple[list[sqlite3.Connection], dict] | None:
    """Read-only connections to the state files holding ``key_range``'s rows (every part when ``None``), in key
    order, and the state's meta; ``None`` without a state. A part from a work store is downloaded here."""
    from ragtrail.core.statefile import load_local
    from ragtrail.stages.state_parts import parts_of

    state = load_local(state_path)
    if state is not None:
        return [read_only(state.part(p)) for p in parts_of(state, key_range)], state.meta
    if not state_path or not Path(state_path).exists():
        return None
    conn = read_only(state_path)
    return [conn], dict(conn.execute("SELECT k, v FROM meta"))


def state_keys(path, key_range=None) -> Iterator[str]:
    """The state's object keys (of ``key_range``: ``None``, all), each once, in key order (a cursor: flat memory)."""
    from ragtrail.stages.state_parts import range_where

    conns, _ = _state_conns(path, key_range) or ([], {})
    w, args = range_where(key_range)
    try:
        for conn in conns:
            yield from (k for (k,) in conn.execute(f"SELECT DISTINCT key FROM docs WHERE {w} ORDER BY key", args))
    finally:
        for conn in conns:
            conn.close()


def state_meta(path) -> dict:
    """The state's fingerprint and stamp (``{}``: no state)."""
    from ragtrail.core.statefile import load_local

    state = load_local(path)
    if state is not None:
        return dict(state.meta)
    if not path or not Path(path).exists():
        return {}
    conn = read_only(path)
    try:
        return dict(conn.execute("SELECT k, v FROM meta"))
    finally:
        conn.close()


class SourceMerge:
    """The listing merged against the state, for one ingest run (see the module doc); with ``key_range``, one
    shard's listing against that shard's rows of the state (the other shards' rows are never read).

    ``filter(items)`` yields the items to read; ``record`` notes each document read, ``done`` closes an
    object; ``close`` finishes the delta. ``counts``: objects read / skipped / new / changed / deleted,
    documents and quarantined documents carried from the state unread.
    """

    def __init__(self, workdir: str | Path, state_path: str | Path | None, stamp: str | None, fprint: str,
                 digest: SourceDigest, key_range=None):
        import pyarrow.parquet as pq

        self.delta_path = Path(workdir) / DELTA_FILE
        self.rows: list[dict] = []
        self.counts: Counter[str] = Counter()
        self.digest, self.old, self.last_key, self.gone_key = digest, {}, None, None
        self.conns: list[sqlite3.Connection] = []
        self.cursor, self.head, self.reread_all = None, None, False
        self.mode = "none"
        meta = state_meta(state_path) if stamp is not None else {}
        if meta and meta.get("stamp") == stamp:  # only now are the range's parts opened (or downloaded)
            self.conns, _ = _state_conns(state_path, key_range)
            self.mode, self.reread_all = "merged", meta.get("fingerprint") != fprint
            self.cursor = self._cursor(key_range)
            self.head = next(self.cursor, None)
        elif stamp is not None and (meta or (state_path and Path(state_path).exists())):
            self.mode = "stale"  # another collection's state: every object is read, the plan asks the index
        rng = [[None, None]] if key_range is None else [[key_range.after, key_range.upto]]
        schema = _delta_schema().with_metadata({"fingerprint": fprint, "mode": self.mode, "ranges": json.dumps(rng)})
        self.writer = pq.ParquetWriter(self.delta_path, schema)

    def _cursor(self, key_range) -> Iterator[tuple]:
        """The range's rows in (key, doc_id) order: the parts one after the other (they hold consecutive ranges)."""
        from ragtrail.stages.state_parts import range_where

        w, args = range_where(key_range)
        for conn in self.conns:
            yield from conn.execute(_ROWS + f" WHERE {w} ORDER BY key, doc_id", args)

    def _lookup(self, key: str) -> list[tuple]:
        return [row for conn in self.conns for row in conn.execute(_ROWS + " WHERE key = ?", (key,))]

    def _rows_up_to(self, key: str) -> list[tuple]:
        """Advance the cursor to ``key``: rows of keys before it are gone; returns the rows of ``key``."""
        while self.head is not None and self.head[0] < key:
            self._gone(self.head)
            self.head = next(self.cursor, None)
        rows = []
        while self.head is not None and self.head[0] == key:
            rows.append(self.head)
            self.head = next(self.cursor, None)
        return rows

    def _gone(self, row: tuple, passed: bool = True) -> None:
        if passed and row[0] != self.gone_key:  # an object the listing no longer has
            self.counts["objects_deleted"] += 1
            self.gone_key = row[0]
        if row[7] == "indexed":
            self.counts["docs_gone"] += 1
        self._emit(row[0], row[1], None, None, None, None, None, "gone", row[6], row[7])

    def _unchanged(self, item, rows: list[tuple]) -> bool:
        return bool(rows) and not self.reread_all and all(
            r[2] == item.version and r[3] == item.size and r[4] == (item.mtime or "") for r in rows)

    def filter(self, items) -> Iterator:
        """The items to read: new and changed objects (and every object when there is no usable state)."""
        for item in items:
            if item.skip_reason:  # decided from the listing, never read: not part of the state
                yield item
                continue
            key = item.doc_id
            if not self.conns:
                rows = []
            elif self.last_key is not None and key <= self.last_key:  # out of key order: look it up, read it
                rows = self._lookup(key)
                self.counts["objects_out_of_order"] += 1
            else:
                rows, self.last_key = self._rows_up_to(key), key
                if self._unchanged(item, rows):
                    self._carry(rows)
                    continue
            self.counts["objects_changed" if rows else "objects_new"] += 1
            self.counts["objects_read"] += 1
            self.old[key] = {r[1]: r for r in rows}
            yield item
        while self.head is not None:
            self._gone(self.head)
            self.head = next(self.cursor, None)

    def _carry(self, rows: list[tuple]) -> None:
        self.counts["objects_skipped"] += 1
        for r in rows:
            self.counts["docs_carried" if r[7] == "indexed" else "quarantined_carried"] += 1
            self.digest.add(r[1], r[5], r[7])

    def record(self, item, doc_id: str, status: str, sha: str | None, content_hash: str | None) -> str | None:
        """One document of a read object; returns its previous content hash (``None``: new to the index)."""
        old = self.old.get(item.doc_id)
        if old is None:  # never part of the state (decided from the listing)
            return None
        prev = old.pop(doc_id, None)
        prev_hash, prev_status = (prev[6], prev[7]) if prev else (None, None)
        self._emit(item.doc_id, doc_id, item.version, item.size, item.mtime or "", sha, content_hash, status,
                   prev_hash, prev_status)
        return prev_hash if prev_status == "indexed" else None

    def done(self, item) -> None:
        """An object fully read: its old documents it no longer yields are gone."""
        for row in (self.old.pop(item.doc_id, None) or {}).values():
            self._gone(row, passed=False)

    def _emit(self, key, doc_id, version, size, mtime, sha, content_hash, status, prev_hash, prev_status) -> None:
        self.rows.append({"key": key, "doc_id": doc_id, "version": version, "size": size, "mtime": mtime,
                          "sha256": sha, "content_hash": content_hash, "status": status, "prev_hash": prev_hash,
                          "prev_status": prev_status})
        if len(self.rows) >= 1024:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.writer.schema))
            self.rows.clear()

    def close(self) -> dict:
        """Finish the delta; the ingest result's state part (small: XCom)."""
        self._flush()
        self.writer.close()
        for conn in self.conns:
            conn.close()
        return {"delta_path": str(self.delta_path), "state": self.mode, **{k: self.counts[k] for k in (
            "objects_read", "objects_skipped", "objects_new", "objects_changed", "objects_deleted", "docs_carried",
            "quarantined_carried", "docs_gone")}}


def delta_meta(delta_path: str | Path) -> dict:
    """The delta's fingerprint, merge mode (``merged``: the state was used; ``none``/``stale``: not) and the
    key ranges of the run's split (JSON)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(delta_path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k in (b"fingerprint", b"mode", b"ranges")}
