"""Word and PowerPoint files to markdown-ish text; zip-bomb checks for every Office (zip) file.

``.docx`` through python-docx and ``.pptx`` through python-pptx, in the sandboxed parser process
(:mod:`ragtrail.sources.sandbox`). Structure is kept as text: headings as ``#`` lines (a slide's title is its
heading), list items as ``-`` lines (indented by level), tables as ``|`` rows, speaker notes after the
slide. ``.odt`` is not read (neither library does).

Before any library opens the file, :func:`zip_problem` reads the zip's central directory only and
refuses it when it would expand too far (``zip_bomb``), is encrypted (``encrypted_office`` — Office
wraps a password-protected file in an OLE2 container holding an ``EncryptedPackage`` stream), or is
no zip / not that kind of document (``corrupt_docx``, ``corrupt_pptx``, ``corrupt_table`` for xlsx).
"""

from __future__ import annotations

import os
import zipfile

from ragtrail.core import env_kit

# Limits on what a zip may expand to; the child's RLIMIT_AS stays the backstop.
MAX_UNCOMPRESSED_BYTES = int(env_kit.OFFICE_MAX_UNCOMPRESSED_MB.get() * 1024 * 1024)
MAX_RATIO = 200  # total uncompressed / compressed; real documents stay well under 50 (XML compresses ~10x)
RATIO_FLOOR_BYTES = 16 * 1024 * 1024  # the ratio is only judged above this much uncompressed data
MAX_ENTRIES = 20_000
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_REQUIRED = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml", "xlsx": "xl/workbook.xml"}


def zip_problem(path: str | os.PathLike, kind: str) -> tuple[str, str] | None:
    """``(reason, message)`` when the Office file of ``kind`` must not be parsed, else ``None``."""
    corrupt = f"corrupt_{kind}" if kind in ("docx", "pptx") else "corrupt_table"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head == _OLE2_MAGIC:
            tail = b""
            for block in iter(lambda: fh.read(1 << 20), b""):
                if _ENCRYPTED_STREAM in tail + block:
                    return "encrypted_office", "the file is password-protected (an encrypted Office package)"
                tail = block[-64:]
            return corrupt, f"an OLE2 file, not a .{kind} (a legacy binary Office file renamed?)"
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        return corrupt, f"not a readable zip package: {err}"[:300]
    if len(infos) > MAX_ENTRIES:
        return "zip_bomb", f"{len(infos)} entries in the package (limit {MAX_ENTRIES})"
    if any(i.flag_bits & 0x1 for i in infos):
        return "encrypted_office", "the package's entries are encrypted"
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_UNCOMPRESSED_BYTES:
        return "zip_bomb", f"expands to {total} bytes (limit {MAX_UNCOMPRESSED_BYTES})"
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(packed, 1):
        return "zip_bomb", f"expands {total / max(packed, 1):.0f}x ({packed} -> {total} bytes; limit {MAX_RATIO}x)"
    if _REQUIRED[kind] not in names:
        return corrupt, f"a zip package without {_REQUIRED[kind]}: not a .{kind} file"
    return None


def _run(path: str, kind: str, convert) -> dict:
    problem = zip_problem(path, kind)
    if problem:
        return {"reason": problem[0], "message": problem[1]}
    try:
        text = convert(path)
    except (MemoryError, RecursionError):
        raise  # the sandbox answers these and restarts the child
    except Exception as err:  # python-docx/pptx/lxml on a malformed package: any error class is possible
        return {"reason": f"corrupt_{kind}", "message": f"{type(err).__name__}: {err}"[:500]}
    return {"text": text.encode("utf-8", "replace").decode("utf-8"), "parser": f"python-{kind}"}


def docx_in_child(path: str) -> dict:
    """Runs in the sandbox child: a .docx as markdown-ish text, or a reason."""
    return _run(path, "docx", docx_text)


def pptx_in_child(path: str) -> dict:
    """Runs in the sandbox child: a .pptx as markdown-ish text (one ``#`` heading per slide), or a reason."""
    return _run(path, "pptx", pptx_text)


def _table_lines(rows) -> list[str]:
    lines = []
    for cells in rows:
        texts = [" ".join(c.split()) for c in cells]
        if any(texts):
            lines.append("| " + " | ".join(texts) + " |")
    return lines


def docx_text(path: str) -> str:
    """Paragraphs and tables in document order; Heading/Title styles -> ``#``, numbered or bulleted -> ``-``."""
    import docx
    from docx.table import Table

    document = docx.Document(path)
    out: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            out.extend(_table_lines([cell.text for cell in row.cells] for row in block.rows))
            out.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        num_pr = block._p.pPr.numPr if block._p.pPr is not None else None
        if style == "Title":
            out.append(f"# {text}")
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            out.append("#" * min(int(style[7:]), 6) + f" {text}")
        elif num_pr is not None or style.startswith("List"):
            level = num_pr.ilvl.val if num_pr is not None and num_pr.ilvl is not None else 0
            out.append("  " * int(level) + f"- {text}")
        else:
            out.append(text)
        out.append("")
    return "\n".join(out)


def pptx_text(path: str) -> str:
    """Per slide: its title as ``#``, body text (placeholders' paragraphs as ``-`` items), tables, notes."""
    from pptx import Presentation

    out: list[str] = []
    for number, slide in enumerate(Presentation(path).slides, 1):
        out += _slide_lines(slide, number)
    return "\n".join(out)


def _slide_lines(slide, number: int) -> list[str]:
    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None else ""
    out = [f"# {title}" if title else f"# Slide {number}", ""]
    for shape in _shapes_of(slide.shapes):
        if title_shape is None or shape.shape_id != title_shape.shape_id:
            out += _shape_lines(shape)
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            out += ["Notes: " + notes.text.strip(), ""]
    return out


def _shapes_of(shapes):
    """The shapes of a slide, groups opened."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes_of(shape.shapes)
        else:
            yield shape


def _shape_lines(shape) -> list[str]:
    """A table's rows, or a text frame's paragraphs (a placeholder's as ``-`` items), then a blank line."""
    if getattr(shape, "has_table", False) and shape.has_table:
        return [*_table_lines([c.text for c in row.cells] for row in shape.table.rows), ""]
    if not shape.has_text_frame:
        return []
    out = []
    for para in shape.text_frame.paragraphs:
        text = "".join(run.text for run in para.runs).strip() or para.text.strip()
        if text:
            out.append("  " * para.level + f"- {text}" if shape.is_placeholder else text)
    return [*out, ""]
