"""Tables in: every row of a ``.csv``, ``.tsv``, ``.jsonl``, ``.parquet`` or ``.xlsx`` file is a document.

A :class:`TableSpec` names the columns: the row's id (its document id is ``<file path>#<id>``, and
``<file path>#<sheet>!<id>`` for a spreadsheet, whose every sheet is read with its own header), its
text, and the metadata columns that travel with every chunk into the Qdrant payload. Files are read
in batches, never whole: CSV/TSV with pandas' chunked reader, Parquet one row-group batch at a time
(pyarrow, only the needed columns; text tables decoded like text files, see
:func:`ragtrail.sources.encoding.stream_encoding`), JSON lines line by line (a malformed line costs that row, not the
file), and every worksheet of an ``.xlsx`` through openpyxl's streaming read-only mode (after a zip-bomb
check, :func:`ragtrail.sources.office.zip_problem`).

Whole-file problems are quarantined as one entry (``missing_text_column``, ``missing_id_column``,
``corrupt_table``, ``binary``, ``unknown_encoding``, ``empty``, ``zip_bomb``, ``encrypted_office``; a sheet without the text column
is one entry, ``<file>#<sheet>``); bad rows one by one (``empty``, ``missing_id``,
``duplicate_id``, ``invalid_json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ragtrail.sources.cells import cell_text, plain
from ragtrail.sources.parsed import Parsed, ParseError, normalize_whitespace

ID_CANDIDATES = ("id", "doc_id")
_TEXT_TABLES = ("csv", "tsv", "jsonl")
_HEAD_BYTES = 64 * 1024  # what the encoding of a text table is judged on
READ_BATCH = 1000
_PARSERS = {"csv": "pandas", "tsv": "pandas", "jsonl": "json", "parquet": "pyarrow", "xlsx": "openpyxl"}


@dataclass(frozen=True)
class TableSpec:
    """Which columns of a table make a row document.

    Args:
        id_column: the row id; ``None`` tries ``id``, then ``doc_id``, then numbers rows from 1.
        text_column: the text to index.
        metadata_columns: copied into the payload; ``None`` means every other column, ``()`` none.

    Example::

        TableSpec(id_column="sku", text_column="description", metadata_columns=("brand", "price"))
    """

    id_column: str | None = None
    text_column: str = "text"
    metadata_columns: tuple[str, ...] | None = None

    @classmethod
    def from_strings(cls, id_column: str | None = "", text_column: str | None = "text",
                     metadata_columns: str | None = "*") -> TableSpec:
        """Build a spec from form/CLI strings: ``""`` id = auto, ``"*"`` metadata = all, ``""`` = none."""
        meta = (metadata_columns if metadata_columns is not None else "*").strip()
        return cls(
            id_column=(id_column or "").strip() or None,
            text_column=(text_column or "").strip() or "text",
            metadata_columns=None if meta == "*" else tuple(c.strip() for c in meta.split(",") if c.strip()),
        )


@dataclass(frozen=True)
class Columns:
    """A :class:`TableSpec` resolved against one file's header."""

    id: str | None
    text: str
    metadata: tuple[str, ...] | None  # None: all keys of each row but id and text


def resolve_columns(header: Iterable[str], spec: TableSpec) -> Columns:
    """Check the spec against a header; raise :class:`ParseError` for a missing text or id column."""
    names = [str(h) for h in header]
    if spec.text_column not in names:
        shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
        raise ParseError("missing_text_column", f"no text column {spec.text_column!r} (columns: {shown or 'none'})")
    if spec.id_column is not None:
        if spec.id_column not in names:
            raise ParseError("missing_id_column", f"no id column {spec.id_column!r}")
        id_col = spec.id_column
    else:
        id_col = next((c for c in ID_CANDIDATES if c in names and c != spec.text_column), None)
    meta = spec.metadata_columns
    if meta is not None:
        meta = tuple(c for c in meta if c in names and c not in (id_col, spec.text_column))
    return Columns(id=id_col, text=spec.text_column, metadata=meta)


