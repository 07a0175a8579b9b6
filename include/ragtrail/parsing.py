"""Bytes in, text out: one parser per format, and a clear reason when a file cannot be read.

Every parser either returns text or raises :class:`ParseError` with a short machine-readable reason
(``empty``, ``binary``, ``invalid_utf8``, ``unsupported_type``…) and a human message. Nothing else
escapes this module: whatever the bytes, the caller gets text or a quarantine reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

TEXT_TYPES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "text"}
HTML_TYPES = {".html": "html", ".htm": "html", ".xhtml": "html"}

# Share of undecodable bytes under which a text file is kept (with U+FFFD) rather than quarantined:
# one stray Latin-1 byte in a long UTF-8 file should not cost the whole document.
MAX_REPLACEMENT_RATIO = 0.01
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class ParseError(Exception):
    """A document that cannot be turned into text; ``reason`` is a stable slug for metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Parsed:
    """The text of one document and how it was obtained."""

    text: str
    doc_type: str
    parser: str


def detect_type(name: str) -> str | None:
    """Return the document type for a file name, or ``None`` when unsupported."""
    suffix = PurePosixPath(name.lower()).suffix
    return TEXT_TYPES.get(suffix) or HTML_TYPES.get(suffix)


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
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: scripts, styles and templates dropped, block breaks kept."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        tag.decompose()
    body = soup.get_text("\n")
    return f"{title}\n\n{body}" if title and title not in body else body


def parse_bytes(name: str, data: bytes) -> Parsed:
    """Turn one file's bytes into text, or raise :class:`ParseError`."""
    doc_type = detect_type(name)
    if doc_type is None:
        raise ParseError("unsupported_type", f"no parser for {PurePosixPath(name).suffix or 'files without extension'}")
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
