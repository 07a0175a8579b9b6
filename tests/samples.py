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