def row_document(record: dict, cols: Columns, row_number: int, doc_type: str) -> Parsed:
    """Map one row to a document, or raise :class:`ParseError` (with the row's key) for a bad row.

    Example::

        row_document({"id": 7, "text": "Hello", "lang": "en"}, Columns("id", "text", None), 1, "csv")
        # Parsed(text="Hello", key="7", metadata={"lang": "en"}, …)
    """
    if cols.id is None:
        key = str(row_number)
    else:
        key = (cell_text(record.get(cols.id)) or "").strip()
        if not key:
            raise ParseError("missing_id", f"row {row_number} has no value in id column {cols.id!r}",
                             key=f"row-{row_number}")
    text = normalize_whitespace(cell_text(record.get(cols.text)) or "")
    if not text:
        raise ParseError("empty", f"row {row_number} has no text in column {cols.text!r}", key=key)
    names = cols.metadata if cols.metadata is not None else [
        k for k in record if k not in (cols.id, cols.text)]
    metadata = {str(k): plain(record.get(k)) for k in names}
    return Parsed(text=text, doc_type=doc_type, parser=_PARSERS.get(doc_type, doc_type), key=key,
                  metadata=metadata or None)


def iter_table(path: Path, doc_type: str, spec: TableSpec) -> Iterator[Parsed | ParseError]:
    """Yield one :class:`Parsed` per good row and one :class:`ParseError` per bad row or bad file.

    Never raises except ``OSError`` (a file that cannot be read at all is the caller's problem).
    """
    unique = _UniqueIds(None)  # counts the rows yielded, for the message of a table that breaks midway
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
            whole = not fh.read(1)
        if not head.strip():
            raise ParseError("empty", "file is empty")
        encoding = _text_encoding(head, whole) if doc_type in _TEXT_TABLES else None
        outcomes = _READERS[doc_type](path, spec, doc_type, **({"encoding": encoding} if encoding else {}))
        unique.encoding = encoding
        yield from unique(outcomes)
        if unique.rows == 0:
            raise ParseError("empty", "the table has no rows")
    except ParseError as err:
        yield err
    except OSError:
        raise
    except Exception as err:  # pandas/pyarrow/openpyxl on malformed input: any error class is possible
        where = f" after row {unique.rows}" if unique.rows else ""
        yield ParseError("corrupt_table", f"cannot read the {doc_type} table{where}: {type(err).__name__}: {err}"[:500])


def _text_encoding(head: bytes, whole: bool) -> str:
    """A text table's encoding: BOM, UTF-8, then legacy code pages, as for text files."""
    from ragtrail.sources.encoding import DecodeError, stream_encoding

    try:
        return stream_encoding(head, whole)
    except DecodeError as err:
        raise ParseError(err.reason, f"{err.message} (a text-table extension)") from None


class _UniqueIds:
    """Pass rows on with the file's encoding; a repeated id becomes a ``duplicate_id`` error. Counts rows."""

    def __init__(self, encoding: str | None):
        self.encoding, self.rows = encoding, 0
        self.seen: set[str] = set()

    def __call__(self, outcomes: Iterable[Parsed | ParseError]) -> Iterator[Parsed | ParseError]:
        for outcome in outcomes:
            if isinstance(outcome, Parsed):
                outcome = self._checked(outcome)
            self.rows += 1
            yield outcome

    def _checked(self, row: Parsed) -> Parsed | ParseError:
        if self.encoding:
            row = replace(row, encoding=self.encoding)
        if row.key in self.seen:
            return ParseError("duplicate_id", f"id {row.key!r} appears more than once in the file",
                              key=f"{row.key}@row-{self.rows + 1}")
        self.seen.add(row.key)
        return row


def _rows(records: Iterable[dict], cols: Columns, start: int, doc_type: str) -> Iterator[Parsed | ParseError]:
    for i, record in enumerate(records, start):
        try:
            yield row_document(record, cols, i, doc_type)
        except ParseError as err:
            yield err


