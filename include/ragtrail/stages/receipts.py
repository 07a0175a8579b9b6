"""The write groups' receipts: written one line at a time by a writer, merged on disk by the index stage.

A receipt (``write/receipt_<group>.jsonl``) is JSON lines: a small **header** first — ``{"format": 2,
"group", "chunk_paths", "counts", "written": n, "skipped": n, "missing": n, "stale": n}`` — then one line per
entry, each list sorted: ``["written", doc_id]``, ``["skipped", doc_id]``, ``["missing", chunk_hash]`` and
``["stale", doc_id, point_id]`` (a stale point with its document, so a store in parts deletes it in that
document's part only). A receipt of an earlier release (one JSON object with the lists in it, stale ids
without their documents) is read too.

:class:`ReceiptSet` merges a run's receipts into a SQLite file of the index stage's work folder (one
table per list, keyed, so a duplicated or retried writer's receipt adds nothing; a document one receipt
skipped and another wrote counts as written) and hands each list back as a sorted stream: the index stage
never holds the run's documents, hashes or stale ids in memory, whatever the corpus (a first build writes
every document).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

FORMAT = 2
LISTS = ("written", "skipped", "missing", "stale")
_PAGE = 1000

_SCHEMA = """
CREATE TABLE written (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE skipped (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE missing (chunk_hash TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE stale (doc_id TEXT, point_id, PRIMARY KEY (doc_id, point_id)) WITHOUT ROWID;
"""


def write_receipt(path: Path, header: dict, lists: dict[str, Iterable]) -> None:
    """Write ``header`` and then each list of ``lists`` (``written``/``skipped``/``missing``: values;
    ``stale``: ``(doc_id, point_id)`` pairs; each already sorted) to ``path``, whole or not at all (a
    temporary file replaced at the end: the index stage reads only complete receipts)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    counts = dict.fromkeys(LISTS, 0)
    body = tmp.with_name(f"{tmp.name}.body")
    with body.open("w") as out:
        for kind in LISTS:
            for value in lists.get(kind, ()):
                out.write(json.dumps([kind, *value] if kind == "stale" else [kind, value]) + "\n")
                counts[kind] += 1
    with tmp.open("w") as out, body.open() as lines:
        out.write(json.dumps({"format": FORMAT, **header, **counts}) + "\n")
        shutil.copyfileobj(lines, out)
    body.unlink()
    tmp.replace(path)


def read_header(path: str | Path) -> dict:
    """A receipt's header (for an earlier release's receipt: the object, with each list's length for it)."""
    with Path(path).open() as f:
        head = json.loads(f.readline())
    if head.get("format") != FORMAT:
        head = {**head, **{k: len(head.get(k) or []) for k in LISTS}}
    return head


def entries(path: str | Path) -> Iterator[list]:
    """A receipt's entries, line by line: ``[kind, value]``, or ``["stale", doc_id, point_id]`` (``doc_id``
    ``None`` in an earlier release's receipt)."""
    with Path(path).open() as f:
        head = json.loads(f.readline())
        if head.get("format") != FORMAT:  # one JSON object: the lists are in it
            for kind in LISTS:
                for v in head.get(kind) or []:
                    yield ["stale", None, v] if kind == "stale" else [kind, v]
            return
        for line in f:
            yield json.loads(line)


def stale_of(path: str | Path) -> list:
    """A receipt's stale ``(doc_id, point_id)`` pairs (tests, tools)."""
    return [(e[1], e[2]) for e in entries(path) if e[0] == "stale"]


class ReceiptSet:
    """The union of a run's receipts in a SQLite file (``path``, made anew): :meth:`add` each receipt, then
    read the lists back as sorted streams; :meth:`close` removes the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.unlink(missing_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(_SCHEMA)
        self.legacy_stale: list = []  # an earlier release's stale ids (no documents): O(its changes)

    def add(self, path: str | Path) -> dict:
        """Merge one receipt's lists (a local file); its header."""
        self.db.execute("BEGIN")
        legacy = self.legacy_stale
        rows = {k: [] for k in LISTS}
        for e in entries(path):
            if e[0] == "stale" and e[1] is None:
                legacy.append(e[2])
                continue
            bucket = rows[e[0]]
            bucket.append(tuple(e[1:]))
            if len(bucket) >= _PAGE:
                self._insert(e[0], bucket)
        for kind, bucket in rows.items():
            self._insert(kind, bucket)
        self.db.execute("COMMIT")
        return read_header(path)

    def _insert(self, kind: str, rows: list) -> None:
        if rows:
            marks = "(?, ?)" if kind == "stale" else "(?)"
            self.db.executemany(f"INSERT OR IGNORE INTO {kind} VALUES {marks}", rows)
            rows.clear()

    def count(self, kind: str) -> int:
        """How many entries of a list; ``skipped``: those no receipt wrote (written wins)."""
        if kind == "skipped":
            sql = "SELECT COUNT(*) FROM skipped s WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.doc_id = s.doc_id)"
        else:
            sql = f"SELECT COUNT(*) FROM {kind}"
        return self.db.execute(sql).fetchone()[0] + (len(self.legacy_stale) if kind == "stale" else 0)

    def values(self, kind: str) -> Iterator[str]:
        """``written`` documents or ``missing`` hashes, sorted, one at a time (a cursor of its own)."""
        column = "chunk_hash" if kind == "missing" else "doc_id"
        for (v,) in self.db.execute(f"SELECT {column} FROM {kind} ORDER BY {column}"):
            yield v

    def stale_pages(self, page: int = _PAGE) -> Iterator[tuple[list, list | None]]:
        """The stale points, ``page`` at a time, sorted by document: ``(point ids, their doc_ids)``; an earlier
        release's receipts' ids last, without documents (``None``)."""
        cur = self.db.execute("SELECT point_id, doc_id FROM stale ORDER BY doc_id, point_id")
        while rows := cur.fetchmany(page):
            yield [r[0] for r in rows], [r[1] for r in rows]
        legacy = list(dict.fromkeys(self.legacy_stale))
        for i in range(0, len(legacy), page):
            yield legacy[i : i + page], None

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)
