"""What every parser returns or raises: :class:`Parsed` text or a :class:`ParseError` with a reason.

Kept apart from :mod:`ragtrail.sources.parsing` (which picks a parser per format) so that the format modules
(:mod:`ragtrail.sources.tables`, :mod:`ragtrail.sources.sandbox`) import it without an import circle.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class ParseError(Exception):
    """A document that cannot be turned into text; ``reason`` is a stable slug for metrics."""

    def __init__(self, reason: str, message: str, key: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.key = key  # the row, for one bad row of a table; None for the whole file


def memory_limit(max_memory_mb: int, detail: str = "") -> ParseError:
    """A file that needed more than the parser process's memory budget (its child says so, or its death shows it)."""
    return ParseError("parse_memory_limit", f"parsing needed more than {max_memory_mb} MB "
                                            f"(RAGTRAIL_PARSE_MAX_MEMORY_MB{detail})")


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
    encoding: str | None = None  # how the bytes were decoded, for text and HTML


def normalize_whitespace(text: str) -> str:
    """Collapse runs of blanks, keep paragraph breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_json_array(path: Path):
    """The elements of a :class:`JsonArrayWriter` file, one line at a time (never the whole list in memory);
    another JSON array is parsed whole."""
    with Path(path).open() as fh:
        first = fh.readline()
        if first.strip() != "[":  # not one element per line: parse it whole
            yield from json.loads(first + fh.read())
            return
        for line in fh:
            line = line.strip().rstrip(",")
            if line and line != "]":
                yield json.loads(line)


class JsonArrayWriter:
    """Write a JSON array one element at a time: a huge quarantine list never sits in memory. The file is
    opened at the first element; with none, ``[]`` is written on exit."""

    def __init__(self, path: Path):
        self.path, self.fh, self.count = path, None, 0

    def append(self, obj: dict) -> None:
        if self.fh is None:
            self.fh = self.path.open("w")
            self.fh.write("[\n")
        self.fh.write((",\n" if self.count else "") + json.dumps(obj, ensure_ascii=False))
        self.count += 1

    def __enter__(self) -> JsonArrayWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is None:  # no element: still a JSON array, so a reader never meets a missing file
            self.path.write_text("[]\n")
        else:
            self.fh.write("\n]\n")
            self.fh.close()
