"""A version's source state in parts: one SQLite file per key range, and a manifest naming the current set.

The parts are the split's shards (:mod:`ragtrail.stages.split`): part *i* holds the state rows of the keys
``after < key <= upto`` of shard *i* — its documents and the chunk hashes they hold::

    docs(key, doc_id, version, size, mtime, sha256, content_hash, status)    as in a one-file state
    chunks(chunk_hash, doc_id, key)                                          a document's chunk hashes, beside it

``manifest.json`` (:mod:`ragtrail.core.statefile` fetches and swaps it)::

    {"format": 2, "generation": 7, "meta": {"fingerprint", "stamp"},
     "parts": [{"after": null, "upto": "docs/k.md", "file": "part-00000-g000007-1a2b3c4d.sqlite", "keys": 9998}, …],
     "written": [the parts this commit wrote], "retired": [the parts it replaced: deleted one commit later]}

So an ingest shard reads only the part(s) of its range (from a work store: downloads only those), and a
commit (:func:`commit_parts`) writes a new file only for a range the run touched — a changed, added or gone
document in it, or a range the split re-cut — copying that one part and applying the run's changes; the
other parts stay as they are, named again by the new manifest. **The chunk-hash index lives in the same
parts** (by the key of the document that holds the hash), not in a file of its own nor by hash prefix: a
document's hashes change only with the document, so they are rewritten with the part the run touched
anyway, and nothing is copied whole per run. The price is on the probing side: the dedupe stage asks every
part (:class:`ragtrail.stages.state_commit.HeldHashes`), in sorted batches of the run's new chunk hashes only.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path

from ragtrail.core.statefile import MANIFEST, LocalState
from ragtrail.sources.walk import KeyRange

FORMAT = 2
PART_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (key TEXT NOT NULL, doc_id TEXT NOT NULL, version TEXT, size INTEGER, mtime TEXT,
    sha256 TEXT, content_hash TEXT, status TEXT NOT NULL, PRIMARY KEY (key, doc_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (chunk_hash TEXT NOT NULL, doc_id TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (chunk_hash, doc_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id);
"""


def range_of(entry: dict) -> KeyRange:
    return KeyRange(entry.get("after"), entry.get("upto"))


def overlaps(a: KeyRange, b: KeyRange) -> bool:
    """Whether two ranges ``(after, upto]`` share a key."""
    return (a.after is None or b.upto is None or a.after < b.upto) and (
        b.after is None or a.upto is None or b.after < a.upto)


def covers(ranges: list[KeyRange]) -> bool:
    """Whether consecutive ``ranges`` cover every key once (open at both ends, each starting where the last ended)."""
    return (ranges[0].after is None and ranges[-1].upto is None
            and all(a.upto == b.after for a, b in zip(ranges, ranges[1:], strict=False)))


def parts_of(state: LocalState, key_range: KeyRange | None) -> list[dict]:
    """The parts holding keys of ``key_range`` (``None``: every part), in key order."""
    return [p for p in state.parts if key_range is None or overlaps(range_of(p), key_range)]


def range_where(key_range: KeyRange | None, column: str = "key") -> tuple[str, tuple]:
    """A SQL condition (never empty) selecting ``key_range``'s rows, and its arguments."""
    parts, args = ["1"], []
    if key_range is not None and key_range.after is not None:
        parts.append(f"{column} > ?")
        args.append(key_range.after)
    if key_range is not None and key_range.upto is not None:
        parts.append(f"{column} <= ?")
        args.append(key_range.upto)
    return " AND ".join(parts), tuple(args)


def create_part(path: str | Path) -> sqlite3.Connection:
    """A part being written: no journal, no fsync per transaction — it is a new file no reader knows until the
    manifest names it, and :meth:`ragtrail.core.statefile.StateFile.commit` syncs it before."""
    conn = scratch(path)
    conn.executescript(f"BEGIN; {PART_SCHEMA} COMMIT;")
    return conn


