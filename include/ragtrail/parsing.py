"""Bytes in, text out: one parser per format, and a clear reason when a file cannot be read.

Every parser either returns text or raises :class:`ParseError` with a short machine-readable reason
(``empty``, ``binary``, ``invalid_utf8``, ``unsupported_type``…) and a human message. Nothing else
escapes this layer: whatever the bytes, the caller gets text or a quarantine reason. Text and HTML
are parsed here, PDFs in a sandboxed child process (:mod:`ragtrail.pdf`), tables row by row
(:mod:`ragtrail.tables`); :func:`parse_file` picks the parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragtrail.pdf import PdfExtractor
    from ragtrail.tables import TableSpec

TEXT_TYPES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "text"}
HTML_TYPES = {".html": "html", ".htm": "html", ".xhtml": "html"}
PDF_TYPES = {".pdf": "pdf"}
TABLE_TYPES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".xlsx": "xlsx"}

# Share of undecodable bytes under which a text file is kept (with U+FFFD) rather than quarantined:
# one stray Latin-1 byte in a long UTF-8 file should not cost the whole document.
MAX_REPLACEMENT_RATIO = 0.01
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class ParseError(Exception):
    """A document that cannot be turned into text; ``reason`` is a stable slug for metrics."""

    def __init__(self, reason: str, message: str, key: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.key = key  # the row, for one bad row of a table; None for the whole file


@dataclass(frozen=True)
class Parsed:
    """The text of one document and how it was obtained.

    A table yields one per row: ``key`` is the row's id (its doc id is ``<file>#<key>``) and
    ``metadata`` the row's metadata columns.
    """

    text: str
    doc_type: str
    parser: str
    key: str | None = None
    metadata: dict[str, Any] | None = None


def detect_type(name: str) -> str | None:
    """Return the document type for a file name, or ``None`` when unsupported."""
    suffix = PurePosixPath(name.lower()).suffix
    return TEXT_TYPES.get(suffix) or HTML_TYPES.get(suffix) or PDF_TYPES.get(suffix) or TABLE_TYPES.get(suffix)


def decode_text(data: bytes) -> str:
    """Decode bytes as UTF-8 (BOM tolerated).

    Fallback, documented in README: a file with fewer than 1 % undecodable bytes is kept with U+FFFD
    in their place; more than that, or NUL/control bytes typical of binaries, is quarantined.
    """
    if b"\x00" in data[:8192]:
        raise ParseError("binary", "file contains NUL bytes: binary content with a text extension")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad > max(1, len(text) * MAX_REPLACEMENT_RATIO):
            raise ParseError("invalid_utf8", f"{bad} undecodable bytes: not UTF-8 text") from None
    if len(_CONTROL.findall(text[:8192])) > 0.05 * min(len(text), 8192):
        raise ParseError("binary", "file is mostly control characters: binary content")
    return text


def normalize_whitespace(text: str) -> str:
    """Collapse runs of blanks, keep paragraph breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(html: str) -> str:
    """Main content of an HTML page as Markdown-like text (see :mod:`ragtrail.html_extract`)."""
    from ragtrail.html_extract import html_to_markdown

    return html_to_markdown(html)


def parse_bytes(name: str, data: bytes) -> Parsed:
    """Turn one text or HTML file's bytes into text, or raise :class:`ParseError`.

    PDFs and tables need a file on disk and may yield many documents: use :func:`parse_file`.
    """
    doc_type = detect_type(name)
    if doc_type not in TEXT_TYPES.values() and doc_type not in HTML_TYPES.values():
        kind = PurePosixPath(name).suffix or "files without extension"
        raise ParseError("unsupported_type", f"no in-memory parser for {kind}" if doc_type else f"no parser for {kind}")
    if not data.strip():
        raise ParseError("empty", "file is empty")
    raw = decode_text(data)
    if doc_type == "html":
        text, parser = html_to_text(raw), "beautifulsoup4"
    else:
        text, parser = raw, "utf-8"
    text = normalize_whitespace(text)
    if not text:
        raise ParseError("empty", "no text after extraction")
    return Parsed(text=text, doc_type=doc_type, parser=parser)


def parse_file(name: str, path: Path, *, table: TableSpec | None = None,
               pdf: PdfExtractor | None = None) -> Iterator[Parsed | ParseError]:
    """Parse one local file into documents: one for text, HTML and PDF, one per row for a table.

    Failures are yielded as :class:`ParseError`, never raised (an ``OSError`` reading the file is the
    caller's), so a table can report a bad row and go on.

    Args:
        name: the file's name or relative path; its extension picks the parser.
        table: which columns make a row document (default :class:`~ragtrail.tables.TableSpec()`).
        pdf: a running PDF worker to reuse; one is started for this file when ``None``.
    """
    doc_type = detect_type(name)
    try:
        if doc_type is None:
            raise ParseError("unsupported_type", f"no parser for {PurePosixPath(name).suffix or 'files without extension'}")
        if doc_type in TABLE_TYPES.values():
            from ragtrail.tables import TableSpec, iter_table

            yield from iter_table(path, doc_type, table or TableSpec())
        elif doc_type == "pdf":
            from ragtrail.pdf import PdfExtractor

            if pdf is None:
                with PdfExtractor() as own:
                    yield own.extract(path)
            else:
                yield pdf.extract(path)
        else:
            yield parse_bytes(name, path.read_bytes())
    except ParseError as err:
        yield err
