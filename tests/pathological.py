"""Hostile files, made on the spot: each is the worst shape one parser can meet (see tests/include/sources/test_pathological.py)."""

from __future__ import annotations

import json
from pathlib import Path

import samples

MB = 1_000_000


def _write(path: Path, *parts: str | bytes, repeat: int = 1) -> Path:
    """Write ``parts`` in order; the middle part ``repeat`` times, streamed (no 50 MB string in memory)."""
    with path.open("wb") as fh:
        for i, part in enumerate(parts):
            data = part.encode() if isinstance(part, str) else part
            for _ in range(repeat if i == 1 and len(parts) == 3 else 1):
                fh.write(data)
    return path


def html_deep(path: Path, depth: int = 100_000) -> Path:
    path.write_text("<html><body>" + "<div>" * depth + "deep inside" + "</div>" * depth + "</body></html>")
    return path


def html_wide(path: Path, siblings: int = 1_000_000) -> Path:
    return _write(path, "<html><body>", "<span>x</span>", "</body></html>", repeat=siblings)


def html_long_line(path: Path, size: int = 50 * MB) -> Path:
    return _write(path, "<html><body><p>", "lorem ipsum dolor sit amet ", "</p></body></html>", repeat=size // 27)


def html_nested_tables(path: Path, depth: int = 1_000) -> Path:
    path.write_text("<html><body>" + "<table><tr><td>" * depth + "innermost cell"
                    + "</td></tr></table>" * depth + "</body></html>")
    return path


def html_huge_attributes_and_comments(path: Path, size: int = 20 * MB) -> Path:
    with path.open("w") as fh:
        fh.write("<html><body><p title='")
        for _ in range(size // MB):
            fh.write("a" * MB)
        fh.write("'>before the comment</p><!--")
        for _ in range(size // MB):
            fh.write("c" * MB)
        fh.write("--><p>after the comment</p></body></html>")
    return path


def markdown_nested_lists(path: Path, depth: int = 100_000) -> Path:
    path.write_text("".join(" " * min(i, 64) + "- item\n" for i in range(depth)))
    return path


def markdown_nested_quotes(path: Path, depth: int = 100_000) -> Path:
    path.write_text(">" * depth + " the quote\n")
    return path


def text_without_newline(path: Path, size: int = 50 * MB) -> Path:
    return _write(path, "", "word ", "", repeat=size // 5)


def csv_wide(path: Path, columns: int = 100_000) -> Path:
    header = ",".join(["id", "text"] + [f"c{i}" for i in range(columns)])
    row = ",".join(["1", "a row with many columns"] + ["v"] * columns)
    path.write_text(header + "\n" + row + "\n")
    return path


def jsonl_deep(path: Path, depth: int = 100_000) -> Path:
    good = json.dumps({"id": "fine", "text": "a good row beside the deep one"})
    path.write_text(good + "\n" + '{"id": "deep", "text": ' + "[" * depth + "]" * depth + "}\n")
    return path


def office_zip_bomb(path: Path) -> Path:
    return samples.zip_bomb_docx(path, megabytes=200)


HOSTILE = {
    "deep.html": html_deep, "wide.html": html_wide, "long-line.html": html_long_line,
    "nested-tables.html": html_nested_tables, "huge-attributes.html": html_huge_attributes_and_comments,
    "nested-lists.md": markdown_nested_lists, "nested-quotes.md": markdown_nested_quotes,
    "one-line.txt": text_without_newline, "wide.csv": csv_wide, "deep.jsonl": jsonl_deep,
    "bomb.docx": office_zip_bomb,
}
