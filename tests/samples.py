"""Real test documents made on the fly: PDFs (text, encrypted, blank, corrupt, bomb) and tables in every format."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def _font(writer: PdfWriter):
    return writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))


def _page_with_content(writer: PdfWriter, content: bytes, compress: bool = False) -> None:
    page = writer.add_blank_page(612, 792)
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): _font(writer)})})
    stream = DecodedStreamObject()
    stream.set_data(content)
    page[NameObject("/Contents")] = writer._add_object(stream.flate_encode(level=9) if compress else stream)


def _bytes(writer: PdfWriter) -> bytes:
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def text_pdf(*pages: str) -> bytes:
    """A PDF with one line of Helvetica text per page (a text layer pypdf can extract)."""
    writer = PdfWriter()
    for text in pages:
        esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        _page_with_content(writer, f"BT /F1 12 Tf 72 720 Td ({esc}) Tj ET".encode("latin-1"))
    return _bytes(writer)


def encrypted_pdf(text: str = "Secret quarterly numbers.", password: str = "pw") -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(text_pdf(text)))
    writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-256")
    return _bytes(writer)


def owner_only_pdf(text: str) -> bytes:
    """Encrypted against editing only (empty user password): readable, must be indexed."""
    writer = PdfWriter(clone_from=io.BytesIO(text_pdf(text)))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    return _bytes(writer)


def blank_pdf(pages: int = 2) -> bytes:
    """Pages without a text layer, like a scan."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    return _bytes(writer)


def corrupt_pdf() -> bytes:
    """A real PDF cut in half: header present, structure gone."""
    data = text_pdf("This text will never be read.")
    return data[: len(data) // 2]


def bomb_pdf(ops: int = 3_000_000) -> bytes:
    """~130 KB on disk, a 54 MB content stream: costs pypdf seconds and hundreds of MB to parse."""
    writer = PdfWriter()
    _page_with_content(writer, b"BT /F1 12 Tf 72 720 Td " + b"(bomb) Tj 0 -1 Td " * ops + b"ET", compress=True)
    return _bytes(writer)


ROWS = [
    {"id": 1, "text": "Qdrant stores vectors with payloads.", "lang": "en", "stars": 5},
    {"id": 2, "text": "MLflow tracks runs, params and metrics.", "lang": "en", "stars": 4},
    {"id": "a-3", "text": "Airflow schedules  DAG runs.\nRetries included.", "lang": "de", "stars": None},
]


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write rows as .csv/.tsv/.jsonl/.parquet/.xlsx, chosen by the file's extension."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    frame = pd.DataFrame(rows)
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    elif suffix == ".parquet":
        frame.astype({c: str for c in frame.columns if frame[c].map(type).nunique() > 1}).to_parquet(path)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        raise ValueError(suffix)
    return path


# ---- Office files, written by the libraries that read them --------------------------------------


def docx_file(path: Path) -> Path:
    """A Word document with a title, headings, bullets, a numbered list and a table."""
    import docx

    document = docx.Document()
    document.add_heading("Travel policy", level=0)
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book trains at least two weeks ahead.")
    document.add_paragraph("Economy class for trips under four hours", style="List Bullet")
    document.add_paragraph("First class needs a manager's approval", style="List Bullet")
    document.add_heading("Claims", level=2)
    document.add_paragraph("Submit receipts within 30 days", style="List Number")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Item", "Limit"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "Hotel", "150 EUR"
    document.save(path)
    return path


def pptx_file(path: Path) -> Path:
    """A deck: a title slide and a bulleted slide with speaker notes."""
    from pptx import Presentation

    prs = Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[0])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Search quality up 12 percent"
    second = prs.slides.add_slide(prs.slide_layouts[1])
    second.shapes.title.text = "Next steps"
    body = second.placeholders[1].text_frame
    body.text = "Ship the reranker"
    sub = body.add_paragraph()
    sub.text, sub.level = "Measure nDCG first", 1
    second.notes_slide.notes_text_frame.text = "Mention the latency budget."
    prs.save(path)
    return path


def zip_bomb_docx(path: Path, megabytes: int = 40) -> Path:
    """A real .docx with one extra part of zeros that compresses ~1000x: refused from the central directory."""
    import zipfile

    docx_file(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("word/media/zeros.bin", "w") as fh:
        block = bytes(1 << 20)
        for _ in range(megabytes):
            fh.write(block)
    return path


def encrypted_docx(path: Path) -> Path:
    """A password-protected .docx, encrypted the way Office does it (msoffcrypto-tool, agile encryption)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = path.with_suffix(".plain.docx")
    docx_file(plain)
    with open(plain, "rb") as src, open(path, "wb") as dst:
        OOXMLFile(src).encrypt("s3cret", dst)
    plain.unlink()
    return path


def ole2_doc_renamed(path: Path) -> Path:
    """The first bytes of a legacy binary Word file under a .docx name."""
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"WordDocument".ljust(512, b"\x00"))
    return path
