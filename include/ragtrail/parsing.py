"""Bytes in, text out: one parser per format, and a clear reason when a file cannot be read.

Every parser either returns text or raises :class:`ParseError` with a short machine-readable reason
(``empty``, ``binary``, ``unknown_encoding``, ``unsupported_type``…) and a human message. Nothing else
escapes this layer: whatever the bytes, the caller gets text or a quarantine reason. Text and HTML
are parsed here (bytes decoded by :mod:`ragtrail.encoding`), PDFs and Office files in a sandboxed child
process (:mod:`ragtrail.sandbox`), tables row by row (:mod:`ragtrail.tables`); :func:`parse_file`
picks the parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

# What every parser returns or raises lives in ragtrail.parsed, so that tables and the sandbox can
# import it without importing this module (which picks them): no import circle.
from ragtrail.parsed import Parsed, ParseError, normalize_whitespace  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ragtrail.sandbox import SandboxedParser
    from ragtrail.tables import TableSpec

TEXT_TYPES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "text"}
HTML_TYPES = {".html": "html", ".htm": "html", ".xhtml": "html"}
PDF_TYPES = {".pdf": "pdf"}
OFFICE_TYPES = {".docx": "docx", ".pptx": "pptx"}
SANDBOXED = {"pdf", "docx", "pptx"}  # parsed in the bounded child process (ragtrail.sandbox)
TABLE_TYPES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".xlsx": "xlsx"}

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def detect_type(name: str) -> str | None:
    """Return the document type for a file name, or ``None`` when unsupported."""
    suffix = PurePosixPath(name.lower()).suffix
    return (TEXT_TYPES.get(suffix) or HTML_TYPES.get(suffix) or PDF_TYPES.get(suffix) or OFFICE_TYPES.get(suffix)
            or TABLE_TYPES.get(suffix))


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode bytes to ``(text, encoding)`` (see :mod:`ragtrail.encoding` for the rules).

    Raises :class:`ParseError` ``binary`` or ``unknown_encoding``.
    """
    from ragtrail.encoding import DecodeError, decode

    try:
        return decode(data, declared)
    except DecodeError as err:
        raise ParseError(err.reason, err.message) from None


def html_charset(data: bytes) -> str | None:
    """The charset an HTML page declares (``<meta charset>`` or ``http-equiv``) in its first 4 KiB.

    ``iso-8859-1`` and ``ascii`` read as ``windows-1252``, as browsers do (WHATWG Encoding).
    """
    m = _META_CHARSET.search(data[:4096])
    if not m:
        return None
    name = m.group(1).decode("ascii", "replace").lower()
    return "windows-1252" if name in ("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii") else name


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
    raw, encoding = decode_text(data, html_charset(data) if doc_type == "html" else None)
    if doc_type == "html":
        text, parser = html_to_text(raw), "beautifulsoup4"
    else:
        text, parser = raw, "text"
    text = normalize_whitespace(text)
    if not text:
        raise ParseError("empty", "no text after extraction")
    return Parsed(text=text, doc_type=doc_type, parser=parser, encoding=encoding)


def parse_file(name: str, path: Path, *, table: TableSpec | None = None,
               pdf: SandboxedParser | None = None) -> Iterator[Parsed | ParseError]:
    """Parse one local file into documents: one for text, HTML, PDF and Office, one per row for a table.

    Failures are yielded as :class:`ParseError`, never raised (an ``OSError`` reading the file is the
    caller's), so a table can report a bad row and go on.

    Args:
        name: the file's name or relative path; its extension picks the parser.
        table: which columns make a row document (default :class:`~ragtrail.tables.TableSpec()`).
        pdf: a running sandboxed parser (PDF, docx, pptx) to reuse; one is started for this file when ``None``.
    """
    doc_type = detect_type(name)
    try:
        if doc_type is None:
            raise ParseError("unsupported_type", f"no parser for {PurePosixPath(name).suffix or 'files without extension'}")
        if doc_type in TABLE_TYPES.values():
            from ragtrail.tables import TableSpec, iter_table

            yield from iter_table(path, doc_type, table or TableSpec())
        elif doc_type in SANDBOXED:
            from ragtrail.sandbox import SandboxedParser

            if pdf is None:
                with SandboxedParser() as own:
                    yield own.parse(path, doc_type)
            else:
                yield pdf.parse(path, doc_type)
        else:
            from ragtrail.walk import open_regular

            with open_regular(path) as fh:
                data = fh.read()
            yield parse_bytes(name, data)
    except ParseError as err:
        yield err