def _read_delimited(path: Path, spec: TableSpec, doc_type: str,
                    encoding: str = "utf-8-sig") -> Iterator[Parsed | ParseError]:
    import pandas as pd

    sep = "\t" if doc_type == "tsv" else ","
    opts = {"sep": sep, "encoding": encoding, "encoding_errors": "replace"}
    cols = resolve_columns(pd.read_csv(path, nrows=0, **opts).columns, spec)
    # Ids and text stay strings exactly as written ("007" is not 7); metadata types are inferred.
    dtype = {c: str for c in (cols.id, cols.text) if c}
    usecols = None if cols.metadata is None else [c for c in (cols.id, cols.text, *cols.metadata) if c]
    n = 1
    with pd.read_csv(path, chunksize=READ_BATCH, dtype=dtype, usecols=usecols, **opts) as reader:
        for frame in reader:
            yield from _rows(frame.to_dict("records"), cols, n, doc_type)
            n += len(frame)


def _read_jsonl(path: Path, spec: TableSpec, doc_type: str,
                encoding: str = "utf-8-sig") -> Iterator[Parsed | ParseError]:
    cols = None
    with open(path, encoding=encoding, errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                yield ParseError("invalid_json", f"line {n} is not JSON: {err}", key=f"row-{n}")
                continue
            if not isinstance(record, dict):
                yield ParseError("invalid_json", f"line {n} is not a JSON object", key=f"row-{n}")
                continue
            if cols is None:  # the first object is the header
                cols = resolve_columns(record.keys(), spec)
            yield from _rows([record], cols, n, doc_type)


def _read_parquet(path: Path, spec: TableSpec, doc_type: str) -> Iterator[Parsed | ParseError]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        cols = resolve_columns(pf.schema_arrow.names, spec)
        columns = None if cols.metadata is None else [c for c in (cols.id, cols.text, *cols.metadata) if c]
        n = 1
        for batch in pf.iter_batches(batch_size=READ_BATCH, columns=columns):
            records = batch.to_pylist()
            yield from _rows(records, cols, n, doc_type)
            n += len(records)


def _read_xlsx(path: Path, spec: TableSpec, doc_type: str) -> Iterator[Parsed | ParseError]:
    """Every worksheet, each with its own header row; row keys are ``<sheet>!<id>``.

    A sheet without the text (or id) column is one entry keyed by the sheet's name, when another sheet
    has documents; when none has, the whole file is one entry, as for any other table.
    """
    from openpyxl import load_workbook

    from ragtrail.sources.office import zip_problem

    problem = zip_problem(path, "xlsx")  # the central directory only: a bomb is refused unopened
    if problem:
        raise ParseError(*problem)
    wb = load_workbook(path, read_only=True, data_only=True)
    refused: list[ParseError] = []
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header = next(rows, None)
            if header is None or all(h is None for h in header):
                continue  # an empty sheet (Sheet2, Sheet3 of a new workbook) holds no documents
            names = [str(h).strip() if h is not None else f"column_{i + 1}" for i, h in enumerate(header)]
            try:
                cols = resolve_columns(names, spec)
            except ParseError as err:
                refused.append(ParseError(err.reason, f"sheet {ws.title!r}: {err.message}", key=ws.title))
                continue
            for n, values in enumerate(rows, 1):
                if all(v is None for v in values):
                    continue  # formatting-only rows are common in spreadsheets
                for out in _rows([dict(zip(names, values, strict=False))], cols, n, doc_type):
                    if isinstance(out, ParseError):
                        out.key = f"{ws.title}!{out.key}"
                        yield out
                    else:
                        yield replace(out, key=f"{ws.title}!{out.key}")
            refused.append(None)  # a sheet that was read
    finally:
        wb.close()
    if refused and all(r is not None for r in refused):
        raise ParseError(refused[0].reason, "; ".join(r.message for r in refused)[:500])
    yield from (r for r in refused if r is not None)


_READERS = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_jsonl, "parquet": _read_parquet,
            "xlsx": _read_xlsx}