def scratch(path: str | Path) -> sqlite3.Connection:
    """A connection to a file of this task's own (a part being written, the commit's stage file)."""
    conn = sqlite3.connect(str(path))
    conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
    return conn


def _part_name(index: int, generation: int) -> str:
    return f"part-{index:05d}-g{generation:06d}-{uuid.uuid4().hex[:8]}.sqlite"


def _fresh(out_dir: Path) -> Path:
    if out_dir.is_dir():
        shutil.rmtree(out_dir)
    elif out_dir.exists():
        out_dir.unlink()
    out_dir.mkdir(parents=True)
    return out_dir


def _keys_in(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM (SELECT DISTINCT key FROM docs)").fetchone()[0]


def _write_manifest(out_dir: Path, generation: int, meta: dict, parts: list[dict], written: list[str],
                    retired: list[str]) -> dict:
    manifest = {"format": FORMAT, "generation": generation, "meta": meta, "parts": parts, "written": written,
                "retired": retired}
    (out_dir / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def _has_changes(stage: sqlite3.Connection, key_range: KeyRange) -> bool:
    """Whether the run changed anything in ``key_range`` (three indexed look-ups, whatever the run's size)."""
    w, args = range_where(key_range)
    return any(stage.execute(f"SELECT 1 FROM {table} WHERE {w} LIMIT 1", args).fetchone()
               for table in ("ops", "dropped", "newchunks"))


_APPLY = (
    "INSERT OR REPLACE INTO docs SELECT key, doc_id, version, size, mtime, sha256, content_hash, status "
    "FROM s.ops WHERE what = 'upsert' AND {w}",
    "DELETE FROM docs WHERE (key, doc_id) IN (SELECT key, doc_id FROM s.ops WHERE what = 'delete' AND {w})",
    "DELETE FROM chunks WHERE doc_id IN (SELECT doc_id FROM s.dropped WHERE {w})",
    "INSERT OR IGNORE INTO chunks SELECT chunk_hash, doc_id, key FROM s.newchunks WHERE {w}",
    "DELETE FROM chunks WHERE chunk_hash IN (SELECT chunk_hash FROM s.missing)",
)


def commit_parts(out_dir: str | Path, base: LocalState | None, stage: str | Path, ranges: list[KeyRange] | None,
                 meta: dict) -> dict:
    """Write the state after a run into ``out_dir``: a new file for every range of ``ranges`` (the run's
    split; ``None``: the base's) that the run's changes (the stage file of
    :func:`ragtrail.stages.state_commit.commit_state`) touch or whose bounds differ from the base's parts,
    and a manifest naming them and the base's untouched parts (hard-linked into ``out_dir`` when the base is
    local, so that the folder is a whole state). Returns the manifest."""
    out_dir = _fresh(Path(out_dir))
    base_parts = base.parts if base is not None else []
    generation = (base.manifest.get("generation", 0) + 1) if base is not None else 1
    if not ranges or not covers(ranges):  # no split recorded (or not a whole one): the base's map stands
        ranges = [range_of(p) for p in base_parts] or [KeyRange()]
    st = sqlite3.connect(str(stage))
    touched = [_has_changes(st, r) for r in ranges]
    missing = [h for (h,) in st.execute("SELECT chunk_hash FROM missing")]
    st.close()
    if missing:  # rare (a held hash the collection lacked): every part is asked, only those holding one rewritten
        for p in base_parts:
            held = _holds_any(base.part(p), missing)
            touched = [t or (held and overlaps(r, range_of(p))) for t, r in zip(touched, ranges, strict=True)]
    parts, written = [], []
    for i, r in enumerate(ranges):
        same = next((p for p in base_parts if range_of(p) == r), None)
        if same is not None and not touched[i]:
            parts.append(same)
            if base.in_place:  # a local base: the folder stays a whole state at no copy
                _link(base.part(same), out_dir / same["file"])
            continue
        name = _part_name(i, generation)
        path = out_dir / name
        if same is not None:
            shutil.copyfile(base.part(same), path)
            conn = create_part(path)
        else:  # a range the split re-cut: its rows from every base part it overlaps
            conn = create_part(path)
            for p in (q for q in base_parts if overlaps(range_of(q), r)):
                conn.execute("ATTACH DATABASE ? AS b", (f"file:{base.part(p)}?mode=ro",))
                w, args = range_where(r)
                with conn:
                    conn.execute(f"INSERT OR REPLACE INTO docs SELECT * FROM b.docs WHERE {w}", args)
                    conn.execute(f"INSERT OR IGNORE INTO chunks SELECT * FROM b.chunks WHERE {w}", args)
                conn.execute("DETACH DATABASE b")
        conn.execute("ATTACH DATABASE ? AS s", (str(stage),))
        w, args = range_where(r)
        with conn:
            for sql in _APPLY:
                conn.execute(sql.format(w=w), args if "{w}" in sql else ())
        parts.append({"after": r.after, "upto": r.upto, "file": name, "keys": _keys_in(conn)})
        conn.close()
        written.append(name)
    kept = {p["file"] for p in parts}
    retired = [p["file"] for p in base_parts if p["file"] not in kept]
    return _write_manifest(out_dir, generation, meta, parts, written, retired)


def _holds_any(path: Path, hashes: list[str]) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for i in range(0, len(hashes), 500):
            batch = hashes[i:i + 500]
            sql = f"SELECT 1 FROM chunks WHERE chunk_hash IN ({','.join('?' * len(batch))}) LIMIT 1"
            if conn.execute(sql, batch).fetchone():
                return True
        return False
    finally:
        conn.close()


def _link(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:  # another file system: the folder names the part, the commit never needs this copy
        pass


def split_one_file(one_file: str | Path, out_dir: str | Path, ranges: list[KeyRange] | None, meta: dict,
                   retired: list[str]) -> dict:
    """A one-file state (an earlier release's, or the one a plan seeded from a collection scroll, after this
    run's changes) cut into parts along ``ranges``: the migration, once. ``one_file`` is this run's own copy
    (it gains an index). Returns the manifest."""
    out_dir = _fresh(Path(out_dir))
    ranges = ranges if ranges and covers(ranges) else [KeyRange()]
    src = sqlite3.connect(str(one_file))
    with src:  # each chunk row's key: its document's (a hash of no known document keeps its id as key)
        src.executescript("""
            CREATE INDEX IF NOT EXISTS docs_by_id ON docs (doc_id);
            DROP TABLE IF EXISTS chunk_keys;
            CREATE TABLE chunk_keys AS SELECT c.doc_id AS doc_id,
                COALESCE((SELECT MIN(d.key) FROM docs d WHERE d.doc_id = c.doc_id), c.doc_id) AS key
                FROM (SELECT DISTINCT doc_id FROM chunks) c;
            CREATE INDEX chunk_keys_by_key ON chunk_keys (key);""")
    src.close()
    parts, written = [], []
    for i, r in enumerate(ranges):
        name = _part_name(i, 1)
        conn = create_part(out_dir / name)
        conn.execute("ATTACH DATABASE ? AS o", (str(one_file),))
        w, args = range_where(r)
        wk, _ = range_where(r, "k.key")
        with conn:
            conn.execute(f"INSERT OR REPLACE INTO docs SELECT * FROM o.docs WHERE {w}", args)
            conn.execute("INSERT OR IGNORE INTO chunks SELECT c.chunk_hash, c.doc_id, k.key FROM o.chunk_keys k "
                         f"JOIN o.chunks c ON c.doc_id = k.doc_id WHERE {wk}", args)
        parts.append({"after": r.after, "upto": r.upto, "file": name, "keys": _keys_in(conn)})
        conn.close()
        written.append(name)
    return _write_manifest(out_dir, 1, meta, parts, written, retired)
