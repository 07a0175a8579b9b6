"""Bytes in, text out: one parser per format, and a clear reason when a file cannot be read.

Every parser either returns text or raises :class:`ParseError` with a short machine-readable reason
(``empty``, ``binary``, ``unknown_encoding``, ``unsupported_type``…) and a human message. Nothing else
escapes this layer: whatever the bytes, the caller gets text or a quarantine reason. Text and HTML
are parsed here (bytes decoded by :mod:`ragtrail.sources.encoding`), PDFs and Office files by their handlers
(:mod:`ragtrail.sources.pdf`, :mod:`ragtrail.sources.office`), tables row by row (:mod:`ragtrail.sources.tables`);
:func:`parse_local` picks the parser, and :func:`parse_file` runs it in the sandboxed child process
(:mod:`ragtrail.sources.sandbox`) under a time and memory budget per file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

# What every parser returns or raises lives in ragtrail.sources.parsed, so that tables and the sandbox can
# import it without importing this module (which picks them): no import circle.
from ragtrail.sources.parsed import Parsed, ParseError, normalize_whitespace  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ragtrail.sources.sandbox import SandboxedParser
    from ragtrail.sources.tables import TableSpec

TEXT_TYPES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "text"}
HTML_TYPES = {".html": "html", ".htm": "html", ".xhtml": "html"}
PDF_TYPES = {".pdf": "pdf"}
OFFICE_TYPES = {".docx": "docx", ".pptx": "pptx"}
# Packaged formats and the function that reads each ("module:function": a path in, {"text", "parser"} or
# {"reason", "message"} out).
PACKAGED_HANDLERS = {"pdf": "ragtrail.sources.pdf:extract_in_child", "docx": "ragtrail.sources.office:docx_in_child",
                     "pptx": "ragtrail.sources.office:pptx_in_child"}
SANDBOXED = frozenset(PACKAGED_HANDLERS)
TABLE_TYPES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".xlsx": "xlsx"}

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def detect_type(name: str) -> str | None:
    """Return the document type for a file name, or ``None`` when unsupported."""
    suffix = PurePosixPath(name.lower()).suffix
    return (TEXT_TYPES.get(suffix) or HTML_TYPES.get(suffix) or PDF_TYPES.get(suffix) or OFFICE_TYPES.get(suffix)
            or TABLE_TYPES.get(suffix))


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode bytes to ``(text, encoding)`` (see :mod:`ragtrail.sources.encoding` for the rules).

    Raises :class:`ParseError` ``binary`` or ``unknown_encoding``.
    """
    from ragtrail.sources.encoding import DecodeError, decode

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
    """Main content of an HTML page as Markdown-like text (see :mod:`ragtrail.sources.html_extract`)."""
    from ragtrail.sources.html_extract import html_to_markdown

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
        text, parser = html_to_text(raw), "lxml"
    else:
        text, parser = raw, "text"
    text = normalize_whitespace(text)
    if not text:
        raise ParseError("empty", "no text after extraction")
    return Parsed(text=text, doc_type=doc_type, parser=parser, encoding=encoding)


def parse_file(name: str, path: Path, *, table: TableSpec | None = None,
               sandbox: SandboxedParser | None = None) -> Iterator[Parsed | ParseError]:
    """Parse one local file into documents: one for text, HTML, PDF and Office, one per row for a table.

    Every parser runs in the sandboxed child (:mod:`ragtrail.sources.sandbox`) under its time and memory budget.
    Failures are yielded as :class:`ParseError`, never raised, so a table can report a bad row and go on.

    Args:
        name: the file's name or relative path; its extension picks the parser.
        table: which columns make a row document (default :class:`~ragtrail.sources.tables.TableSpec()`).
        sandbox: a running sandboxed parser to reuse; one is started for this file when ``None``.
    """
    if detect_type(name) is None:
        yield ParseError("unsupported_type", f"no parser for {PurePosixPath(name).suffix or 'files without extension'}")
        return
    if sandbox is not None:
        yield from sandbox.parse_all(name, path, table)
        return
    from ragtrail.sources.sandbox import SandboxedParser

    with SandboxedParser() as own:
        yield from own.parse_all(name, path, table)


def parse_local(name: str, path: Path, table: TableSpec | None = None) -> Iterator[Parsed | ParseError]:
    """What :func:`parse_file` does, in this process and without a budget: the sandbox child runs it.

    An ``OSError`` reading the file is raised, every other failure yielded as :class:`ParseError`.
    """
    doc_type = detect_type(name)
    try:
        if doc_type is None:
            raise ParseError("unsupported_type", f"no parser for {PurePosixPath(name).suffix or 'files without extension'}")
        if doc_type in TABLE_TYPES.values():
            from ragtrail.sources.tables import TableSpec, iter_table

            yield from iter_table(path, doc_type, table or TableSpec())
        elif doc_type in SANDBOXED:
            yield _packaged(doc_type, path)
        else:
            from ragtrail.sources.walk import open_regular

            with open_regular(path) as fh:
                data = fh.read()
            yield parse_bytes(name, data)
    except ParseError as err:
        yield err


def _packaged(kind: str, path: Path) -> Parsed:
    """A PDF or Office file's text through its handler (``{"text", "parser"}`` or ``{"reason", "message"}``)."""
    import importlib

    module, func = PACKAGED_HANDLERS[kind].split(":")
    reply = getattr(importlib.import_module(module), func)(str(path))
    if reply.get("reason"):
        raise ParseError(reply["reason"], reply["message"])
    text = normalize_whitespace(reply["text"])
    if not text:
        raise ParseError("no_text_layer" if kind == "pdf" else "empty", f"no text in the {kind} file")
    return Parsed(text=text, doc_type=kind, parser=reply.get("parser", kind))
