"""A write task's state on disk: where each new vector is, which documents and points were written.

:class:`RunState` keeps what must outlive one chunk file in one SQLite file of the task's work folder (one per
write group and process), and reads only the vectors one chunk file needs from the embed batches' ``.npy``
files it was given (plain reads, no memory maps), so a writer's memory does not grow with the run
(:mod:`ragtrail.stages.writing`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

OPEN_VECTOR_FILES = 2  # local copies of vector files kept (dedupe writes them in chunk order: two suffice)
_SQL_VARS = 500  # values per SQL ``IN (...)``


def local(path: str) -> str:
    """A path read in place (no work store)."""
    return path


def keep(path: str) -> None:
    """Nothing to drop (no work store)."""
    return None


class RunState:
    """The index stage's per-chunk maps, in one SQLite file of the work folder rather than in memory.

    ``vec``: chunk_hash → (embed batch, row) of every newly embedded text; ``written`` / ``skipped``: the
    documents written whole / left untouched; ``new``: the point ids this run wrote. Vectors are read from
    the embed batches' ``.npy`` files with plain reads, only the rows a chunk file needs (no memory maps;
    at most :data:`OPEN_VECTOR_FILES` local copies of a work store's files), so neither memory nor the
    number of maps or files grows with the run.
    """

    def __init__(self, path: Path, embedded: list[dict], fetch=local, release=keep):
        import pyarrow.parquet as pq

        self.embedded, self.fetch, self.release = embedded, fetch, release
        path.unlink(missing_ok=True)
        self.db = sqlite3.connect(path)
        self.db.executescript("""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE vec (hash TEXT PRIMARY KEY, file INTEGER, row INTEGER) WITHOUT ROWID;
            CREATE TABLE written (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE skipped (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE new (point_id TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE deleted (doc_id TEXT PRIMARY KEY) WITHOUT ROWID;
        """)
        self.dim: int | None = None
        self._open: dict[int, tuple[str, int, object]] = {}  # embed batch → (local file, data offset, dtype)
        self._sparse_tables: dict[int, object] = {}  # embed batch → its BM25 vectors (an Arrow table) or None
        for i, e in enumerate(embedded):
            texts = fetch(e["texts_path"])
            row = 0
            for rb in pq.ParquetFile(texts).iter_batches(batch_size=8192, columns=["chunk_hash"]):
                hashes = rb.column(0).to_pylist()
                # a later batch wins, as a dict filled in batch order would
                self.db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                                    ((h, i, row + k) for k, h in enumerate(hashes)))
                row += len(hashes)
            release(texts)
            if self.dim is None:
                self._file(i)
        self.db.commit()

    def _file(self, i: int) -> tuple[str, int, object]:
        """Embed batch ``i``'s local ``.npy``: (path, where its rows start, their dtype); its header read once.
        At most :data:`OPEN_VECTOR_FILES` local copies are kept (a work store's are fetched again if needed)."""
        import numpy as np

        if i not in self._open:
            while len(self._open) >= OPEN_VECTOR_FILES:
                self.release(self._open.pop(next(iter(self._open)))[0])
            local = self.fetch(self.embedded[i]["vectors_path"])
            with open(local, "rb") as f:
                fmt = np.lib.format
                header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
                shape, fortran, dtype = header(f)
                if fortran or len(shape) != 2:
                    raise ValueError(f"{local}: not a C-ordered matrix of vectors")
                self.dim = self.dim or int(shape[1])
                self._open[i] = (local, f.tell(), dtype)
        return self._open[i]

    def _rows(self, i: int, rows: list[int]):
        """Rows ``rows`` (sorted) of embed batch ``i``, read from the file in contiguous runs (no memory map)."""
        import numpy as np

        local, start, dtype = self._file(i)
        width = self.dim * dtype.itemsize
        out = np.empty((len(rows), self.dim), dtype=dtype)
        with open(local, "rb") as f:
            k = 0
            while k < len(rows):
                end = k + 1
                while end < len(rows) and rows[end] == rows[end - 1] + 1:
                    end += 1
                f.seek(start + rows[k] * width)
                out[k:end] = np.fromfile(f, dtype=dtype, count=(end - k) * self.dim).reshape(end - k, self.dim)
                k = end
        return out

    def _where(self, hashes: list[str]) -> dict[int, list[tuple[int, str]]]:
        """Embed batch → sorted (row, hash) of each of ``hashes`` that this run embedded."""
        where: dict[int, list[tuple[int, str]]] = {}
        for j in range(0, len(hashes), _SQL_VARS):
            part = hashes[j : j + _SQL_VARS]
            for h, f, row in self.db.execute(
                    f"SELECT hash, file, row FROM vec WHERE hash IN ({','.join('?' * len(part))})", part):
                where.setdefault(f, []).append((row, h))
        return {f: sorted(where[f]) for f in sorted(where)}

    def vectors(self, hashes: list[str]) -> dict:
        """The newly embedded vector (a float32 row) of each of ``hashes`` that has one."""
        out: dict = {}
        for f, rows in self._where(hashes).items():
            block = self._rows(f, [r for r, _ in rows])
            out.update((h, block[k]) for k, (_, h) in enumerate(rows))
        return out

    def sparse(self, hashes: list[str], key: dict) -> dict:
        """The embed stage's BM25 vector, ``(indices, values)``, of each of ``hashes`` whose embed batch wrote
        one with the BM25 config ``key`` (:func:`ragtrail.store.sparse.key`); the others are left out."""
        out: dict = {}
        for f, rows in self._where(hashes).items():
            table = self._sparse_file(f, key)
            if table is None:
                continue
            sub = table.take([r for r, _ in rows])
            indices, values = sub.column("indices").to_pylist(), sub.column("values").to_pylist()
            out.update((h, (indices[k], values[k])) for k, (_, h) in enumerate(rows))
        return out

    def _sparse_file(self, i: int, key: dict):
        """Embed batch ``i``'s BM25 vectors as an Arrow table (``None``: it wrote none, or with another config);
        at most :data:`OPEN_VECTOR_FILES` kept."""
        import json

        import pyarrow.parquet as pq

        from ragtrail.store.sparse import FILE_KEY

        if i not in self._sparse_tables:
            while len(self._sparse_tables) >= OPEN_VECTOR_FILES:
                self._sparse_tables.pop(next(iter(self._sparse_tables)))
            table, path = None, self.embedded[i].get("sparse_path")
            if path:
                here = self.fetch(path)
                try:
                    found = pq.read_table(here)
                finally:
                    self.release(here)
                meta = (found.schema.metadata or {}).get(FILE_KEY.encode())
                if meta is not None and json.loads(meta) == key:
                    table = found
            self._sparse_tables[i] = table
        return self._sparse_tables[i]

    def add(self, table: str, values) -> None:
        self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", ((v,) for v in values))

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def docs(self, table: str):
        """Every document id of ``written`` or ``skipped``, sorted (the writer's receipt lists them)."""
        for (doc_id,) in self.db.execute(f"SELECT doc_id FROM {table} ORDER BY doc_id"):
            yield doc_id

    def touched(self, page: int = 1000):
        """The written and the deleted documents, sorted, ``page`` at a time."""
        cur = self.db.execute("SELECT doc_id FROM written UNION SELECT doc_id FROM deleted ORDER BY doc_id")
        while rows := cur.fetchmany(page):
            yield [r[0] for r in rows]

    def new_among(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` this run wrote."""
        found: set[str] = set()
        for j in range(0, len(ids), _SQL_VARS):
            part = ids[j : j + _SQL_VARS]
            found.update(r[0] for r in self.db.execute(
                f"SELECT point_id FROM new WHERE point_id IN ({','.join('?' * len(part))})", part))
        return found

    def close(self) -> None:
        while self._open:
            self.release(self._open.pop(next(iter(self._open)))[0])
        self.db.close()
